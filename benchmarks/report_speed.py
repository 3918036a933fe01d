"""Report overhead and Ray agreement on 1,000 real images, measured side by side in one run.

Fits a profile on bottle's train/good, links bottle's test images (good and defective) into one
folder repeated to --n files, then runs, --rounds times in A-B / B-A order: pure inspection
(``Inspector.predict`` over the files) and the full report (``build_report``: inspection,
explanations, charts, gallery, HTML, PDF, CSV, JSON), each end to end. Target: report time <= 1.5 x pure time.
Then the same report on a local Ray instance (2 workers, one torch thread each) and the two
results.json files compared: verdicts must be identical and scores equal.

Timings are noisy when other jobs share the CPU (the load average at the start is recorded); the
ratio less so, because both sides run interleaved. The Ray report explains its gallery too, so
the comparison covers explanations as well as verdicts and scores.

    nice -n 5 .venv/bin/python benchmarks/report_speed.py --mode fused [--n 1000] [--rounds 2] [--no-ray]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from inspect_app.config import InspectorConfig
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.inspector import Inspector
from inspect_app.reports import build_report

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

TARGET_RATIO = 1.5


def link_images(sources: list[Path], n: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    files = []
    for i in range(n):
        src = sources[i % len(sources)]
        link = folder / f"r{i // len(sources):02d}_{src.parent.name}_{src.name}"
        link.symlink_to(src)
        files.append(link)
    return files


def compare(single: Path, on_ray: Path) -> dict:
    a, b = json.loads(single.read_text()), json.loads(on_ray.read_text())
    same_files = [r["file"] for r in a] == [r["file"] for r in b]
    pairs = list(zip(a, b, strict=True))
    diffs = [abs(x["score"] - y["score"]) for x, y in pairs if x["score"] is not None and y["score"] is not None]
    by_model = ("adapter", "language-model")
    return {"rows": len(a), "same_files_in_order": same_files,
            "verdicts_identical": same_files and [r["verdict"] for r in a] == [r["verdict"] for r in b],
            "verdict_mismatches": sum(x["verdict"] != y["verdict"] for x, y in pairs),
            "scores_identical": sum(d == 0 for d in diffs), "score_max_abs_diff": max(diffs, default=0.0),
            "errors_identical": [r["error"] for r in a] == [r["error"] for r in b],
            "explained_by_model": [sum(r["explanation_source"] in by_model for r in x) for x in (a, b)],
            "explanations_identical": sum(x["explanation"] == y["explanation"] for x, y in pairs
                                          if x["explanation"] or y["explanation"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mode_option(parser)
    add_input_option(parser)
    parser.add_argument("--category", default="bottle", choices=sorted(CATEGORIES))
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-ray", action="store_true")
    add_threads_option(parser)
    parser.add_argument("--json", type=Path, default=RESULTS / "report_speed.json")
    args = parser.parse_args()
    config = with_input(InspectorConfig(mode=args.mode), args)
    header = run_header(args, config)
    category = MVTecCategory(category_dir(args.category))
    set_threads(args.threads)
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="report_speed_") as tmp:
        tmp = Path(tmp)
        inspector = Inspector(config)
        t0 = time.perf_counter()
        inspector.fit(category.train_images(), product=args.category)
        inspector.save(tmp / "models")
        print(f"fitted {args.category} in {time.perf_counter() - t0:.1f} s", flush=True)
        tests = [s.path for s in category.test_samples()]
        files = link_images(tests, args.n, tmp / "images")
        out["distinct_images"] = len(tests)
        inspector = Inspector.load(args.category, tmp / "models")
        inspector.predict([str(f) for f in files[:16]])  # warm-up
        pure, report, summaries = [], [], []
        for k in range(args.rounds):
            # A-B then B-A: a steady drift in the machine's load weighs on both sides alike
            for step in ("pure", "report") if k % 2 == 0 else ("report", "pure"):
                t0 = time.perf_counter()
                if step == "pure":
                    inspector.predict([str(f) for f in files])
                    pure.append(time.perf_counter() - t0)
                    print(f"round {k + 1}: pure inspection {pure[-1]:.1f} s", flush=True)
                else:
                    summary = build_report(args.category, tmp / f"report{k}", images=tmp / "images",
                                           models_dir=tmp / "models")
                    report.append(time.perf_counter() - t0)
                    summaries.append(summary)
                    print(f"round {k + 1}: report {report[-1]:.1f} s  stages {summary.seconds}", flush=True)
        last = summaries[-1]
        ratio = sum(report) / sum(pure)
        out.update({
            "pure_seconds": [round(t, 2) for t in pure], "report_seconds": [round(t, 2) for t in report],
            "pure_images_per_second": round(args.n / statistics.median(pure), 1),
            "ratio_report_to_pure": round(ratio, 3), "target_ratio": TARGET_RATIO, "met": ratio <= TARGET_RATIO,
            "report_stage_seconds": [s.seconds for s in summaries],
            "counts": {"pass": last.n_pass, "fail": last.n_fail, "not_inspected": last.n_error},
            "explanation_sources": last.explanation_sources,
            "report_bytes": {p.name: p.stat().st_size for p in (last.html, last.pdf, last.csv, last.json)},
        })
        if not args.no_ray:
            t0 = time.perf_counter()
            on_ray = build_report(args.category, tmp / "report_ray", images=tmp / "images", models_dir=tmp / "models",
                                  ray_address="local")
            out["ray_local_2_workers_seconds"] = round(time.perf_counter() - t0, 2)
            out["ray_stage_seconds"] = on_ray.seconds
            out["ray_vs_single"] = compare(last.json, on_ray.json)
    rows = [("images", f"{args.n} ({out['distinct_images']} distinct {args.category} test images, repeated)"),
            ("pure inspection (s)", ", ".join(f"{t:.1f}" for t in pure)),
            ("full report (s)", ", ".join(f"{t:.1f}" for t in report)),
            ("report / pure", f"{ratio:.2f} (target <= {TARGET_RATIO}: {'met' if out['met'] else 'NOT met'})"),
            ("report stages, last round (s)", ", ".join(f"{k} {v:.1f}" for k, v in last.seconds.items())),
            ("PASS / FAIL / not inspected", f"{last.n_pass} / {last.n_fail} / {last.n_error}")]
    if "ray_vs_single" in out:
        c = out["ray_vs_single"]
        rows += [("Ray local, 2 workers (s)", f"{out['ray_local_2_workers_seconds']:.1f}"),
                 ("Ray vs single: verdicts", f"{'identical' if c['verdicts_identical'] else 'DIFFERENT'} "
                                             f"({c['verdict_mismatches']} mismatches of {c['rows']})"),
                 ("Ray vs single: scores",
                  f"{c['scores_identical']} identical, max abs diff {c['score_max_abs_diff']:.2g}"),
                 ("Ray vs single: explanations", f"{c['explanations_identical']} identical; by the language model "
                                                 f"{c['explained_by_model'][0]} vs {c['explained_by_model'][1]}")]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    write_json(args.json, header, out)


if __name__ == "__main__":
    main()
