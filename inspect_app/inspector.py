"""The one Inspector shared by the CLI, the station UI, the line runner and the reports.

``fit`` learns a product from good images only (memory bank + threshold calibrated on held-out
good images); ``predict`` returns an ``InspectionResult`` per image: verdict, calibrated score,
anomaly map and region facts. Bad images become ``ERROR`` results and never stop a batch.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from inspect_app import PROFILE_FORMAT, __version__
from inspect_app.backbones import Backbone, create_backbone
from inspect_app.config import InspectorConfig
from inspect_app.data.images import ImageInput, list_images, load_image
from inspect_app.decoders.image_image import ImageImageDecoder, aggregate_patches, gaussian_blur
from inspect_app.errors import ImageLoadError, InspectAppError, NotEnoughImagesError, ProfileError
from inspect_app.post_processing.calibration import Calibration, calibrate_threshold
from inspect_app.post_processing.regions import Region, estimate_part_box, extract_regions
from inspect_app.profile import check_product_name, load_profile, models_dir, save_profile

Progress = Callable[[int, int, str], None]
THRESHOLD = 0.5  # calibrated scores put the decision threshold here
MIN_HOLDOUT_IMAGES = 10  # below this, calibration uses leave-one-out instead of a held-out split
AUGMENTED_VIEWS = 8


@dataclass
class InspectionResult:
    """What one inspected image produced. ``score`` is calibrated: FAIL when above ``threshold``."""

    file: str | None
    verdict: str  # "PASS", "FAIL" or "ERROR"
    score: float | None = None
    threshold: float = THRESHOLD
    raw_score: float | None = None
    regions: list[Region] = field(default_factory=list)
    anomaly_map: np.ndarray | None = None  # calibrated map at model resolution (0.5 = threshold)
    image_size: tuple[int, int] | None = None  # original width, height
    part_box: tuple[int, int, int, int] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    product: str | None = None

    def to_dict(self) -> dict:
        return {
            "file": self.file, "product": self.product, "verdict": self.verdict,
            "score": None if self.score is None else round(self.score, 6), "threshold": self.threshold,
            "raw_score": None if self.raw_score is None else round(self.raw_score, 6),
            "regions": [r.to_dict() for r in self.regions], "image_size": self.image_size,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()}, "error": self.error,
        }


@dataclass
class FitReport:
    product: str
    n_images: int
    skipped: list[str]
    calibration: Calibration
    seconds: float


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _augmented_views(image: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """Mild, plausible re-acquisitions of one good image (shift, rotation, brightness): the only
    stand-in for held-out normals when a product is fitted on a single image."""
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


class Inspector:
    """Fit on good parts, then inspect. See module docstring."""

    def __init__(self, config: InspectorConfig | None = None, product: str | None = None,
                 batch_size: int = 8):
        self.config = config or InspectorConfig()
        self.product = product
        self.batch_size = batch_size
        self._backbone: Backbone | None = None
        self.decoder = ImageImageDecoder(
            coreset_ratio=self.config.image_image.coreset_ratio,
            projection_dim=self.config.image_image.coreset_projection_dim,
            kernel=self.config.image_image.aggregation_kernel, seed=self.config.seed)
        self.calibration: Calibration | None = None
        self.part_frame = "image"  # "object" when the part stands out from a plain background
        self.meta: dict = {}

    # ------------------------------------------------------------------ encoding
    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            self._backbone = create_backbone(self.config.backbone)
        return self._backbone

    @property
    def is_fitted(self) -> bool:
        return self.decoder.bank is not None and self.calibration is not None

    def _patches(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Aggregated patch features [B, C, H, W] of decoded images, in batches."""
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = self.backbone.prepare(list(images[start:start + self.batch_size]))
            out.append(aggregate_patches(self.backbone.encode(chunk).levels, self.decoder.kernel))
        return torch.cat(out)

    def _raw_maps(self, patches: torch.Tensor, decoder: ImageImageDecoder | None = None) -> torch.Tensor:
        """Raw anomaly maps [B, S, S] at model resolution (upsampled, smoothed patch distances)."""
        scores = (decoder or self.decoder).patch_scores(patches).unsqueeze(1)
        size = self.backbone.image_size
        maps = F.interpolate(scores, size=(size, size), mode="bilinear", align_corners=False)
        return gaussian_blur(maps, self.config.image_image.blur_sigma).squeeze(1)

    # ------------------------------------------------------------------ fitting
    def fit(self, images: str | Path | Iterable[ImageInput], product: str | None = None,
            progress: Progress | None = None, defect_images: Iterable[ImageInput] | None = None) -> FitReport:
        """Learn a product from good images (a folder or a list of paths/arrays).

        Part of the good images is held out to calibrate the threshold (leave-one-out below
        10 images; augmented views for a single image). ``defect_images`` (optional, a few
        labelled defective parts) switch the threshold to the F1-optimal one.
        """
        start = time.perf_counter()
        self.product = check_product_name(product or self.product or "product")
        cfg = self.config
        sources: list = list_images(images)[0] if isinstance(images, (str, Path)) else list(images)
        if not sources:
            raise NotEnoughImagesError("no good images given: at least 1 is needed (10 or more for a reliable threshold)")
        if cfg.k_shot is not None:
            if cfg.k_shot > len(sources):
                raise NotEnoughImagesError(f"--k-shot {cfg.k_shot} asks for more images than the {len(sources)} available")
            pick = np.random.default_rng(cfg.seed).choice(len(sources), cfg.k_shot, replace=False)
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

        n = len(decoded)
        patches = []
        for s in range(0, n, self.batch_size):
            patches.append(self._patches(decoded[s:s + self.batch_size]))
            if progress:
                progress(min(s + self.batch_size, n), n, "encoding good images")
        all_patches = torch.cat(patches)
        if progress:
            progress(0, 1, "building memory bank and calibrating")

        if n >= MIN_HOLDOUT_IMAGES:
            holdout_method = "holdout"
            n_hold = max(5, int(round(cfg.calibration.holdout_fraction * n)))
            order = np.random.default_rng(cfg.seed).permutation(n)
            hold, keep = torch.as_tensor(order[:n_hold]), torch.as_tensor(order[n_hold:])
            self.decoder.fit(all_patches[keep], len(keep))
            normal_maps = self._raw_maps(all_patches[hold])
            self.decoder.extend(all_patches[hold])
        elif n >= 2:
            holdout_method = "leave-one-out"
            maps = []
            for i in range(n):
                others = torch.cat([all_patches[:i], all_patches[i + 1:]])
                loo = ImageImageDecoder(1.0, kernel=self.decoder.kernel)
                loo.fit(others, n - 1)
                maps.append(self._raw_maps(all_patches[i:i + 1], loo))
            normal_maps = torch.cat(maps)
            self.decoder.fit(all_patches, n)
        else:
            holdout_method = "augmented-views"
            self.decoder.fit(all_patches, n)
            views = _augmented_views(decoded[0], AUGMENTED_VIEWS, cfg.seed)
            normal_maps = self._raw_maps(self._patches(views))

        normal_scores = normal_maps.amax(dim=(1, 2)).numpy()
        defect_scores = None
        if defect_images is not None:
            defects = [load_image(d) for d in defect_images]
            if defects:
                defect_scores = self._raw_maps(self._patches(defects)).amax(dim=(1, 2)).numpy()
        self.calibration = calibrate_threshold(normal_scores, cfg.calibration.target_frr, holdout_method,
                                               defect_scores=defect_scores)
        boxes = [estimate_part_box(img) for img in decoded[: min(n, 20)]]
        self.part_frame = "object" if sum(b is not None for b in boxes) >= 0.8 * len(boxes) else "image"
        seconds = time.perf_counter() - start
        self.meta = {
            "training": {"count": n, "skipped": len(skipped), "images": hashes, "fit_seconds": round(seconds, 2)},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if progress:
            progress(1, 1, "building memory bank and calibrating")
        return FitReport(self.product, n, skipped, self.calibration, seconds)

    # ------------------------------------------------------------------ prediction
    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise ProfileError("the inspector is not fitted: fit a product or load a profile first")

    def predict(self, images: ImageInput | Sequence[ImageInput], names: Sequence[str] | None = None,
                progress: Progress | None = None) -> InspectionResult | list[InspectionResult]:
        """Inspect one image (returns one result) or a batch (returns a list, same order)."""
        single = not isinstance(images, (list, tuple))
        batch = [images] if single else list(images)
        results = self.predict_batch(batch, names, progress)
        return results[0] if single else results

    def predict_batch(self, images: Sequence[ImageInput], names: Sequence[str] | None = None,
                      progress: Progress | None = None) -> list[InspectionResult]:
        self._require_fitted()
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
                        results[i] = InspectionResult(names[i], "ERROR", error=err, product=self.product,
                                                      timings_ms={"load": load_ms})
                if ok:
                    for i, res in zip([i for i, _ in ok], self._score([a for _, a in ok], load_ms)):
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

    def _score(self, arrays: list[np.ndarray], load_ms: float) -> list[InspectionResult]:
        cal = self.calibration
        assert cal is not None
        t0 = time.perf_counter()
        raw_maps = self._raw_maps(self._patches(arrays)).numpy()
        infer_ms = (time.perf_counter() - t0) * 1000 / len(arrays)
        out = []
        for arr, raw_map in zip(arrays, raw_maps):
            t1 = time.perf_counter()
            raw_score = float(raw_map.max())
            score = float(cal.normalize(raw_score))
            cal_map = cal.normalize(raw_map)
            h, w = arr.shape[:2]
            part_box = estimate_part_box(arr) if self.part_frame == "object" else None
            regions = []
            if score > THRESHOLD:
                regions = extract_regions(cal_map, (w, h), part_box, THRESHOLD)
            post_ms = (time.perf_counter() - t1) * 1000
            out.append(InspectionResult(
                file=None, verdict="FAIL" if score > THRESHOLD else "PASS", score=score, raw_score=raw_score,
                regions=regions, anomaly_map=cal_map, image_size=(w, h), part_box=part_box, product=self.product,
                timings_ms={"load": load_ms, "inference": infer_ms, "post": post_ms,
                            "total": load_ms + infer_ms + post_ms}))
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, root: str | Path | None = None) -> Path:
        """Write ``<models dir>/<product>/`` atomically."""
        self._require_fitted()
        assert self.calibration is not None and self.decoder.bank is not None
        meta = {
            "format": PROFILE_FORMAT, "package_version": __version__, "product": self.product,
            "config": self.config.model_dump(mode="json"),
            "backbone_fingerprint": self.backbone.fingerprint,
            "normalisation": {"mean": list(self.backbone.mean), "std": list(self.backbone.std),
                              "image_size": self.backbone.image_size},
            "feature_dim": int(self.decoder.bank.shape[1]), "memory_bank_size": int(self.decoder.bank.shape[0]),
            "part_frame": self.part_frame, "calibration": self.calibration.to_dict(),
            "tensors": ["memory_bank"], **self.meta,
        }
        return save_profile(models_dir(root) / check_product_name(self.product or ""), meta,
                            {"memory_bank": self.decoder.bank})

    @classmethod
    def load(cls, product: str, root: str | Path | None = None) -> "Inspector":
        """Load a saved product; refuses profiles from another format or encoder with the fix."""
        folder = models_dir(root) / check_product_name(product)
        meta, tensors = load_profile(folder)
        try:
            config = InspectorConfig.model_validate(meta["config"])
            inspector = cls(config, product=meta.get("product", product))
            inspector.calibration = Calibration.from_dict(meta["calibration"])
            inspector.part_frame = meta.get("part_frame", "image")
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"profile {product!r} is incomplete or corrupt ({exc}); refit the product") from None
        fingerprint = inspector.backbone.fingerprint
        if meta.get("backbone_fingerprint") != fingerprint:
            raise ProfileError(
                f"profile {product!r} was fitted with encoder {meta.get('backbone_fingerprint')}, but this "
                f"installation provides {fingerprint}: refit the product")
        bank = tensors.get("memory_bank")
        if bank is None or bank.ndim != 2 or bank.shape[1] != meta.get("feature_dim"):
            raise ProfileError(f"profile {product!r} has a memory bank that does not match its encoder; refit the product")
        inspector.decoder.load_bank(bank)
        inspector.meta = {k: meta[k] for k in ("training", "created_at") if k in meta}
        return inspector


__all__ = ["Inspector", "InspectionResult", "FitReport", "InspectAppError"]
