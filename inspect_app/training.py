"""Fitting a product from good images only: the harness around ``torch_model.InspectionModel``.

The memory bank holds every good image; each good image is also scored by that bank without its
own rows (leave-one-out), so all of them calibrate the image-image threshold as unseen parts.
The image-text projections learn from 80 % of the good images; the other 20 % (at least 5)
calibrate the image-text and fused thresholds and the fusion statistics. Below 10 images nothing can
be spared: mild re-acquisitions (shift, rotation, brightness) of each image, scored against a
bank of the *other* images (leave-one-out), stand in for held-out normals.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from inspect_app.backbones import Backbone, create_backbone
from inspect_app.config import MODES, Decoder, InspectorConfig, Mode
from inspect_app.data.good_images import TrainingImage, read_good_images
from inspect_app.data.images import ImageInput, load_image
from inspect_app.decoders.fusion import log_score_stats
from inspect_app.decoders.image_image import ImageImageDecoder, aggregate_patches
from inspect_app.decoders.image_text import ImageTextDecoder, Unplaceable, build_training_set, train_image_text_decoder
from inspect_app.errors import ProfileError
from inspect_app.imaging.foreground import estimate_part_box
from inspect_app.post_processing.calibration import Calibration, calibrate_threshold
from inspect_app.post_processing.image_score import image_scores, read_ignore_mask
from inspect_app.post_processing.kinds import kind_prior
from inspect_app.post_processing.post_processor import PartFrame, PostProcessor
from inspect_app.pre_processing import input_shape, is_grayscale
from inspect_app.progress import ProgressCallback
from inspect_app.self_config import InputChoice, choose_input
from inspect_app.torch_model import DecoderMaps, Features, InspectionModel

if TYPE_CHECKING:
    from inspect_app.text.encoders import TextEncoder

MIN_HOLDOUT_IMAGES = 10  # below this, calibration uses leave-one-out views instead of a held-out split
AUGMENTED_VIEWS = 8
PART_FRAME_SHARE = 0.8  # locations are relative to the part when it is found on this share of good images


@dataclass
class FitReport:
    product: str
    n_images: int
    skipped: list[str]
    calibration: Calibration  # of the fitted mode
    seconds: float
    modes: list[Mode] = field(default_factory=list)
    training_loss: list[float] = field(default_factory=list)
    skipped_defect_kinds: dict[str, str] = field(default_factory=dict)  # kind -> why synthesis left it out
    input_choice: InputChoice | None = None  # how the input size and shape were chosen, when the fit chose
    exposure_standardised: bool = False  # each image's grey levels standardised (grayscale good images)


@dataclass
class FittedProduct:
    model: InspectionModel
    post_processor: PostProcessor
    report: FitReport
    training_images: list[TrainingImage]
    config: InspectorConfig  # as given, with what the fit settled (the input shape)


def new_model(config: InspectorConfig, encoder: Backbone | None = None,
              kinds: Sequence[str] = (), text_embeddings: torch.Tensor | None = None) -> InspectionModel:
    """An unfitted model with the decoders ``config.mode`` needs (memory bank empty; the
    image-text decoder with its text embeddings [1 + K, D] when given)."""
    encoder = encoder or create_backbone(config.backbone)
    decoders = config.fitted_decoders()
    image_image = None
    if "image-image" in decoders:
        cfg = config.image_image
        image_image = ImageImageDecoder(int(sum(encoder.channels)), cfg.aggregation_kernel, cfg.coreset_ratio,
                                        cfg.coreset_projection_dim, config.seed)
    image_text = None
    if "image-text" in decoders and text_embeddings is not None:
        with torch.random.fork_rng():  # the projections' initial weights follow the seed, not the process
            torch.manual_seed(config.seed)
            image_text = ImageTextDecoder(list(encoder.channels), text_embeddings, list(kinds))
    return InspectionModel(encoder, image_image, image_text, config.image_image.blur_sigma, model_input_shape(config),
                           bool(config.backbone.standardise_exposure))


def model_input_shape(config: InspectorConfig) -> tuple[int, int]:
    """The (height, width) a config's model sees: as fitted, else the square ``image_size``."""
    size = config.backbone.image_size
    return config.backbone.input_shape or (size, size)


