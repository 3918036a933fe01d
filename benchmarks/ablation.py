"""Image-image vs image-text vs fused, per category, from one fit per category.

For each category: fit in ``--mode`` (fused: memory bank + image-text decoder trained on
synthesised defects of the good images), then evaluate each of ``--predict-modes`` on the real
test images (image AUROC, pixel AUROC, AUPRO, frr, detection rate, defect-type accuracy,
latency). A fused fit also scores alternative fusion rules on the same standardised maps
(threshold-free figures), which is how the product's rule was chosen. Prints Markdown tables and
writes JSON.

    .venv/bin/python benchmarks/ablation.py --mode fused [--predict-modes image-image,image-text,fused]
        [--categories bottle,cookie,tile] [--seed 0] [--json OUT]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from inspect_app.config import InspectorConfig
from inspect_app.data.images import load_image
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.inspector import Inspector
from inspect_app.metrics.curves import auroc
from inspect_app.metrics.evaluate import evaluate_fitted

from common import (
    RESULTS,
    add_input_option,
    add_mode_option,
    add_threads_option,
    category_dir,
    category_names,
    mode_names,
    run_header,
    set_threads,
    with_input,
    write_json,
)

KEYS = ("image_auroc", "pixel_auroc", "aupro", "frr", "detection_rate", "defect_type_accuracy", "predict_ms_p50")
RULES = {
    "mean of z": lambda a, b: (a + b) / 2,
    "max of z": torch.maximum,
    "0.75 image-image + 0.25 image-text (product)": lambda a, b: 0.75 * a + 0.25 * b,
}


def log_progress(done: int, total: int, label: str) -> None:
    if done == total or done % 100 == 0:
        print(f"  {label}: {done}/{total}", file=sys.stderr, flush=True)


def fusion_rules(inspector: Inspector, category: MVTecCategory) -> dict[str, dict[str, float]]:
    """Threshold-free image and pixel AUROC of each fusion rule on standardised maps."""
    samples = category.test_samples()
    height, width = inspector.input_shape
    model = inspector.model
    assert model is not None and model.fusion is not None
    z_ii, z_it = [], []
    for start in range(0, len(samples), 16):
        images = [load_image(s.path) for s in samples[start:start + 16]]
        maps = model.decoder_maps(model.encode(model.prepare(images)).levels, ("image-image", "image-text"))
        assert maps.image_image is not None and maps.image_text is not None
        z_ii.append(model.fusion.standardise(maps.image_image, 0))
        z_it.append(model.fusion.standardise(maps.image_text, 1))
    z_ii, z_it = torch.cat(z_ii), torch.cat(z_it)
    labels = np.array([s.is_defective for s in samples])
    masks = np.stack([s.mask((width, height)) for s in samples])
    keep = np.array([not s.is_defective or bool(masks[i].any()) for i, s in enumerate(samples)])
    out = {}
    for name, rule in RULES.items():
        fused = rule(z_ii, z_it).numpy()
        out[name] = {"image_auroc": auroc(fused.reshape(len(samples), -1).max(1), labels),
                     "pixel_auroc": auroc(fused[keep], masks[keep])}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser, "the mode each category is fitted in")
    add_input_option(parser)
    parser.add_argument("--predict-modes", type=mode_names, default=["image-image", "image-text", "fused"],
                        help="modes evaluated on the fit (each must be one the fitted mode supports)")
    parser.add_argument("--categories", type=category_names, default=["bottle", "cookie", "tile"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-samples", type=int, default=20)
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "ablation.json")
    args = parser.parse_args()
    config = with_input(InspectorConfig(mode=args.mode, seed=args.seed), args)
    header = run_header(args, config)
    set_threads(args.threads)
    rows, rules, fits = [], {}, {}
    for cat in args.categories:
        category = MVTecCategory(category_dir(cat))
        print(f"{cat}: fitting {args.mode}", file=sys.stderr, flush=True)
        inspector = Inspector(config, product=cat)
        t0 = time.perf_counter()
        report = inspector.fit(category.train_images(), progress=log_progress)
        fits[cat] = {"fit_seconds": round(time.perf_counter() - t0, 1),
                     "image_text_final_loss": round(report.training_loss[-1], 4) if report.training_loss else None}
        for mode in args.predict_modes:
            run = evaluate_fitted(inspector, category, mode, report.seconds, latency_samples=args.latency_samples)
            rows.append(asdict(run))
            print(f"  {mode}: image AUROC {run.image_auroc:.4f}, pixel AUROC {run.pixel_auroc:.4f}, "
                  f"AUPRO {run.aupro:.4f}, frr {run.frr:.3f}, detection {run.detection_rate:.3f}, "
                  f"type acc {run.defect_type_accuracy}", file=sys.stderr, flush=True)
        if args.mode == "fused":
            rules[cat] = fusion_rules(inspector, category)
    lines = ["| category | mode | " + " | ".join(KEYS) + " |", "|---|---|" + "---|" * len(KEYS)]
    for r in rows:
        vals = " | ".join("" if r[k] is None else f"{r[k]:.4g}" for k in KEYS)
        lines.append(f"| {r['category']} | {r['mode']} | {vals} |")
    for mode in args.predict_modes:
        sel = [r for r in rows if r["mode"] == mode]
        vals = " | ".join(f"{statistics.fmean(r[k] for r in sel):.4g}" if all(r[k] is not None for r in sel)
                          else "" for k in KEYS)
        lines.append(f"| **mean** | {mode} | {vals} |")
    print("\n".join(lines))
    print(f"\nfit ({args.mode}):",
          ", ".join(f"{c} {v['fit_seconds']} s" for c, v in fits.items()))
    print("\n| category | fusion rule | image AUROC | pixel AUROC |\n|---|---|---|---|")
    for cat, by_rule in rules.items():
        for name, vals in by_rule.items():
            print(f"| {cat} | {name} | {vals['image_auroc']:.4f} | {vals['pixel_auroc']:.4f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")
    write_json(args.json, header, {"runs": rows, "fits": fits, "fusion_rules": rules, "peak_rss_mb": round(peak)})


if __name__ == "__main__":
    main()
