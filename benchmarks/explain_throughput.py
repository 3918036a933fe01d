"""Inspection throughput with explanations on vs off, in one run.

A line-like stream (one image at a time, a set share of defective parts) goes through the one
Inspector. With explanations on, every FAIL result is submitted to the ExplainerService, which
runs the language model in its worker thread; the inspection loop never waits for it. Rounds
alternate off/on so drift in the machine's load hits both alike. The figure of merit is the
ratio of images per second (on / off); the explanations' own outcome (model text, fallbacks,
latency) is reported too. Run it on a quiet machine: other jobs on the two cores distort it.

    .venv/bin/python benchmarks/explain_throughput.py --mode fused [--category bottle] [--frames 60]
        [--defect-share 0.1] [--rounds 2] [--k-shot 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from inspect_app.config import InspectorConfig
from inspect_app.data.images import load_image
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.explain import ExplainerService
from inspect_app.inspector import Inspector
from inspect_app.results import Verdict

from common import (
    CATEGORIES,
    RESULTS,
    add_input_option,
    add_mode_option,
    add_threads_option,
    category_dir,
    run_header,
    set_threads,
    with_input,
    write_json,
)


def stream(category: MVTecCategory, frames: int, defect_share: float, seed: int) -> list[np.ndarray]:
    samples = category.test_samples()
    good = [s for s in samples if not s.is_defective]
    bad = [s for s in samples if s.is_defective]
    rng = np.random.default_rng(seed)
    picks = [bad[rng.integers(len(bad))] if rng.random() < defect_share else good[rng.integers(len(good))]
             for _ in range(frames)]
    return [load_image(s.path) for s in picks]


def run_round(inspector: Inspector, images: list[np.ndarray], service: ExplainerService | None) -> dict:
    futures = []
    start = time.perf_counter()
    for image in images:
        result = inspector.predict(image)
        if service is not None and result.verdict == Verdict.FAIL:
            futures.append(service.submit(result))
    seconds = time.perf_counter() - start
    explanations = [f.result(timeout=120) for f in futures]  # after the clock: the line never waits
    return {"images_per_second": len(images) / seconds, "fails": len(futures),
            "sources": [e.source for e in explanations], "reasons": [e.fallback_reason for e in explanations],
            "explain_seconds": [e.seconds for e in explanations]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser, "the inspector's mode (fused gives the explanations their defect kinds)")
    add_input_option(parser)
    parser.add_argument("--category", default="bottle", choices=sorted(CATEGORIES))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--defect-share", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--k-shot", type=int, default=40, help="good images to fit on (speed is what is measured)")
    parser.add_argument("--variant", default=None, help="explanation variant (default: the product's)")
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "explain_throughput.json")
    args = parser.parse_args()
    config = with_input(InspectorConfig(mode=args.mode, k_shot=args.k_shot), args)
    header = run_header(args, config)
    set_threads(args.threads)

    category = MVTecCategory(category_dir(args.category))
    inspector = Inspector(config, product=category.name)
    inspector.fit(category.train_images())
    images = stream(category, args.frames, args.defect_share, seed=0)
    service = ExplainerService(variant=args.variant, timeout_s=10.0)
    service.explain(inspector.predict(images[0]))  # loads the language model before timing
    for image in images[:3]:  # warm-up
        inspector.predict(image)
    off, on = [], []
    for _ in range(args.rounds):
        off.append(run_round(inspector, images, None))
        on.append(run_round(inspector, images, service))
    service.close()
    ips_off = statistics.median(r["images_per_second"] for r in off)
    ips_on = statistics.median(r["images_per_second"] for r in on)
    sources = [s for r in on for s in r["sources"]]
    reasons = [x for r in on for x in r["reasons"] if x]
    seconds = [s for r in on for s in r["explain_seconds"]]
    summary = {
        "variant": service.variant,
        "images_per_second_off": round(ips_off, 3), "images_per_second_on": round(ips_on, 3),
        "throughput_ratio_on_off": round(ips_on / ips_off, 4),
        "fails_explained": len(sources), "explanation_sources": {s: sources.count(s) for s in set(sources)},
        "fallback_reasons": sorted({r.split(":")[0] for r in reasons}),
        "explanation_p50_seconds": round(float(np.percentile(seconds, 50)), 3) if seconds else None,
        "explanation_p95_seconds": round(float(np.percentile(seconds, 95)), 3) if seconds else None,
        "rounds_detail": {"off": [round(r["images_per_second"], 3) for r in off],
                          "on": [round(r["images_per_second"], 3) for r in on]},
    }
    print(json.dumps(summary, indent=2))
    write_json(args.json, header, summary)


if __name__ == "__main__":
    main()