def encode_images(model: InspectionModel, images: Sequence[np.ndarray], batch_size: int,
                  progress: ProgressCallback | None = None, stage: str = "encoding good images") -> Features:
    """Encoder features of decoded images, in batches."""
    chunks = []
    for start in range(0, len(images), batch_size):
        chunks.append(model.encode(model.prepare(list(images[start:start + batch_size]))))
        if progress:
            progress(min(start + batch_size, len(images)), len(images), stage)
    return Features([torch.cat(parts) for parts in zip(*(c.levels for c in chunks), strict=True)],
                    torch.cat([c.embedding for c in chunks]))


def text_encoder_for(config: InspectorConfig, encoder: Backbone) -> TextEncoder:
    """The text encoder whose space a profile's image-text decoder projects into."""
    from inspect_app.text.encoders import ClipTextEncoder, MiniLMTextEncoder

    choice = config.image_text.text_encoder
    if choice == "clip" or (choice == "auto" and config.backbone.name == "openclip"):
        from inspect_app.backbones.openclip import OpenClipEncoder

        if not isinstance(encoder, OpenClipEncoder):
            raise ProfileError("the CLIP text encoder needs an OpenCLIP image encoder")
        return ClipTextEncoder(encoder.model, encoder.model_name)
    return MiniLMTextEncoder()


def text_embeddings(config: InspectorConfig, product: str, encoder: Backbone) -> tuple[list[str], torch.Tensor]:
    """The defect kinds and the prompt-ensemble embeddings of normal + each kind [1 + K, D]."""
    from inspect_app.text.encoders import PromptCache
    from inspect_app.text.prompts import build_prompts
    from inspect_app.vocabulary import DEFECT_VOCABULARY

    states, embeddings = PromptCache().get_or_encode(text_encoder_for(config, encoder), product,
                                                     build_prompts(product, DEFECT_VOCABULARY))
    return states[1:], embeddings


def _select(levels: list[torch.Tensor], idx: torch.Tensor) -> list[torch.Tensor]:
    return [lvl[idx] for lvl in levels]


