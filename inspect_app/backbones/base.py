"""The one interface every frozen image encoder offers to the decoders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from inspect_app.pre_processing import prepare_pixels


@dataclass
class EncodedImages:
    """Multi-level patch features (finest first) and one global embedding per image."""

    levels: list[torch.Tensor]  # each [B, C_l, H_l, W_l]
    global_embedding: torch.Tensor  # [B, D]


class Backbone(nn.Module):
    """A frozen encoder: ``encode(images) -> EncodedImages``.

    Subclasses set ``image_size``, ``mean``, ``std``, ``fingerprint`` (a string that changes
    whenever the weights or the returned features would change, stored in profiles) and, per
    returned level, its ``channels`` and ``strides`` (input pixels per feature cell).
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fingerprint: str
    levels: tuple[int, ...]
    channels: list[int]
    strides: list[int]

    def prepare(self, images: list[np.ndarray], shape: tuple[int, int] | None = None,
                exposure: bool = False) -> torch.Tensor:
        """Resize RGB uint8 arrays to ``shape`` (height, width; default the encoder's square
        ``image_size``) and normalise them, channels-last; ``exposure``: standardise each image's
        grey levels first (``pre_processing.standardise_exposure``)."""
        pixels = prepare_pixels(images, shape or (self.image_size, self.image_size), self.mean, self.std, exposure)
        return torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last)

    def encode(self, images: torch.Tensor) -> EncodedImages:  # pragma: no cover - interface
        raise NotImplementedError
