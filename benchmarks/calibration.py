"""How well do thresholds chosen from normal images alone hold on real, unseen images?

For each category and seed (a different held-out split), fit once, then compare threshold rules
on the same raw scores: the held-out maximum, a Gaussian prediction bound on raw scores, and the
log-normal prediction bound the product uses. Reports the false-reject rate on test/good and the
detection rate on defective test images, per rule (mean and worst over seeds). The table in
RESULTS.md was measured in image-image mode.

    .venv/bin/python benchmarks/calibration.py --mode image-image [--seeds 5] [--categories bottle,cookie,tile]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from inspect_app.config import InspectorConfig
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.inspector import Inspector

from common import (
    RESULTS,
    add_input_option,
    add_mode_option,
    add_threads_option,
    category_dir,
    category_names,
    run_header,
    set_threads,
    with_input,
    write_json,
)


def rules(normal: np.ndarray, target: float) -> dict[str, float]:
    n = len(normal)
    t = stats.t.ppf(1 - target, n - 1) * math.sqrt(1 + 1 / n)
    logs = np.log(normal)
    return {
        "held-out max": float(normal.max()),
        "gaussian bound (raw)": float(normal.mean() + t * normal.std(ddof=1)),
        "log-normal bound (product)": float(math.exp(logs.mean() + t * logs.std(ddof=1))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser)
    add_input_option(parser)
    parser.add_argument("--seeds", type=int, default=5, help="fits with seeds 0..N-1 (different held-out splits)")
    parser.add_argument("--categories", type=category_names, default=["bottle", "cookie", "tile"])
    parser.add_argument("--target-frr", type=float, default=0.01)
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "calibration.json")
    args = parser.parse_args()
    base = with_input(InspectorConfig(mode=args.mode), args)
    header = run_header(args, base)
    set_threads(args.threads)
    rows = []
    for cat in args.categories:
        category = MVTecCategory(category_dir(cat))
        samples = category.test_samples()
        defective = np.array([s.is_defective for s in samples])
        per_rule: dict[str, list[tuple[float, float]]] = {}
        for seed in range(args.seeds):
            print(f"{cat} seed {seed + 1}/{args.seeds}: fitting", file=sys.stderr, flush=True)
            inspector = Inspector(base.model_copy(update={"seed": seed}), product=cat)
            inspector.fit(category.train_images())
            raw = np.array([r.raw_score for r in inspector.predict_batch([s.path for s in samples])])
            normal = np.array(inspector.calibration.normal_scores)
            for name, thr in rules(normal, args.target_frr).items():
                per_rule.setdefault(name, []).append((float((raw[~defective] > thr).mean()),
                                                      float((raw[defective] > thr).mean())))
        for name, vals in per_rule.items():
            frrs, dets = zip(*vals, strict=True)
            rows.append({"category": cat, "rule": name, "frr_mean": statistics.fmean(frrs), "frr_worst": max(frrs),
                         "detection_mean": statistics.fmean(dets), "detection_worst": min(dets),
                         "n_holdout": len(normal), "n_test_good": int((~defective).sum())})
    lines = ["| category | rule | frr mean | frr worst | detection mean | detection worst | held-out n |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['category']} | {r['rule']} | {r['frr_mean']:.3f} | {r['frr_worst']:.3f} | "
                     f"{r['detection_mean']:.3f} | {r['detection_worst']:.3f} | {r['n_holdout']} |")
    print(f"mode {args.mode}, target false-reject rate {args.target_frr}, {args.seeds} seeds (held-out splits)")
    print("\n".join(lines))
    write_json(args.json, header, {"rows": rows})


if __name__ == "__main__":
    main()
