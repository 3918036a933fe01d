"""The one Inspector the CLI, the station UI, the line, the API and the reports share.

A thin facade: ``fit`` hands good images to the ``training.Trainer``; ``predict`` decodes
images, runs the ``torch_model.InspectionModel`` and hands its raw maps to the numpy
``post_processing.PostProcessor``; ``save``/``load`` go through ``profile``. Bad images become
``ERROR`` results and never stop a batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspect_app import PROFILE_FORMAT, __version__
from inspect_app.backbones import Backbone, create_backbone
from inspect_app.batching import (
    PredictsOneOrMany,
    error_result_for,
    inspect_in_batches,
    keep_numpy_blas_on_one_thread,
    result_names,
)
from inspect_app.config import MODE_DECODERS, MODES, InspectorConfig, Mode
from inspect_app.data.good_images import image_sources
from inspect_app.data.images import ImageInput, load_image
from inspect_app.decoders.image_image import ImageImageDecoder, aggregate_patches
from inspect_app.decoders.image_text import ImageTextDecoder
from inspect_app.errors import ProfileError
from inspect_app.post_processing.calibration import Calibration
from inspect_app.post_processing.image_score import image_scores
from inspect_app.post_processing.kinds import BankStatistics, KindBook, kind_features
from inspect_app.post_processing.post_processor import PostProcessor
from inspect_app.profile import check_product_name, load_profile, models_dir, save_profile
from inspect_app.progress import ProgressCallback
from inspect_app.results import EvidenceFor, ExplanationEvidence, InspectionResult, Verdict
from inspect_app.torch_model import InspectionModel
from inspect_app.training import FitReport, Trainer, model_input_shape
from inspect_app.vocabulary import DEFECT_KINDS


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def next_profile_version(previous: str | None) -> str:
    """A profile version (UTC time, milliseconds) strictly after ``previous``: two changes within
    one millisecond (teaching a kind right after a fit) must still name two different profiles."""
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    if previous is not None:
        try:
            last = datetime.fromisoformat(previous)
        except ValueError:
            last = None
        if last is not None and now <= last:
            now = last + timedelta(milliseconds=1)
    return now.isoformat(timespec="milliseconds")


class Inspector(PredictsOneOrMany):
    """Fit on good parts, then inspect. See the module docstring."""

    def __init__(self, config: InspectorConfig | None = None, product: str | None = None, batch_size: int = 8):
        self.config = config or InspectorConfig()
        self.product = product
        self.batch_size = batch_size
        self.mode: Mode = self.config.mode
        self.model: InspectionModel | None = None
        self.post_processor: PostProcessor | None = None
        self.meta: dict[str, Any] = {}
        self._bank_statistics = BankStatistics()  # of the memory bank, for naming kinds
        keep_numpy_blas_on_one_thread()

    @property
    def is_fitted(self) -> bool:
        return self.model is not None and self.post_processor is not None

    @property
    def calibrations(self) -> dict[Mode, Calibration]:
        return self.post_processor.calibrations if self.post_processor is not None else {}

    @property
    def calibration(self) -> Calibration | None:
        return self.calibrations.get(self.mode)

    @property
    def supported_modes(self) -> list[Mode]:
        return [m for m in MODES if m in self.calibrations]

    @property
    def kinds(self) -> list[str]:
        """The defect kinds regions can be labelled and named with (empty without a memory bank)."""
        book = self.post_processor.kind_book if self.post_processor is not None else None
        return book.names if book is not None else []

    @property
    def input_shape(self) -> tuple[int, int]:
        """(height, width) every image is resized to for the encoder; anomaly maps have this shape."""
        return model_input_shape(self.config)

    @property
    def profile_version(self) -> str | None:
        """The fitted profile's creation time (UTC): stored with every result it produces."""
        return self.meta.get("created_at")

    def fit(self, images: str | Path | Iterable[ImageInput], product: str | None = None,
            progress: ProgressCallback | None = None,
            defect_images: Iterable[ImageInput] | None = None,
            ignore_mask: str | bytes | np.ndarray | None = None) -> FitReport:
        """Learn a product from good images (a folder or a list of paths/arrays); see ``training``.
        ``defect_images`` (a few labelled defective parts) make the thresholds F1-optimal;
        ``ignore_mask`` (PNG path, bytes or array, non-zero = ignore) zeroes the map there."""
        self.product = check_product_name(product or self.product or "product")
        trainer = Trainer(self.config, self.product, self.batch_size, progress=progress)
        fitted = trainer.fit(image_sources(images), defect_images, ignore_mask)
        self.model, self.post_processor, self.config = fitted.model, fitted.post_processor, fitted.config
        self.post_processor.kind_book = default_kind_book(self.model)
        report = fitted.report
        self.meta = {
            "training": {"count": report.n_images, "skipped": len(report.skipped),
                         "images": [r.to_dict() for r in fitted.training_images],
                         "fit_seconds": round(report.seconds, 2),
                         "image_text_loss": [round(x, 5) for x in report.training_loss]},
            "created_at": next_profile_version(self.profile_version),
        }
        if report.input_choice is not None:
            self.meta["input_choice"] = report.input_choice.to_dict()
        return report

    def _require_fitted(self, mode: Mode) -> tuple[InspectionModel, PostProcessor]:
        if self.model is None or self.post_processor is None:
            raise ProfileError("the inspector is not fitted: fit a product or load a profile first")
        if mode not in self.calibrations:
            raise ProfileError(f"product {self.product!r} was fitted in mode {self.config.mode!r} and supports "
                               f"{', '.join(self.supported_modes)}; refit with --mode {mode} to use {mode!r}")
        return self.model, self.post_processor

    def predict_batch(self, images: Sequence[ImageInput], names: Sequence[str | None] | None = None,
                      progress: ProgressCallback | None = None, mode: Mode | None = None,
                      evidence: EvidenceFor = EvidenceFor.NONE) -> list[InspectionResult]:
        mode = mode or self.mode
        self._require_fitted(mode)

        with ThreadPoolExecutor(max_workers=2) as pool:
            return inspect_in_batches(images, result_names(images, names), self.batch_size, pool,
                                      lambda arrays, load_ms: self._score(arrays, load_ms, mode, evidence),
                                      error_result_for(self.product, mode, self.profile_version), progress)

    def _score(self, arrays: list[np.ndarray], load_ms: float, mode: Mode,
               evidence: EvidenceFor) -> list[InspectionResult]:
        model, post_processor = self._require_fitted(mode)
        t0 = time.perf_counter()
        name_kinds = post_processor.names_kinds and model.image_image is not None
        with torch.inference_mode():
            features = model.encode(model.prepare(arrays))
            maps = model.decoder_maps(features.levels, MODE_DECODERS[mode], keep_patches=name_kinds)
            raw_maps = model.mode_map(maps, mode).numpy()
        kinds = maps.kinds.numpy() if maps.kinds is not None else None
        embeddings = features.embedding.numpy()
        infer_ms = (time.perf_counter() - t0) * 1000 / len(arrays)
        out = []
        for b, arr in enumerate(arrays):
            t1 = time.perf_counter()
            result = post_processor.process(arr, raw_maps[b], mode)
            post_ms = (time.perf_counter() - t1) * 1000
            result.product, result.profile_version = self.product, self.profile_version
            result.timings_ms = {"load": load_ms, "inference": infer_ms, "post": post_ms,
                                 "total": load_ms + infer_ms + post_ms}
            if evidence == EvidenceFor.ALL or (evidence == EvidenceFor.FAILS and result.verdict == Verdict.FAIL):
                result.evidence = ExplanationEvidence(kinds[b] if kinds is not None else None, embeddings[b])
            out.append(result)
        # Kinds are named for failed parts only, and only once some kind can be named: a pass costs
        # nothing more, a fail a nearest-patch search over its regions' patches above the threshold.
        if name_kinds and any(result.regions for result in out):
            assert model.image_image is not None
            with torch.inference_mode():
                patches = maps.patches if maps.patches is not None else \
                    aggregate_patches(features.levels, model.image_image.kernel)
            post_processor.name_kinds(out, patches.numpy(), model.image_image.memory_bank.numpy(),
                                      self._bank_statistics)
        return out

    def kind_features(self, images: Sequence[ImageInput]) -> np.ndarray:
        """``post_processing.kinds.kind_features`` [B, 2C, h, w] of images on every patch, which
        labelled regions are described with; ``ProfileError`` without a memory bank."""
        model, _ = self._require_fitted(self.mode)
        if model.image_image is None:
            raise ProfileError(kinds_need_a_memory_bank(self.product, self.config.mode))
        with torch.inference_mode():
            levels = model.encode(model.prepare([load_image(im) for im in images])).levels
            patches = aggregate_patches(levels, model.image_image.kernel).numpy()
        return kind_features(patches, model.image_image.memory_bank.numpy(), self._bank_statistics)

    def set_target_frr(self, target_frr: float, mode: Mode | None = None) -> Calibration:
        """Move a fitted mode's threshold to another false-reject target, re-using its held-out
        good scores (an F1-optimal threshold becomes a prediction bound again). The profile gets
        a new version, so stored results say which threshold judged them; ``save`` writes it."""
        mode = mode or self.mode
        _, post_processor = self._require_fitted(mode)
        post_processor.calibrations[mode] = post_processor.calibrations[mode].with_sensitivity(target_frr)
        self.meta["created_at"] = next_profile_version(self.profile_version)
        return post_processor.calibrations[mode]

    def learn_good(self, images: Sequence[ImageInput], names: Sequence[str] | None = None) -> dict[Mode, Calibration]:
        """Learn good parts without a refit (an approved false reject): their patches join the
        memory bank, and every mode's threshold is placed again with their scores as they were
        before learning (what such a part scores while unseen, as a held-out good part would).
        The profile gets a new version; ``save`` writes it. Needs a memory bank (image-image or
        fused); unreadable images raise ``ImageLoadError``."""
        model, post_processor = self._require_fitted(self.mode)
        if model.image_image is None:
            raise ProfileError(f"product {self.product!r} has no memory of good patches ({self.config.mode} mode): "
                               "refit it with its new good images instead")
        decoded = [load_image(im, name=None if names is None else names[i]) for i, im in enumerate(images)]
        if not decoded:
            return dict(post_processor.calibrations)
        features = model.encode(model.prepare(decoded))
        new_scores = {mode: image_scores(model.mode_map(model.decoder_maps(features.levels, MODE_DECODERS[mode]),
                                                        mode).numpy(), post_processor.ignore_mask).tolist()
                      for mode in post_processor.calibrations}
        model.image_image.extend(aggregate_patches(features.levels, model.image_image.kernel))
        for mode, scores in new_scores.items():
            post_processor.calibrations[mode] = post_processor.calibrations[mode].with_more_normals(scores)
        learned = self.meta.setdefault("learned", [])
        learned += [{"name": None if names is None else names[i], "at": _now()} for i in range(len(decoded))]
        self.meta["created_at"] = next_profile_version(self.profile_version)
        return dict(post_processor.calibrations)

    def save(self, root: str | Path | None = None) -> Path:
        """Write ``<models dir>/<product>/`` atomically."""
        if self.model is None or self.post_processor is None:
            raise ProfileError("the inspector is not fitted: nothing to save")
        encoder = self.model.encoder
        meta = {
            "format": PROFILE_FORMAT, "package_version": __version__, "product": self.product,
            "config": self.config.model_dump(mode="json"),
            "backbone_fingerprint": encoder.fingerprint, "feature_dim": int(sum(encoder.channels)),
            "supported_modes": self.supported_modes,
            "post_processing": self.post_processor.to_dict(), **self.meta,
        }
        if self.post_processor.kind_book is not None:
            meta["kinds"] = self.post_processor.kind_book.to_dict()
        return save_profile(models_dir(root) / check_product_name(self.product or ""), meta,
                            self.model.fitted_state())

    @classmethod
    def load(cls, product: str, root: str | Path | None = None, mode: Mode | None = None) -> Inspector:
        """Load a saved product; refuses profiles from another format or encoder with the fix."""
        meta, tensors = load_profile(models_dir(root) / check_product_name(product))
        try:
            config = InspectorConfig.model_validate(meta["config"])
            post_processor = PostProcessor.from_dict(meta["post_processing"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"profile {product!r} is incomplete or corrupt ({exc}); refit the product") from None
        inspector = cls(config, product=meta.get("product", product))
        encoder = create_backbone(config.backbone)
        if meta.get("backbone_fingerprint") != encoder.fingerprint:
            raise ProfileError(
                f"profile {product!r} was fitted with encoder {meta.get('backbone_fingerprint')}, but this "
                f"installation provides {encoder.fingerprint}: refit the product")
        inspector.model = _model_from_state(product, config, encoder, tensors, post_processor.kinds)
        post_processor.kind_book = KindBook.from_dict(meta["kinds"]) if "kinds" in meta \
            else default_kind_book(inspector.model)
        inspector.post_processor = post_processor
        for needed_mode in post_processor.calibrations:
            if not inspector.model.supports(needed_mode):
                raise ProfileError(f"profile {product!r} lacks the weights for mode {needed_mode!r}; refit the product")
        inspector.meta = {k: meta[k] for k in ("training", "created_at", "learned", "input_choice") if k in meta}
        if mode is not None:
            inspector._require_fitted(mode)
            inspector.mode = mode
        return inspector


def kinds_need_a_memory_bank(product: str | None, mode: str) -> str:
    return (f"product {product!r} has no memory of good patches ({mode} mode), which defect kinds are "
            f"described with: refit it with `inspect-app fit FOLDER --product {product} --mode image-image` "
            "(or --mode fused)")


def default_kind_book(model: InspectionModel) -> KindBook | None:
    """The built-in vocabulary's kinds (the image-text decoder's, when it has one), none labelled
    yet; None without a memory bank, which kinds are described with."""
    if model.image_image is None:
        return None
    return KindBook.from_names(list(model.image_text.kinds) if model.image_text is not None else list(DEFECT_KINDS))


def _model_from_state(product: str, config: InspectorConfig, encoder: Backbone, tensors: dict[str, torch.Tensor],
                      kinds: list[str]) -> InspectionModel:
    """The fitted model a profile's tensors describe (the encoder comes from its wheel)."""
    cfg = config.image_image
    image_image = image_text = None
    if "image_image.memory_bank" in tensors:
        image_image = ImageImageDecoder(int(sum(encoder.channels)), cfg.aggregation_kernel, cfg.coreset_ratio,
                                        cfg.coreset_projection_dim, config.seed)
    if "image_text.text" in tensors:
        try:
            image_text = ImageTextDecoder(list(encoder.channels), tensors["image_text.text"], kinds)
        except ValueError as exc:
            raise ProfileError(f"profile {product!r} has image-text weights that do not fit ({exc}); refit") from None
    model = InspectionModel(encoder, image_image, image_text, cfg.blur_sigma, model_input_shape(config),
                            bool(config.backbone.standardise_exposure))
    try:
        model.load_fitted_state(tensors)
    except (RuntimeError, ValueError) as exc:
        raise ProfileError(f"profile {product!r} does not match its encoder or decoders ({exc}); "
                           "refit the product") from None
    return model.eval()


__all__ = ["FitReport", "Inspector", "default_kind_book", "kinds_need_a_memory_bank"]
