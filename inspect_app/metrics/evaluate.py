"""Fit on ``train/good`` of an MVTec-layout category, inspect ``test/*``, and measure.

Image and pixel AUROC (scikit-learn) and AUPRO (FPR <= 0.3, anomalib) are threshold-free;
false-reject and detection rates are taken at the threshold calibrated from normal images alone,
i.e. what a line would see. Pixel metrics are computed at the anomaly map's resolution (the
model's input size; masks resized, nearest), as anomalib does.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspect_app.config import InspectorConfig, Mode
from inspect_app.data.mvtec import MVTecCategory, TestSample
from inspect_app.edge.accelerate import AcceleratedInspector, accelerate
from inspect_app.edge.sessions import Runtime
from inspect_app.inspector import Inspector
from inspect_app.kinds.evaluation import measure_kinds, teach_shots
from inspect_app.metrics.curves import aupro, auroc
from inspect_app.progress import ProgressCallback
from inspect_app.results import InspectionResult, Verdict

KIND_KEYS = ["defect_type_accuracy", "wrong_kind_rate", "kind_coverage"]
METRIC_KEYS = ["image_auroc", "pixel_auroc", "aupro", "frr", "detection_rate", "fit_seconds",
               "predict_ms_p50", "images_per_second"]


@dataclass
class Quality:
    """What a set of labelled test images says about an inspector's results on them."""

    image_auroc: float
    pixel_auroc: float
    aupro: float
    frr: float  # share of good test images failed
    detection_rate: float  # share of defective test images failed
    n_test_good: int
    n_test_defective: int
    detection_by_type: dict[str, float] = field(default_factory=dict)
    defect_type_accuracy: float | None = None  # see ``kinds.evaluation``
    wrong_kind_rate: float | None = None
    kind_coverage: float | None = None


def measure(samples: Sequence[TestSample], results: Sequence[InspectionResult], with_kinds: bool,
            kind_shots: int = 0) -> Quality:
    """Score ``results`` (one per sample, same order) against the samples' labels and masks.

    Defective images without a localised mask (e.g. some magnetic-tile "uneven") count for image
    metrics only: their pixels would otherwise be scored as normal. ``with_kinds``: whether the
    profile names regions with defect kinds (it has a memory bank); ``kind_shots``: how many
    images per defect folder were taught as kinds (``kinds.evaluation``).
    """
    errors = [r for r in results if r.verdict == Verdict.ERROR]
    if errors:
        raise RuntimeError(f"{len(errors)} test images could not be read, e.g. {errors[0].error}")
    scores, maps = [], []
    for r in results:
        if r.score is None or r.anomaly_map is None:
            raise RuntimeError(f"{r.file}: a result without score or anomaly map cannot be measured")
        scores.append(r.score)
        maps.append(r.anomaly_map)
    labels = np.array([s.is_defective for s in samples])
    height, width = maps[0].shape
    masks = [s.mask((width, height)) for s in samples]
    pixel_sel = [i for i, s in enumerate(samples) if not s.is_defective or masks[i].any()]
    pixel_maps = np.stack([maps[i] for i in pixel_sel]).astype(np.float32)
    pixel_masks = np.stack([masks[i] for i in pixel_sel])

    fails = np.array([r.verdict == Verdict.FAIL for r in results])
    by_type = {}
    for dtype in sorted({s.defect_type for s in samples if s.is_defective}):
        sel = np.array([s.defect_type == dtype for s in samples])
        by_type[dtype] = round(float(fails[sel].mean()), 4)
    kinds = measure_kinds(samples, results, kind_shots) if with_kinds else None
    return Quality(
        image_auroc=auroc(scores, labels), pixel_auroc=auroc(pixel_maps, pixel_masks),
        aupro=aupro(pixel_maps, pixel_masks), frr=float(fails[~labels].mean()),
        detection_rate=float(fails[labels].mean()), n_test_good=int((~labels).sum()),
        n_test_defective=int(labels.sum()), detection_by_type=by_type,
        defect_type_accuracy=kinds.defect_type_accuracy if kinds else None,
        wrong_kind_rate=kinds.wrong_kind_rate if kinds else None, kind_coverage=kinds.kind_coverage if kinds else None)


@dataclass
class EvaluationRun:
    category: str
    k_shot: int | None
    seed: int
    image_auroc: float
    pixel_auroc: float
    aupro: float
    frr: float
    detection_rate: float
    fit_seconds: float
    predict_ms_p50: float
    images_per_second: float
    n_train: int
    n_test_good: int
    n_test_defective: int
    detection_by_type: dict[str, float] = field(default_factory=dict)
    threshold_method: str = ""
    mode: Mode = "image-image"
    defect_type_accuracy: float | None = None  # see ``kinds.evaluation``
    wrong_kind_rate: float | None = None
    kind_coverage: float | None = None
    kind_shots: int = 0
    runtime: str = Runtime.TORCH  # what predicted (torch when the exported graph disagreed)


