"""Which EfficientNet-Lite variant, input size and stages? Measured side by side.

Runs the image-image mode for each (variant, image size, levels) on bottle and cookie (and tile
with --categories) and reports image/pixel AUROC, AUPRO, fit seconds and predict p50.

    .venv/bin/python benchmarks/backbone_choice.py [--categories bottle,cookie]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import date
from pathlib import Path

import torch

from inspect_app.config import BackboneConfig, InspectorConfig
from inspect_app.metrics.evaluate import evaluate_run

from common import CATEGORIES, datasets_root

CANDIDATES = [
    ("lite0", 256, (3, 5)), ("lite0", 320, (3, 5)), ("lite0", 256, (2, 3, 5)), ("lite0", 256, (3, 4)),
    ("lite0", 256, (3, 5, 6)), ("lite1", 256, (3, 5)), ("lite2", 256, (3, 5)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--categories", default="bottle,cookie")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/backbone_choice.json"))
    args = parser.parse_args()
    root = datasets_root()
    torch.set_num_threads(2)
    rows = []
    for variant, size, levels in CANDIDATES:
        for cat in args.categories.split(","):
            config = InspectorConfig(backbone=BackboneConfig(variant=variant, image_size=size, levels=levels))
            run = evaluate_run(root / CATEGORIES[cat], config, latency_samples=10)
            rows.append({"variant": variant, "image_size": size, "levels": list(levels), **asdict(run)})
            print(f"{variant} {size} px stages {levels} {cat}: image AUROC {run.image_auroc:.4f}, pixel AUROC "
                  f"{run.pixel_auroc:.4f}, AUPRO {run.aupro:.4f}, fit {run.fit_seconds:.1f} s, "
                  f"p50 {run.predict_ms_p50:.1f} ms", flush=True)
    print("\n| variant | size | stages | category | image AUROC | pixel AUROC | AUPRO | fit s | p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['image_size']} | {r['levels']} | {r['category']} | {r['image_auroc']:.4f} | "
              f"{r['pixel_auroc']:.4f} | {r['aupro']:.4f} | {r['fit_seconds']:.1f} | {r['predict_ms_p50']:.1f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"date": date.today().isoformat(), "command": " ".join(sys.argv),
                                     "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
