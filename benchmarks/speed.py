"""Speed and memory of the embedded default on this CPU, measured side by side in one run.

Fit time in ``--mode`` on a category's good images (bottle's 209 by default; median of
--fit-runs), then for each of ``--predict-modes`` (modes the fit supports; by default ``--mode``):
single-image predict latency from file (p50/p95 after warm-up), batched throughput for several
batch sizes, and peak RSS. Run it on a quiet machine: other jobs on the two cores distort every figure.

    .venv/bin/python benchmarks/speed.py --mode fused [--predict-modes image-image,fused] [--category bottle]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import numpy as np

from inspect_app.config import InspectorConfig
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.inspector import Inspector

from common import (
    CATEGORIES,
    RESULTS,
    add_input_option,
    add_mode_option,
    add_threads_option,
    category_dir,
    int_list,
    mode_names,
    run_header,
    set_threads,
    with_input,
    write_json,
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser, "the mode the inspector is fitted in")
    add_input_option(parser)
    parser.add_argument("--predict-modes", type=mode_names, default=None,
                        help="modes timed on that fit, comma-separated (default: --mode)")
    parser.add_argument("--category", default="bottle", choices=sorted(CATEGORIES))
    parser.add_argument("--fit-runs", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=40)
    parser.add_argument("--batch-sizes", type=int_list, default=[1, 4, 8, 16])
    parser.add_argument("--batch-size", type=int, default=8, help="the inspector's batch size outside the sweep")
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "speed.json")
    args = parser.parse_args()
    args.predict_modes = args.predict_modes or [args.mode]
    config = with_input(InspectorConfig(mode=args.mode), args)
    header = run_header(args, config)
    set_threads(args.threads)
    category = MVTecCategory(category_dir(args.category))
    train = category.train_images()
    tests = [s.path for s in category.test_samples()]
    out: dict = {"n_train": len(train), "n_test": len(tests), "modes": {}}
    print(f"{args.category}: {len(train)} good images to fit, {len(tests)} test images", flush=True)
    fit_times = []
    inspector = None
    for run in range(args.fit_runs):
        inspector = Inspector(config, batch_size=args.batch_size)
        t0 = time.perf_counter()
        inspector.fit(train, product=args.category)
        fit_times.append(time.perf_counter() - t0)
        print(f"fit {run + 1}/{args.fit_runs} ({args.mode}): {fit_times[-1]:.1f} s", flush=True)
    out["fit_seconds_median"] = round(statistics.median(fit_times), 2)
    out["fit_seconds_all"] = [round(t, 2) for t in fit_times]
    assert inspector is not None
    modes = args.predict_modes
    # Modes alternate image by image and batch size by batch size, so a drift in the machine's
    # speed (other tenants of the VM) hits every mode alike and the overhead ratio stays fair.
    latencies: dict[str, list[float]] = {mode: [] for mode in modes}
    rates: dict[str, dict[int, float]] = {mode: {} for mode in modes}
    for mode in modes:
        inspector.predict(tests[:4], mode=mode)
    # ABBA order: the mode timed first on one image is timed last on the next.
    for i, path in enumerate(tests[:args.latency_samples]):
        for mode in (modes if i % 2 == 0 else modes[::-1]):
            t0 = time.perf_counter()
            inspector.predict(path, mode=mode)
            latencies[mode].append((time.perf_counter() - t0) * 1000)
    for bs in args.batch_sizes:
        inspector.batch_size = bs
        for mode in modes:
            t0 = time.perf_counter()
            inspector.predict(tests, mode=mode)
            rates[mode][bs] = round(len(tests) / (time.perf_counter() - t0), 2)
    inspector.batch_size = args.batch_size
    for mode in modes:
        row = {"predict_ms_p50": round(statistics.median(latencies[mode]), 2),
               "predict_ms_p95": round(float(np.percentile(latencies[mode], 95)), 2),
               "images_per_second": rates[mode], "images_per_second_best": max(rates[mode].values())}
        out["modes"][mode] = row
        print(f"{mode}: p50 {row['predict_ms_p50']} ms, p95 {row['predict_ms_p95']} ms, "
              f"images/s by batch size {row['images_per_second']}", flush=True)
    if "image-image" in out["modes"] and len(out["modes"]) > 1:
        base = out["modes"]["image-image"]["predict_ms_p50"]
        out["latency_overhead_vs_image_image"] = {m: round(r["predict_ms_p50"] / base - 1, 3)
                                                  for m, r in out["modes"].items() if m != "image-image"}
        # The same image timed in both modes moments apart: the median of these ratios is the
        # overhead least moved by the VM's drift, which shifts the two p50s by up to 40 % here.
        base_ms = latencies["image-image"]
        out["paired_overhead_median"] = {
            m: round(statistics.median(x / y for x, y in zip(latencies[m], base_ms, strict=True)) - 1, 3)
            for m in modes if m != "image-image"}
        print(f"p50 latency overhead vs image-image: {out['latency_overhead_vs_image_image']}; "
              f"median of per-image ratios: {out['paired_overhead_median']}")
    out["peak_rss_mb"] = round(rss_mb())
    print(f"fit median {out['fit_seconds_median']} s (runs {out['fit_seconds_all']}); peak RSS {out['peak_rss_mb']} MB")
    write_json(args.json, header, out)


if __name__ == "__main__":
    main()
