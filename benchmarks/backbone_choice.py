"""Which EfficientNet-Lite variant, input size and stages? Measured side by side.

Fits ``--mode`` for each (variant, image size, levels) on each category and reports image/pixel
AUROC, AUPRO, fit seconds and predict p50. The table in RESULTS.md was measured in image-image
mode, the memory bank the encoder choice matters most to.

    .venv/bin/python benchmarks/backbone_choice.py --mode image-image [--categories bottle,cookie]
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from inspect_app.config import BackboneConfig, InspectorConfig
from inspect_app.metrics.evaluate import evaluate_run

from common import (
    RESULTS,
    add_mode_option,
    add_threads_option,
    category_dir,
    category_names,
    run_header,
    set_threads,
    write_json,
)

CANDIDATES = [
    ("lite0", 256, (3, 5)), ("lite0", 320, (3, 5)), ("lite0", 256, (2, 3, 5)), ("lite0", 256, (3, 4)),
    ("lite0", 256, (3, 5, 6)), ("lite1", 256, (3, 5)), ("lite2", 256, (3, 5)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser)
    parser.add_argument("--categories", type=category_names, default=["bottle", "cookie"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-samples", type=int, default=10)
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "backbone_choice.json")
    args = parser.parse_args()
    base = InspectorConfig(mode=args.mode, seed=args.seed)
    header = run_header(args, base)
    set_threads(args.threads)
    rows = []
    for variant, size, levels in CANDIDATES:
        for cat in args.categories:
            backbone = BackboneConfig(variant=variant, image_size=size, levels=levels, choose_input=False)
            config = base.model_copy(update={"backbone": backbone})
            run = evaluate_run(category_dir(cat), config, seed=args.seed, latency_samples=args.latency_samples)
            rows.append({"variant": variant, "image_size": size, "levels": list(levels), **asdict(run)})
            print(f"{variant} {size} px stages {levels} {cat}: image AUROC {run.image_auroc:.4f}, pixel AUROC "
                  f"{run.pixel_auroc:.4f}, AUPRO {run.aupro:.4f}, fit {run.fit_seconds:.1f} s, "
                  f"p50 {run.predict_ms_p50:.1f} ms", flush=True)
    print("\n| variant | size | stages | category | image AUROC | pixel AUROC | AUPRO | fit s | p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['image_size']} | {r['levels']} | {r['category']} | {r['image_auroc']:.4f} | "
              f"{r['pixel_auroc']:.4f} | {r['aupro']:.4f} | {r['fit_seconds']:.1f} | {r['predict_ms_p50']:.1f} |")
    write_json(args.json, header, {"rows": rows})


if __name__ == "__main__":
    main()
