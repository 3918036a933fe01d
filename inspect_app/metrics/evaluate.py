"""Fit on ``train/good`` of an MVTec-layout category, inspect ``test/*``, and measure.

Image and pixel AUROC and AUPRO (FPR <= 0.3) come from anomalib; false-reject and detection rates
are taken at the threshold calibrated from normal images alone, i.e. what a line would see.
Pixel metrics are computed at the model's input resolution (masks resized, nearest), as anomalib does.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from anomalib.metrics.aupro import _AUPRO
from anomalib.metrics.auroc import _AUROC

from inspect_app.config import InspectorConfig
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.inspector import Inspector
from inspect_app.progress import ProgressCallback
from inspect_app.vocabulary import kinds_for_folder

METRIC_KEYS = ["image_auroc", "pixel_auroc", "aupro", "frr", "detection_rate", "fit_seconds",
               "predict_ms_p50", "images_per_second"]


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
    mode: str = "image-image"
    defect_type_accuracy: float | None = None  # top region's kind vs the folder's kinds, when mapped


def evaluate_run(category_dir: str | Path, config: InspectorConfig | None = None, seed: int = 0,
                 progress: ProgressCallback | None = None, latency_samples: int = 20) -> EvaluationRun:
    category = MVTecCategory(category_dir)
    config = (config or InspectorConfig()).model_copy(update={"seed": seed})
    inspector = Inspector(config, product=category.name)
    report = inspector.fit(category.train_images(), progress=progress)
    return evaluate_fitted(inspector, category, config.mode, report.seconds, progress, latency_samples)


def evaluate_fitted(inspector: Inspector, category: MVTecCategory, mode: str, fit_seconds: float,
                    progress: ProgressCallback | None = None, latency_samples: int = 20) -> EvaluationRun:
    """Inspect ``category``'s test images in ``mode`` with an already fitted inspector and measure."""
    samples = category.test_samples()
    paths = [s.path for s in samples]

    t0 = time.perf_counter()
    results = inspector.predict(paths, progress=progress, mode=mode)
    images_per_second = len(paths) / (time.perf_counter() - t0)

    inspector.predict(paths[0], mode=mode)  # warm-up
    latencies = []
    for path in paths[:latency_samples]:
        t1 = time.perf_counter()
        inspector.predict(path, mode=mode)
        latencies.append((time.perf_counter() - t1) * 1000)

    errors = [r for r in results if r.verdict == "ERROR"]
    if errors:
        raise RuntimeError(f"{len(errors)} test images could not be read, e.g. {errors[0].error}")
    labels = torch.tensor([int(s.is_defective) for s in samples])
    scores = torch.tensor([r.score for r in results], dtype=torch.float64)
    image_auroc = _AUROC()
    image_auroc.update(scores, labels)
    size = inspector.input_size
    masks_np = [s.mask((size, size)) for s in samples]
    # Defective images without a localised mask (e.g. some magnetic-tile "uneven") count for
    # image metrics only: their pixels would otherwise be scored as normal.
    pixel_sel = [i for i, s in enumerate(samples) if not s.is_defective or masks_np[i].any()]
    maps = torch.from_numpy(np.stack([results[i].anomaly_map for i in pixel_sel]).astype(np.float32))
    masks = torch.from_numpy(np.stack([masks_np[i] for i in pixel_sel]))
    pixel_auroc = _AUROC()
    pixel_auroc.update(maps.flatten(), masks.flatten())
    aupro = _AUPRO(fpr_limit=0.3)
    aupro.update(maps, masks)

    typed = [(kinds_for_folder(s.defect_type), r) for s, r in zip(samples, results) if s.is_defective]
    typed = [(kinds, r) for kinds, r in typed if kinds]
    type_accuracy = None
    if typed and mode != "image-image":
        type_accuracy = float(np.mean([bool(r.regions) and r.regions[0].defect_type in kinds for kinds, r in typed]))
    fails = np.array([r.verdict == "FAIL" for r in results])
    lab = labels.numpy().astype(bool)
    by_type = {}
    for dtype in sorted({s.defect_type for s in samples if s.is_defective}):
        sel = np.array([s.defect_type == dtype for s in samples])
        by_type[dtype] = round(float(fails[sel].mean()), 4)
    return EvaluationRun(
        category=category.name, k_shot=inspector.config.k_shot, seed=inspector.config.seed,
        image_auroc=float(image_auroc.compute()), pixel_auroc=float(pixel_auroc.compute()),
        aupro=float(aupro.compute()), frr=float(fails[~lab].mean()), detection_rate=float(fails[lab].mean()),
        fit_seconds=fit_seconds, predict_ms_p50=statistics.median(latencies),
        images_per_second=images_per_second, n_train=inspector.meta["training"]["count"], n_test_good=int((~lab).sum()),
        n_test_defective=int(lab.sum()), detection_by_type=by_type, threshold_method=inspector.calibrations[mode].method,
        mode=mode, defect_type_accuracy=type_accuracy,
    )


def evaluate(category_dir: str | Path, config: InspectorConfig | None = None, seeds: int = 1,
             progress: ProgressCallback | None = None) -> dict:
    """Runs with seeds 0..seeds-1; top-level figures are the means over runs."""
    runs = [evaluate_run(category_dir, config, seed, progress) for seed in range(seeds)]
    summary = {key: round(statistics.fmean(getattr(r, key) for r in runs), 4) for key in METRIC_KEYS}
    if runs[0].defect_type_accuracy is not None:
        summary["defect_type_accuracy"] = round(statistics.fmean(r.defect_type_accuracy for r in runs), 4)
    summary.update(category=runs[0].category, k_shot=runs[0].k_shot, seeds=seeds, mode=runs[0].mode,
                   n_train=runs[0].n_train, n_test_good=runs[0].n_test_good,
                   n_test_defective=runs[0].n_test_defective, runs=[asdict(r) for r in runs])
    return summary


def markdown_table(summaries: list[dict]) -> str:
    header = "| category | mode | k-shot | seeds | " + " | ".join(METRIC_KEYS) + " | defect_type_accuracy |"
    lines = [header, "|" + "---|" * (5 + len(METRIC_KEYS))]
    for s in summaries:
        values = " | ".join(f"{s[k]:.4g}" for k in METRIC_KEYS)
        kind = s.get("defect_type_accuracy")
        lines.append(f"| {s['category']} | {s.get('mode', '')} | {s['k_shot'] or 'full'} | {s['seeds']} | {values} | "
                     f"{'' if kind is None else f'{kind:.3f}'} |")
    return "\n".join(lines) + "\n"