def evaluate_run(category_dir: str | Path, config: InspectorConfig, seed: int = 0,
                 progress: ProgressCallback | None = None, latency_samples: int = 20,
                 kind_shots: int = 0, runtime: Runtime = Runtime.TORCH) -> EvaluationRun:
    """Fit ``config`` (with ``seed``) on the category's good training images, teach ``kind_shots``
    labelled images per defect folder as kinds (left out of scoring), then evaluate, predicting on
    ``runtime`` (``edge.accelerate``: torch when the exported graph disagrees)."""
    category = MVTecCategory(category_dir)
    config = config.model_copy(update={"seed": seed})
    inspector = Inspector(config, product=category.name)
    report = inspector.fit(category.train_images(), progress=progress)
    return evaluate_fitted(inspector, category, config.mode, report.seconds, progress, latency_samples, kind_shots,
                           runtime)


def evaluate_fitted(inspector: Inspector, category: MVTecCategory, mode: Mode, fit_seconds: float,
                    progress: ProgressCallback | None = None, latency_samples: int = 20,
                    kind_shots: int = 0, runtime: Runtime = Runtime.TORCH) -> EvaluationRun:
    """Inspect ``category``'s test images in ``mode`` with an already fitted inspector and measure
    (after teaching ``kind_shots`` images per defect folder as kinds, which are not scored),
    predicting on ``runtime`` (``edge.accelerate``: torch when the exported graph disagrees).

    Throughput is timed on the batch of all test images; latency (p50) on single images from file
    after one warm-up, on the first ``latency_samples`` (at least 1).
    """
    samples = category.test_samples()
    if kind_shots:  # a profile without a memory bank says how to get kinds
        samples = teach_shots(inspector, samples, kind_shots, inspector.config.seed)
    predictor = accelerate(inspector, runtime)
    paths = [s.path for s in samples]
    t0 = time.perf_counter()
    results = predictor.predict_batch(paths, progress=progress, mode=mode)
    images_per_second = len(paths) / (time.perf_counter() - t0)

    predictor.predict(paths[0], mode=mode)  # warm-up
    latencies = []
    for path in paths[:max(latency_samples, 1)]:
        t1 = time.perf_counter()
        predictor.predict(path, mode=mode)
        latencies.append((time.perf_counter() - t1) * 1000)

    quality = measure(samples, results, with_kinds=bool(inspector.kinds), kind_shots=kind_shots)
    return EvaluationRun(
        category=category.name, k_shot=inspector.config.k_shot, seed=inspector.config.seed,
        image_auroc=quality.image_auroc, pixel_auroc=quality.pixel_auroc, aupro=quality.aupro, frr=quality.frr,
        detection_rate=quality.detection_rate, fit_seconds=fit_seconds, predict_ms_p50=statistics.median(latencies),
        images_per_second=images_per_second, n_train=inspector.meta["training"]["count"],
        n_test_good=quality.n_test_good, n_test_defective=quality.n_test_defective,
        detection_by_type=quality.detection_by_type, threshold_method=inspector.calibrations[mode].method,
        mode=mode, defect_type_accuracy=quality.defect_type_accuracy, wrong_kind_rate=quality.wrong_kind_rate,
        kind_coverage=quality.kind_coverage, kind_shots=kind_shots,
        runtime=str(predictor.runtime if isinstance(predictor, AcceleratedInspector) else Runtime.TORCH),
    )


def evaluate(category_dir: str | Path, config: InspectorConfig, seeds: int = 1,
             progress: ProgressCallback | None = None, kind_shots: int = 0,
             runtime: Runtime = Runtime.TORCH) -> dict[str, Any]:
    """Runs with seeds 0..seeds-1; top-level figures are the means over runs."""
    runs = [evaluate_run(category_dir, config, seed, progress, kind_shots=kind_shots, runtime=runtime)
            for seed in range(seeds)]
    summary: dict[str, Any] = {key: round(statistics.fmean(getattr(r, key) for r in runs), 4) for key in METRIC_KEYS}
    for key in KIND_KEYS:
        values = [getattr(r, key) for r in runs if getattr(r, key) is not None]
        if values:
            summary[key] = round(statistics.fmean(values), 4)
    summary.update(category=runs[0].category, k_shot=runs[0].k_shot, kind_shots=kind_shots, seeds=seeds,
                   mode=runs[0].mode, runtime=runs[0].runtime,
                   n_train=runs[0].n_train, n_test_good=runs[0].n_test_good,
                   n_test_defective=runs[0].n_test_defective, runs=[asdict(r) for r in runs])
    return summary


def markdown_table(summaries: list[dict[str, Any]]) -> str:
    header = "| category | mode | k-shot | kind shots | seeds | " + " | ".join(METRIC_KEYS + KIND_KEYS) + " |"
    lines = [header, "|" + "---|" * (5 + len(METRIC_KEYS) + len(KIND_KEYS))]
    for s in summaries:
        values = " | ".join(f"{s[k]:.4g}" for k in METRIC_KEYS)
        kinds = " | ".join("" if s.get(k) is None else f"{s[k]:.3f}" for k in KIND_KEYS)
        lines.append(f"| {s['category']} | {s.get('mode', '')} | {s['k_shot'] or 'full'} | {s.get('kind_shots', 0)} | "
                     f"{s['seeds']} | {values} | {kinds} |")
    return "\n".join(lines) + "\n"