def augmented_views(image: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """Mild, plausible re-acquisitions of a good image (shift, rotation, brightness): the stand-in
    for held-out normals when too few good images exist to hold any out."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    views = []
    for _ in range(n):
        angle = rng.uniform(-3, 3)
        tx, ty = rng.uniform(-0.03, 0.03) * w, rng.uniform(-0.03, 0.03) * h
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        m[:, 2] += (tx, ty)
        view = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        views.append(np.clip(view.astype(np.float32) * rng.uniform(0.96, 1.04), 0, 255).astype(np.uint8))
    return views


class Trainer:
    """One fit: ``Trainer(config, product).fit(images)``."""

    def __init__(self, config: InspectorConfig, product: str, batch_size: int = 8, encoder: Backbone | None = None,
                 progress: ProgressCallback | None = None):
        if config.mode == "zero-shot" and config.backbone.name != "openclip":
            raise ProfileError("zero-shot mode needs an OpenCLIP backbone (its image and text spaces are aligned)")
        self.config, self.product, self.batch_size, self.progress = config, product, batch_size, progress
        self.decoders: tuple[Decoder, ...] = config.fitted_decoders()
        self.encoder = encoder or create_backbone(config.backbone)
        kinds: list[str] = []
        embeddings = None
        if "image-text" in self.decoders:
            kinds, embeddings = text_embeddings(config, product, self.encoder)
        self.model = new_model(config, self.encoder, kinds, embeddings)
        self.skipped_defect_kinds: dict[str, str] = {}

    def _encode(self, images: Sequence[np.ndarray], stage: str = "encoding good images") -> Features:
        return encode_images(self.model, images, self.batch_size, self.progress, stage)

    def fit(self, images: Sequence[ImageInput], defect_images: Iterable[ImageInput] | None = None,
            ignore_mask: str | bytes | np.ndarray | None = None) -> FittedProduct:
        """Fit on good ``images``; ``defect_images`` (a few labelled defective parts, optional)
        make the thresholds F1-optimal instead of a false-reject-rate bound; ``ignore_mask``
        (a PNG path, bytes or array; non-zero = ignore) marks pixels that never count."""
        start = time.perf_counter()
        cfg = self.config
        good = read_good_images(images, cfg.k_shot, cfg.seed, self.progress)
        decoded, n = good.images, len(good.images)
        exposure = cfg.backbone.standardise_exposure
        if exposure is None:
            exposure = all(is_grayscale(im) for im in decoded)
        self.model.standardise_exposure = exposure
        shape, choice = self._input_shape(decoded)
        backbone = cfg.backbone.model_copy(update={"input_shape": shape, "standardise_exposure": exposure})
        cfg = self.config = cfg.model_copy(update={"backbone": backbone})
        self.model.input_shape = shape
        ignore = None if ignore_mask is None else read_ignore_mask(ignore_mask, shape)
        levels = self._encode(decoded).levels
        history: list[float] = []
        bank = self.model.image_image
        good_maps: torch.Tensor | None = None  # every good image's image-image map, scored as unseen
        if n >= MIN_HOLDOUT_IMAGES:
            holdout_method = "holdout"
            if bank is not None:
                patches = aggregate_patches(levels, bank.kernel)
                good_maps = self.model.smooth(bank.leave_one_out_scores(patches, bank.fit(patches, n)))
            normal = DecoderMaps(image_image=good_maps)
            if self.model.image_text is not None:
                n_hold = max(5, int(round(cfg.calibration.holdout_fraction * n)))
                order = np.random.default_rng(cfg.seed).permutation(n)
                hold, keep = torch.as_tensor(order[:n_hold]), torch.as_tensor(order[n_hold:])
                history = self._train_image_text([decoded[i] for i in keep.tolist()], _select(levels, keep))
                normal = self.model.decoder_maps(_select(levels, hold), ("image-text",))
                normal.image_image = None if good_maps is None else good_maps[hold]
        else:
            holdout_method = "leave-one-out-views" if n >= 2 else "augmented-views"
            bank_source = None
            if bank is not None:
                bank_source = bank.fit(aggregate_patches(levels, bank.kernel), n)
            if self.model.image_text is not None:
                history = self._train_image_text(decoded, levels)
            normal = self._few_shot_normal_maps(decoded, bank_source)
        if self.progress:
            self.progress(0, 1, "calibrating")
        post_processor = self._calibrate(normal, holdout_method, defect_images, good_maps, ignore)
        boxes = [estimate_part_box(img) for img in decoded[: min(n, 20)]]
        if sum(b is not None for b in boxes) >= PART_FRAME_SHARE * len(boxes):
            post_processor.part_frame = PartFrame.OBJECT
        if self.progress:
            self.progress(1, 1, "calibrating")
        report = FitReport(self.product, n, good.skipped, post_processor.calibrations[cfg.mode],
                           time.perf_counter() - start, list(post_processor.calibrations), history,
                           self.skipped_defect_kinds, choice, exposure)
        return FittedProduct(self.model, post_processor, report, good.records, cfg)

    def _input_shape(self, decoded: list[np.ndarray]) -> tuple[tuple[int, int], InputChoice | None]:
        """The input (height, width): as configured (a refit keeps its recorded shape), or chosen
        from the good images (``self_config``; EfficientNet-Lite encoders, which take any size)."""
        backbone = self.config.backbone
        if backbone.input_shape is not None:
            return backbone.input_shape, None
        if backbone.choose_input and backbone.name == "efficientnet-lite" and self.model.image_image is not None:
            choice = choose_input(self.model, decoded, self.config, self.batch_size, self.progress)
            return choice.input_shape, choice
        return input_shape([im.shape[:2] for im in decoded], backbone.image_size, backbone.keep_aspect), None

    def _calibrate(self, normal: DecoderMaps, holdout_method: str, defect_images: Iterable[ImageInput] | None,
                   good_maps: torch.Tensor | None, ignore: np.ndarray | None) -> PostProcessor:
        """A threshold per supported mode from the held-out good maps (and the fusion statistics);
        image-image mode uses ``good_maps`` (every good image, leave-one-out) when given."""
        model, cfg = self.model, self.config
        defect_maps = None
        if defect_images is not None:
            defects = [load_image(d) for d in defect_images]
            if defects:
                defect_maps = model.decoder_maps(self._encode(defects, "encoding defect images").levels,
                                                 self.decoders)
        if model.fusion is not None:
            assert normal.image_image is not None and normal.image_text is not None
            model.fusion.set_stats(log_score_stats(normal.image_image), log_score_stats(normal.image_text))
        supported: list[Mode] = [cfg.mode] if cfg.mode == "zero-shot" else [
            m for m in MODES if m != "zero-shot" and model.supports(m)]
        calibrations = {}
        for mode in supported:
            method = holdout_method
            if mode == "image-image" and good_maps is not None:
                normal_scores, method = image_scores(good_maps.numpy(), ignore), "in-bank-leave-one-out"
            else:
                normal_scores = image_scores(model.mode_map(normal, mode).numpy(), ignore)
            defect_scores = None if defect_maps is None else image_scores(model.mode_map(defect_maps, mode).numpy(),
                                                                          ignore)
            calibrations[mode] = calibrate_threshold(normal_scores, cfg.calibration.target_frr, method,
                                                     defect_scores=defect_scores)
        kinds = model.image_text.kinds if model.image_text is not None else []
        prior = kind_prior(normal.kinds.numpy()) if normal.kinds is not None else None
        return PostProcessor(calibrations, PartFrame.IMAGE, kinds, prior, ignore)

    def _train_image_text(self, images: list[np.ndarray], levels: list[torch.Tensor]) -> list[float]:
        from inspect_app.synthesis import DefectSynthesizer, SynthesisError

        decoder, cfg = self.model.image_text, self.config
        assert decoder is not None
        decoder.set_feature_stats(levels)
        if cfg.mode == "zero-shot":
            from inspect_app.backbones.openclip import OpenClipEncoder

            if not isinstance(self.encoder, OpenClipEncoder):
                raise ProfileError("zero-shot scoring needs an encoder with a joint image-text space (OpenCLIP)")
            decoder.init_zero_shot(self.encoder.joint_projection())
            decoder.eval()
            return []
        synthesizer = DefectSynthesizer(seed=cfg.seed)

        def synthesize(image: np.ndarray, donor: np.ndarray, kind: str,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | Unplaceable:
            try:
                sample = synthesizer.synthesize(image, donor=donor, kind=kind, rng=rng)
            except SynthesisError as exc:
                return Unplaceable(str(exc))
            return sample.image, sample.mask

        def encode(batch: list[np.ndarray]) -> list[torch.Tensor]:
            return self.model.encode(self.model.prepare(batch)).levels

        itc = cfg.image_text
        data = build_training_set(images, levels, encode, synthesize, decoder.kinds, itc.synthetic_per_image,
                                  itc.max_synthetic, cfg.seed, self.batch_size, self.progress)
        self.skipped_defect_kinds = data.skipped_kinds
        return train_image_text_decoder(decoder, data, itc.steps, itc.batch_size, itc.learning_rate, cfg.seed,
                                        self.progress)

    def _few_shot_normal_maps(self, decoded: list[np.ndarray], bank_source: torch.Tensor | None) -> DecoderMaps:
        """Stand-in held-out normals when fewer than 10 good images exist: augmented views of each
        image, scored by the image-image decoder against a bank of the *other* images
        (leave-one-out) when there are several."""
        n = len(decoded)
        per_image = max(2, AUGMENTED_VIEWS // n)
        views: list[np.ndarray] = []
        sources: list[int] = []
        for i, img in enumerate(decoded):
            views += augmented_views(img, per_image, self.config.seed + i)
            sources += [i] * per_image
        view_levels = self._encode(views, "encoding augmented views").levels
        bank = self.model.image_image
        leave_one_out = n > 1 and bank is not None
        out = self.model.decoder_maps(view_levels, tuple(d for d in self.decoders
                                                         if not (leave_one_out and d == "image-image")))
        if leave_one_out:
            assert bank is not None and bank_source is not None
            view_patches = aggregate_patches(view_levels, bank.kernel)  # the bank keeps every few-shot patch
            out.image_image = self.model.smooth(bank.leave_one_out_scores(view_patches, bank_source, sources))
        return out
