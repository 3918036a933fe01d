"""Foundation figures on the shared real data sets, in one run.

Full-shot on bottle, cookie and magnetic tile; few-shot k = 1 and 4 (mean of 3 seeds) on bottle
and cookie. Prints a Markdown table and writes JSON + Markdown; peak RSS is reported.

    .venv/bin/python benchmarks/eval_foundation.py [--out benchmarks/results/foundation]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import date
from pathlib import Path

import torch

from inspect_app.config import InspectorConfig
from inspect_app.metrics.evaluate import evaluate, markdown_table

from common import CATEGORIES, datasets_root


def log_progress(done: int, total: int, label: str) -> None:
    if done == total or done % 50 == 0:
        print(f"  {label}: {done}/{total}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/foundation"))
    parser.add_argument("--full", default="bottle,cookie,tile", help="categories for full-shot runs")
    parser.add_argument("--few", default="bottle,cookie", help="categories for few-shot runs")
    parser.add_argument("--shots", default="1,4")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    root = datasets_root()
    torch.set_num_threads(2)
    summaries = []
    plan = [(c, None, 1) for c in args.full.split(",") if c]
    plan += [(c, int(k), args.seeds) for c in args.few.split(",") if c for k in args.shots.split(",")]
    for i, (cat, k, seeds) in enumerate(plan, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(plan)}] {cat} k_shot={k or 'full'} seeds={seeds}", file=sys.stderr, flush=True)
        summary = evaluate(root / CATEGORIES[cat], InspectorConfig(k_shot=k), seeds=seeds, progress=log_progress)
        summaries.append(summary)
        print(f"  done in {time.perf_counter() - t0:.0f} s: image AUROC {summary['image_auroc']:.4f}, "
              f"pixel AUROC {summary['pixel_auroc']:.4f}, AUPRO {summary['aupro']:.4f}, frr {summary['frr']:.3f}, "
              f"detection {summary['detection_rate']:.3f}", file=sys.stderr, flush=True)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = markdown_table(summaries)
    print(table)
    print(f"peak RSS: {peak_rss_mb:.0f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"date": date.today().isoformat(), "command": " ".join(sys.argv), "peak_rss_mb": round(peak_rss_mb),
               "results": summaries}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    args.out.with_suffix(".md").write_text(table + f"\npeak RSS: {peak_rss_mb:.0f} MB\n")


if __name__ == "__main__":
    main()
