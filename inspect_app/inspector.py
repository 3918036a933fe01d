"""The one Inspector shared by the CLI, the station UI, the line runner and the reports.

``fit`` learns a product from good images only: a memory bank of normal patches (image-image
decoder), projections into a text space trained on synthesised defects (image-text decoder),
and, per mode, a threshold calibrated on held-out good images. ``predict`` returns an
``InspectionResult`` per image: verdict, calibrated score, anomaly map and region facts. Bad
images become ``ERROR`` results and never stop a batch.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import torch

from inspect_app import PROFILE_FORMAT, __version__
from inspect_app.backbones import Backbone, create_backbone
from inspect_app.config import MODES, InspectorConfig
from inspect_app.data.images import ImageInput, list_images, load_image
from inspect_app.decoders.fusion import DecoderStats, fuse
from inspect_app.decoders.image_image import ImageImageDecoder, aggregate_patches, smooth_upsample
from inspect_app.decoders.image_text import ImageTextDecoder, anomaly_odds, build_training_set, train_image_text_decoder
from inspect_app.errors import ImageLoadError, InspectAppError, NotEnoughImagesError, ProfileError
from inspect_app.imaging.foreground import estimate_part_box
from inspect_app.post_processing.calibration import Calibration, calibrate_threshold
from inspect_app.post_processing.regions import extract_regions
from inspect_app.profile import check_product_name, load_profile, models_dir, save_profile
from inspect_app.progress import ProgressCallback
from inspect_app.results import THRESHOLD, EvidenceFor, ExplanationEvidence, InspectionResult, Region, Verdict

MIN_HOLDOUT_IMAGES = 10  # below this, calibration uses leave-one-out instead of a held-out split
AUGMENTED_VIEWS = 8
# Which decoders each mode needs.
MODE_DECODERS = {"image-image": ("image-image",), "image-text": ("image-text",),
                 "fused": ("image-image", "image-text"), "zero-shot": ("image-text",)}


@dataclass
class FitReport:
    product: str
    n_images: int
    skipped: list[str]
    calibration: Calibration  # of the default mode
    seconds: float
    modes: list[str] = field(default_factory=list)
    training_loss: list[float] = field(default_factory=list)


@dataclass
class _Maps:
    """Raw maps of a batch: per decoder [B, S, S] at model resolution, and kind posteriors."""

    image_image: torch.Tensor | None = None
    image_text: torch.Tensor | None = None
    kinds: torch.Tensor | None = None  # [B, K, h, w] on the patch grid


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _augmented_views(image: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
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


def _select(levels: list[torch.Tensor], idx) -> list[torch.Tensor]:
    return [lvl[idx] for lvl in levels]


class Inspector:
    """Fit on good parts, then inspect. See module docstring."""

    def __init__(self, config: InspectorConfig | None = None, product: str | None = None,
                 batch_size: int = 8):
        self.config = config or InspectorConfig()
        self.product = product
        self.batch_size = batch_size
        self.mode = self.config.mode
        self._backbone: Backbone | None = None
        self.image_image: ImageImageDecoder | None = None
        self.image_text: ImageTextDecoder | None = None
        self.stats: dict[str, DecoderStats] = {}
        self.calibrations: dict[str, Calibration] = {}
        self.part_frame = "image"  # "object" when the part stands out from a plain background
        self.meta: dict = {}

    # ------------------------------------------------------------------ encoding
    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            self._backbone = create_backbone(self.config.backbone)
        return self._backbone

    @property
    def supported_modes(self) -> list[str]:
        return [m for m in MODES if m in self.calibrations]

    @property
    def profile_version(self) -> str | None:
        """The fitted profile's creation time (UTC): stored with every result it produces."""
        return self.meta.get("created_at")

    @property
    def calibration(self) -> Calibration | None:
        return self.calibrations.get(self.mode)

    @property
    def is_fitted(self) -> bool:
        return bool(self.calibrations)

    def _new_image_image(self) -> ImageImageDecoder:
        cfg = self.config.image_image
        return ImageImageDecoder(cfg.coreset_ratio, cfg.coreset_projection_dim, cfg.aggregation_kernel,
                                 self.config.seed)

    def _encode(self, images: Sequence[np.ndarray], progress: ProgressCallback | None = None) -> list[torch.Tensor]:
        """Encoder level features of decoded images, in batches."""
        chunks = []
        for start in range(0, len(images), self.batch_size):
            chunk = self.backbone.prepare(list(images[start:start + self.batch_size]))
            chunks.append([lvl.float().contiguous() for lvl in self.backbone.encode(chunk).levels])
            if progress:
                progress(min(start + self.batch_size, len(images)), len(images), "encoding good images")
        return [torch.cat(parts) for parts in zip(*chunks)]

    def _upsample(self, maps: torch.Tensor) -> torch.Tensor:
        return smooth_upsample(maps, self.backbone.image_size, self.config.image_image.blur_sigma)

    def _maps(self, levels: list[torch.Tensor], decoders: Iterable[str]) -> _Maps:
        out = _Maps()
        for name in decoders:
            if name == "image-image":
                patches = aggregate_patches(levels, self.image_image.kernel)
                out.image_image = self._upsample(self.image_image.patch_scores(patches))
            else:
                anomaly, kinds = self.image_text.maps(levels)
                out.image_text = self._upsample(anomaly)
                out.kinds = kinds
        return out

    def _mode_map(self, maps: _Maps, mode: str) -> torch.Tensor:
        if mode == "image-image":
            return maps.image_image
        if mode in ("image-text", "zero-shot"):
            return anomaly_odds(maps.image_text)
        return fuse(maps.image_image, maps.image_text, self.stats["image-image"], self.stats["image-text"])

    # ------------------------------------------------------------------ fitting
    def _read_sources(self, images, progress: ProgressCallback | None):
        sources: list = list_images(images)[0] if isinstance(images, (str, Path)) else list(images)
        if not sources:
            raise NotEnoughImagesError("no good images given: at least 1 is needed (10 or more for a reliable threshold)")
        k_shot = self.config.k_shot
        if k_shot is not None:
            if k_shot > len(sources):
                raise NotEnoughImagesError(f"--k-shot {k_shot} asks for more images than the {len(sources)} available")
            pick = np.random.default_rng(self.config.seed).choice(len(sources), k_shot, replace=False)
            sources = [sources[i] for i in sorted(pick)]
        decoded, hashes, skipped = [], [], []
        for i, src in enumerate(sources):
            name = str(src) if isinstance(src, (str, Path)) else f"image[{i}]"
            try:
                decoded.append(load_image(src, name=name))
                raw = Path(src).read_bytes() if isinstance(src, (str, Path)) else decoded[-1].tobytes()
                hashes.append({"name": Path(name).name, "sha256": _sha256(raw)})
            except ImageLoadError as exc:
                skipped.append(str(exc))
            if progress:
                progress(i + 1, len(sources), "reading images")
        if not decoded:
            raise NotEnoughImagesError(f"none of the {len(sources)} images could be read: " + "; ".join(skipped[:3]))
        return decoded, hashes, skipped

    def _text_embeddings(self) -> tuple[list[str], torch.Tensor]:
        from inspect_app.text.encoders import MiniLMTextEncoder, PromptCache
        from inspect_app.text.prompts import build_prompts
        from inspect_app.vocabulary import DEFECT_VOCABULARY

        choice = self.config.image_text.text_encoder
        if choice == "clip" or (choice == "auto" and self.config.backbone.name == "openclip"):
            from inspect_app.text.encoders import ClipTextEncoder

            backbone = self.backbone
            encoder = ClipTextEncoder(backbone.model, backbone.model_name)
        else:
            encoder = MiniLMTextEncoder()
        prompts = build_prompts(self.product or "part", DEFECT_VOCABULARY)
        states, embeddings = PromptCache().get_or_encode(encoder, self.product or "part", prompts)
        return states[1:], embeddings

    def _train_image_text(self, images: list[np.ndarray], levels: list[torch.Tensor],
                          progress: ProgressCallback | None) -> list[float]:
        from inspect_app.synthesis import DefectSynthesizer

        kinds, embeddings = self._text_embeddings()
        with torch.random.fork_rng():  # the projections' initial weights follow --seed, not the process
            torch.manual_seed(self.config.seed)
            decoder = ImageTextDecoder(self.backbone.channels, embeddings, kinds)
        decoder.set_feature_stats(levels)
        if self.mode == "zero-shot":
            decoder.init_zero_shot(self.backbone)
            self.image_text = decoder.eval()
            return []
        cfg = self.config.image_text
        synthesizer = DefectSynthesizer(seed=self.config.seed)

        def synthesize(image, donor, kind, rng):
            sample = synthesizer.synthesize(image, donor=donor, kind=kind, rng=rng)
            return sample.image, sample.mask

        data = build_training_set(images, levels, self._encode, synthesize, kinds, cfg.synthetic_per_image,
                                  cfg.max_synthetic, self.config.seed, self.batch_size, progress)
        history = train_image_text_decoder(decoder, data, cfg.steps, cfg.batch_size, cfg.learning_rate,
                                           self.config.seed, progress)
        self.image_text = decoder
        return history

    def fit(self, images: str | Path | Iterable[ImageInput], product: str | None = None,
            progress: ProgressCallback | None = None, defect_images: Iterable[ImageInput] | None = None) -> FitReport:
        """Learn a product from good images (a folder or a list of paths/arrays).

        Part of the good images is held out to calibrate the threshold of every supported mode
        (leave-one-out below 10 images, augmented views for one image). ``defect_images``
        (optional, a few labelled defective parts) make the thresholds F1-optimal instead.
        """
        start = time.perf_counter()
        self.product = check_product_name(product or self.product or "product")
        cfg = self.config
        if self.mode == "zero-shot" and cfg.backbone.name != "openclip":
            raise ProfileError("zero-shot mode needs an OpenCLIP backbone (its image and text spaces are aligned)")
        decoders = MODE_DECODERS[self.mode]
        decoded, hashes, skipped = self._read_sources(images, progress)
        n = len(decoded)
        levels = self._encode(decoded, progress)

        history: list[float] = []
        if n >= MIN_HOLDOUT_IMAGES:
            holdout_method = "holdout"
            n_hold = max(5, int(round(cfg.calibration.holdout_fraction * n)))
            order = np.random.default_rng(cfg.seed).permutation(n)
            hold, keep = torch.as_tensor(order[:n_hold]), torch.as_tensor(order[n_hold:])
            if "image-image" in decoders:
                self.image_image = self._new_image_image()
                self.image_image.fit(aggregate_patches(_select(levels, keep), self.image_image.kernel), len(keep))
            if "image-text" in decoders:
                history = self._train_image_text([decoded[i] for i in keep.tolist()], _select(levels, keep), progress)
            normal = self._maps(_select(levels, hold), decoders)
            if "image-image" in decoders:
                self.image_image.extend(aggregate_patches(_select(levels, hold), self.image_image.kernel))
        else:
            holdout_method = "leave-one-out-views" if n >= 2 else "augmented-views"
            if "image-image" in decoders:
                self.image_image = self._new_image_image()
                self.image_image.fit(aggregate_patches(levels, self.image_image.kernel), n)
            if "image-text" in decoders:
                history = self._train_image_text(decoded, levels, progress)
            normal = self._few_shot_normal_maps(decoded, levels, decoders)
        if progress:
            progress(0, 1, "calibrating")

        defect_maps = None
        if defect_images is not None:
            defects = [load_image(d) for d in defect_images]
            if defects:
                defect_maps = self._maps(self._encode(defects), decoders)
        if normal.kinds is not None:
            self.image_text.set_kind_prior(normal.kinds)
        self.stats = {}
        if normal.image_image is not None:
            self.stats["image-image"] = DecoderStats.from_maps(normal.image_image)
        if normal.image_text is not None:
            self.stats["image-text"] = DecoderStats.from_maps(normal.image_text)
        supported = [self.mode] if self.mode == "zero-shot" else [m for m in ("image-image", "image-text", "fused")
                                                                  if set(MODE_DECODERS[m]) <= set(decoders)]
        self.calibrations = {}
        for mode in supported:
            normal_scores = self._mode_map(normal, mode).flatten(1).amax(1).numpy()
            defect_scores = None if defect_maps is None else self._mode_map(defect_maps, mode).flatten(1).amax(1).numpy()
            self.calibrations[mode] = calibrate_threshold(normal_scores, cfg.calibration.target_frr, holdout_method,
                                                          defect_scores=defect_scores)
        boxes = [estimate_part_box(img) for img in decoded[: min(n, 20)]]
        self.part_frame = "object" if sum(b is not None for b in boxes) >= 0.8 * len(boxes) else "image"
        seconds = time.perf_counter() - start
        self.meta = {
            "training": {"count": n, "skipped": len(skipped), "images": hashes, "fit_seconds": round(seconds, 2),
                         "image_text_loss": [round(x, 5) for x in history]},
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if progress:
            progress(1, 1, "calibrating")
        return FitReport(self.product, n, skipped, self.calibrations[self.mode], seconds, supported, history)

    def _few_shot_normal_maps(self, decoded: list[np.ndarray], levels: list[torch.Tensor],
                              decoders: Sequence[str]) -> _Maps:
        """Stand-in held-out normals when fewer than 10 good images exist: mild re-acquisitions
        (augmented views) of each image, scored by the image-image decoder against a bank of the
        *other* images (leave-one-out) when there are several."""
        n = len(decoded)
        per_image = max(2, AUGMENTED_VIEWS // n)
        views, sources = [], []
        for i, img in enumerate(decoded):
            views += _augmented_views(img, per_image, self.config.seed + i)
            sources += [i] * per_image
        view_levels = self._encode(views)
        leave_one_out = n > 1 and "image-image" in decoders
        out = self._maps(view_levels, [d for d in decoders if not (leave_one_out and d == "image-image")])
        if leave_one_out:
            patches = aggregate_patches(levels, self.image_image.kernel)
            view_patches = aggregate_patches(view_levels, self.image_image.kernel)
            src = torch.tensor(sources)
            size = self.backbone.image_size
            maps = torch.empty(len(views), size, size)
            for i in range(n):
                loo = ImageImageDecoder(1.0, kernel=self.image_image.kernel)
                loo.fit(torch.cat([patches[:i], patches[i + 1:]]), n - 1)
                maps[src == i] = self._upsample(loo.patch_scores(view_patches[src == i]))
            out.image_image = maps
        return out

    # ------------------------------------------------------------------ prediction
    def _require_fitted(self, mode: str) -> None:
        if not self.is_fitted:
            raise ProfileError("the inspector is not fitted: fit a product or load a profile first")
        if mode not in self.calibrations:
            raise ProfileError(f"product {self.product!r} was fitted in mode {self.config.mode!r} and supports "
                               f"{', '.join(self.supported_modes)}; refit with --mode {mode} to use {mode!r}")

    def predict(self, images: ImageInput | Sequence[ImageInput], names: Sequence[str] | None = None,
                progress: ProgressCallback | None = None, mode: str | None = None,
                evidence: EvidenceFor = EvidenceFor.NONE) -> InspectionResult | list[InspectionResult]:
        """Inspect one image (returns one result) or a batch (returns a list, same order).
        ``evidence`` says which results also carry the explanation adapter's inputs."""
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        results = self.predict_batch(batch, names, progress, mode, evidence)
        return results[0] if single else results

    def predict_batch(self, images: Sequence[ImageInput], names: Sequence[str] | None = None,
                      progress: ProgressCallback | None = None, mode: str | None = None,
                      evidence: EvidenceFor = EvidenceFor.NONE) -> list[InspectionResult]:
        mode = mode or self.mode
        self._require_fitted(mode)
        names = list(names) if names is not None else [
            str(im) if isinstance(im, (str, Path)) else None for im in images]
        results: list[InspectionResult] = [None] * len(images)  # type: ignore[list-item]
        pool = ThreadPoolExecutor(max_workers=2) if len(images) > 1 else None
        try:
            for start in range(0, len(images), self.batch_size):
                idx = list(range(start, min(start + self.batch_size, len(images))))
                t0 = time.perf_counter()
                loaded = list(pool.map(self._safe_load, [images[i] for i in idx], [names[i] for i in idx])) \
                    if pool else [self._safe_load(images[i], names[i]) for i in idx]
                load_ms = (time.perf_counter() - t0) * 1000 / len(idx)
                ok = [(i, arr) for i, (arr, _err) in zip(idx, loaded) if arr is not None]
                for i, (arr, err) in zip(idx, loaded):
                    if arr is None:
                        results[i] = InspectionResult(names[i], Verdict.ERROR, error=err, product=self.product, mode=mode,
                                                      profile_version=self.profile_version,
                                                      timings_ms={"load": load_ms})
                if ok:
                    for i, res in zip([i for i, _ in ok], self._score([a for _, a in ok], load_ms, mode, evidence)):
                        res.file = names[i]
                        results[i] = res
                if progress:
                    progress(idx[-1] + 1, len(images), "inspecting")
        finally:
            if pool:
                pool.shutdown()
        return results

    @staticmethod
    def _safe_load(image: ImageInput, name: str | None) -> tuple[np.ndarray | None, str | None]:
        try:
            return load_image(image, name=name), None
        except ImageLoadError as exc:
            return None, str(exc)
        except Exception as exc:  # a station never crashes on one bad frame
            return None, f"{name or 'image'}: unexpected error while reading ({type(exc).__name__}: {exc})"

    def _score(self, arrays: list[np.ndarray], load_ms: float, mode: str,
               evidence: EvidenceFor) -> list[InspectionResult]:
        cal = self.calibrations[mode]
        t0 = time.perf_counter()
        levels = self._encode(arrays)
        maps = self._maps(levels, MODE_DECODERS[mode])
        raw_maps = self._mode_map(maps, mode).numpy()
        embeddings = torch.cat([lvl.mean(dim=(2, 3)) for lvl in levels], dim=1).numpy()
        infer_ms = (time.perf_counter() - t0) * 1000 / len(arrays)
        out = []
        for b, (arr, raw_map) in enumerate(zip(arrays, raw_maps)):
            t1 = time.perf_counter()
            raw_score = float(raw_map.max())
            score = float(cal.normalize(raw_score))
            cal_map = cal.normalize(raw_map)
            h, w = arr.shape[:2]
            part_box = estimate_part_box(arr) if self.part_frame == "object" else None
            regions = []
            if score > THRESHOLD:
                regions = extract_regions(cal_map, (w, h), part_box, THRESHOLD)
                if maps.kinds is not None and regions:
                    self._label_regions(regions, cal_map, maps.kinds[b].numpy(), (w, h))
            post_ms = (time.perf_counter() - t1) * 1000
            verdict = Verdict.FAIL if score > THRESHOLD else Verdict.PASS
            wanted = evidence == EvidenceFor.ALL or (evidence == EvidenceFor.FAILS and verdict == Verdict.FAIL)
            out.append(InspectionResult(
                file=None, verdict=verdict, score=score, raw_score=raw_score,
                regions=regions, anomaly_map=cal_map, image_size=(w, h), part_box=part_box, product=self.product,
                mode=mode, profile_version=self.profile_version,
                timings_ms={"load": load_ms, "inference": infer_ms, "post": post_ms, "total": load_ms + infer_ms + post_ms},
                evidence=ExplanationEvidence(None if maps.kinds is None else maps.kinds[b].numpy(), embeddings[b])
                if wanted else None))
        return out

    def _label_regions(self, regions: list[Region], cal_map: np.ndarray, posteriors: np.ndarray,
                       image_size: tuple[int, int]) -> None:
        """Each region's defect kind: the kind posterior averaged over the region's box on the
        patch grid, weighted by how far each patch is above the threshold, without the product's
        lean (``ImageTextDecoder.region_kinds``)."""
        kinds = self.image_text.kinds
        grid_h, grid_w = posteriors.shape[-2:]
        small = cv2.resize(cal_map, (grid_w, grid_h), interpolation=cv2.INTER_AREA)
        width, height = image_size
        for region in regions:
            x0, y0, x1, y1 = region.bbox
            gx0, gy0 = min(int(x0 / width * grid_w), grid_w - 1), min(int(y0 / height * grid_h), grid_h - 1)
            gx1 = max(int(np.ceil(x1 / width * grid_w)), gx0 + 1)
            gy1 = max(int(np.ceil(y1 / height * grid_h)), gy0 + 1)
            weights = np.clip(small[gy0:gy1, gx0:gx1] - THRESHOLD, 1e-3, None)
            post = self.image_text.region_kinds((posteriors[:, gy0:gy1, gx0:gx1] * weights).sum(axis=(1, 2))
                                                / weights.sum())
            best = int(post.argmax())
            region.defect_type, region.defect_probability = kinds[best], round(float(post[best]), 4)

    def set_target_frr(self, target_frr: float, mode: str | None = None) -> Calibration:
        """Move a fitted mode's threshold to another false-reject target, re-using its held-out
        good scores (an F1-optimal threshold becomes a prediction bound again). The profile gets
        a new version, so stored results say which threshold judged them; ``save`` writes it."""
        mode = mode or self.mode
        self._require_fitted(mode)
        self.calibrations[mode] = self.calibrations[mode].with_sensitivity(target_frr)
        self.meta["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        return self.calibrations[mode]

    # ------------------------------------------------------------------ persistence
    def save(self, root: str | Path | None = None) -> Path:
        """Write ``<models dir>/<product>/`` atomically."""
        if not self.is_fitted:
            raise ProfileError("the inspector is not fitted: nothing to save")
        groups: dict[str, dict[str, torch.Tensor]] = {}
        if self.image_image is not None:
            groups["memory_bank"] = {"memory_bank": self.image_image.bank}
        if self.image_text is not None:
            groups["image_text"] = {f"image_text.{k}": v for k, v in self.image_text.state_dict().items()}
        meta = {
            "format": PROFILE_FORMAT, "package_version": __version__, "product": self.product,
            "config": self.config.model_dump(mode="json"),
            "backbone_fingerprint": self.backbone.fingerprint,
            "normalisation": {"mean": list(self.backbone.mean), "std": list(self.backbone.std),
                              "image_size": self.backbone.image_size},
            "feature_dim": int(sum(self.backbone.channels)),
            "memory_bank_size": int(self.image_image.bank.shape[0]) if self.image_image is not None else 0,
            "defect_kinds": self.image_text.kinds if self.image_text is not None else [],
            "text_dim": int(self.image_text.text.shape[1]) if self.image_text is not None else 0,
            "part_frame": self.part_frame, "supported_modes": self.supported_modes,
            "decoder_stats": {k: v.to_dict() for k, v in self.stats.items()},
            "calibrations": {k: v.to_dict() for k, v in self.calibrations.items()},
            "tensors": list(groups), **self.meta,
        }
        return save_profile(models_dir(root) / check_product_name(self.product or ""), meta, groups)

    @classmethod
    def load(cls, product: str, root: str | Path | None = None, mode: str | None = None) -> Inspector:
        """Load a saved product; refuses profiles from another format or encoder with the fix."""
        folder = models_dir(root) / check_product_name(product)
        meta, tensors = load_profile(folder)
        try:
            config = InspectorConfig.model_validate(meta["config"])
            inspector = cls(config, product=meta.get("product", product))
            inspector.calibrations = {k: Calibration.from_dict(v) for k, v in meta["calibrations"].items()}
            inspector.stats = {k: DecoderStats(**v) for k, v in meta.get("decoder_stats", {}).items()}
            inspector.part_frame = meta.get("part_frame", "image")
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"profile {product!r} is incomplete or corrupt ({exc}); refit the product") from None
        fingerprint = inspector.backbone.fingerprint
        if meta.get("backbone_fingerprint") != fingerprint:
            raise ProfileError(
                f"profile {product!r} was fitted with encoder {meta.get('backbone_fingerprint')}, but this "
                f"installation provides {fingerprint}: refit the product")
        if meta.get("feature_dim") != sum(inspector.backbone.channels):
            raise ProfileError(f"profile {product!r} does not match its encoder's features; refit the product")
        if "memory_bank" in tensors:
            bank = tensors["memory_bank"]
            if bank.ndim != 2 or bank.shape[1] != meta["feature_dim"]:
                raise ProfileError(f"profile {product!r} has a memory bank that does not match its encoder; refit the product")
            inspector.image_image = inspector._new_image_image()
            inspector.image_image.load_bank(bank)
        state = {k[len("image_text."):]: v for k, v in tensors.items() if k.startswith("image_text.")}
        if state:
            kinds = meta.get("defect_kinds", [])
            decoder = ImageTextDecoder(inspector.backbone.channels, state["text"], kinds)
            try:
                decoder.load_state_dict(state)
            except RuntimeError as exc:
                raise ProfileError(f"profile {product!r} has image-text weights that do not fit ({exc}); refit") from None
            inspector.image_text = decoder.eval()
        for needed_mode in inspector.calibrations:
            needs = MODE_DECODERS[needed_mode]
            if ("image-image" in needs and inspector.image_image is None) or \
                    ("image-text" in needs and inspector.image_text is None):
                raise ProfileError(f"profile {product!r} lacks the weights for mode {needed_mode!r}; refit the product")
        inspector.meta = {k: meta[k] for k in ("training", "created_at") if k in meta}
        if mode is not None:
            inspector._require_fitted(mode)
            inspector.mode = mode
        return inspector


__all__ = ["Inspector", "InspectionResult", "FitReport", "InspectAppError"]
