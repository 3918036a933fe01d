"""Quality of one mode on the shared real data sets, full-shot and few-shot, in one run.

By default full-shot on bottle, cookie and magnetic tile, and few-shot k = 1 and 4 (mean of 3
seeds) on bottle and cookie. Prints a Markdown table and writes JSON + Markdown; peak RSS is
reported. The foundation table in RESULTS.md is the image-image mode; ``--mode fused --few ""``
over every category is the product default's full run.

    .venv/bin/python benchmarks/eval_foundation.py --mode image-image [--out benchmarks/results/foundation]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

from inspect_app.config import BackboneConfig, InspectorConfig
from inspect_app.metrics.evaluate import evaluate, markdown_table

from common import (
    RESULTS,
    add_input_option,
    add_mode_option,
    add_threads_option,
    category_dir,
    category_names,
    int_list,
    run_header,
    set_threads,
    with_input,
    write_json,
)


def _categories_or_none(text: str) -> list[str]:
    return category_names(text) if text else []


def log_progress(done: int, total: int, label: str) -> None:
    if done == total or done % 50 == 0:
        print(f"  {label}: {done}/{total}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser)
    add_input_option(parser)
    parser.add_argument("--full", type=_categories_or_none, default=["bottle", "cookie", "tile"],
                        help="categories for full-shot runs (one seed); '' for none")
    parser.add_argument("--few", type=_categories_or_none, default=["bottle", "cookie"],
                        help="categories for few-shot runs; '' for none")
    parser.add_argument("--shots", type=int_list, default=[1, 4])
    parser.add_argument("--seeds", type=int, default=3, help="few-shot runs: seeds 0..N-1 (different draws)")
    parser.add_argument("--image-size", type=int, default=256)
    add_threads_option(parser)
    parser.add_argument("--out", type=Path, default=RESULTS / "foundation", help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    base = with_input(InspectorConfig(mode=args.mode, backbone=BackboneConfig(image_size=args.image_size)), args)
    header = run_header(args, base)
    set_threads(args.threads)
    summaries = []
    plan = [(c, None, 1) for c in args.full]
    plan += [(c, k, args.seeds) for c in args.few for k in args.shots]
    for i, (cat, k, seeds) in enumerate(plan, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(plan)}] {cat} k_shot={k or 'full'} seeds={seeds}", file=sys.stderr, flush=True)
        config = base.model_copy(update={"k_shot": k})
        summary = evaluate(category_dir(cat), config, seeds=seeds, progress=log_progress)
        summaries.append(summary)
        print(f"  done in {time.perf_counter() - t0:.0f} s: image AUROC {summary['image_auroc']:.4f}, "
              f"pixel AUROC {summary['pixel_auroc']:.4f}, AUPRO {summary['aupro']:.4f}, frr {summary['frr']:.3f}, "
              f"detection {summary['detection_rate']:.3f}", file=sys.stderr, flush=True)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = markdown_table(summaries)
    print(table)
    print(f"peak RSS: {peak_rss_mb:.0f} MB")
    write_json(args.out.with_suffix(".json"), header, {"peak_rss_mb": round(peak_rss_mb), "results": summaries})
    args.out.with_suffix(".md").write_text(f"`{header['command']}` (mode {args.mode})\n\n{table}"
                                           f"\npeak RSS: {peak_rss_mb:.0f} MB\n")


if __name__ == "__main__":
    main()
