"""Defect kinds as a user meets them: K labelled images per defect folder, taught after the fit.

For each category and seed: one fit in ``--mode``, saved; then for each K of ``--shots`` the saved
profile is loaded afresh, K seeded images of each defect folder are taught as kinds with their masks
(``kinds.evaluation.teach_shots``; K = 0 keeps the built-in kinds) and the rest are scored
(``defect_type_accuracy``, ``wrong_kind_rate``, ``kind_coverage``, as ``inspect-app eval
--kind-shots K`` reports them). Also timed: teaching a new kind from 3 images (no refit), and the
prediction latency before and after. With ``--wording`` it records, for the first FAIL results of
the first seed, the explanation sentence of the old rule (the image-text decoder's kind posterior,
always named, with its probability; modes with an image-text part) beside the new one. With
``--bound`` it also measures, for K > 0, what naming could reach on the same parts at best (``bound``).

    .venv/bin/python benchmarks/kinds.py --mode fused --categories bottle,cookie,tile --shots 0,1,3,5
        --seeds 3 [--wording 4] [--bound] [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from inspect_app.config import InspectorConfig
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.explain.template import template_explanation
from inspect_app.inspector import Inspector
from inspect_app.kinds.evaluation import flagged_parts, teach_shots
from inspect_app.kinds.learning import LabelledPart, add_kind
from inspect_app.metrics.evaluate import KIND_KEYS, evaluate_fitted
from inspect_app.post_processing.kinds import Bar, KindBook
from inspect_app.results import EvidenceFor, Verdict
from inspect_app.vocabulary import DEFECT_VOCABULARY

from common import (
    RESULTS,
    add_mode_option,
    add_threads_option,
    category_dir,
    category_names,
    int_list,
    run_header,
    set_threads,
    write_json,
)


def old_rule_sentence(inspector: Inspector, result) -> str:
    """The sentence the previous rule wrote: the decoder's region-averaged kind posterior divided by
    the good patches' lean, always named, with its probability."""
    post = inspector.post_processor
    kind_maps = result.evidence.kind_maps
    region = result.regions[0]
    grid_h, grid_w = kind_maps.shape[-2:]
    small = cv2.resize(result.anomaly_map, (grid_w, grid_h), interpolation=cv2.INTER_AREA)
    width, height = result.image_size
    x0, y0, x1, y1 = region.bbox
    gx0, gy0 = min(int(x0 / width * grid_w), grid_w - 1), min(int(y0 / height * grid_h), grid_h - 1)
    gx1, gy1 = max(int(np.ceil(x1 / width * grid_w)), gx0 + 1), max(int(np.ceil(y1 / height * grid_h)), gy0 + 1)
    weights = np.clip(small[gy0:gy1, gx0:gx1] - 0.5, 1e-3, None)
    posterior = (kind_maps[:, gy0:gy1, gx0:gx1] * weights).sum(axis=(1, 2)) / weights.sum() / post.kind_prior
    posterior /= posterior.sum()
    kind = post.kinds[int(posterior.argmax())]
    return (f"FAIL: {DEFECT_VOCABULARY[kind][0]} ({posterior.max():.0%} likely), {region.size} and {region.shape}, "
            f"at the {region.location} of the {result.product} (score {result.score:.2f} vs threshold 0.50). "
            "Remove the part.")


def wording(inspector: Inspector, category: MVTecCategory, n: int, kind_shots: int) -> list[dict]:
    samples = [s for s in category.test_samples() if s.is_defective]
    samples = teach_shots(inspector, samples, kind_shots, 0)
    out = []
    for sample in samples[::max(len(samples) // (3 * n), 1)]:
        result = inspector.predict(sample.path, evidence=EvidenceFor.FAILS)
        if result.verdict != Verdict.FAIL or not result.regions:
            continue
        entry = {"file": f"{sample.defect_type}/{sample.path.name}", "kind_shots": kind_shots,
                 "after": template_explanation(result)}
        if kind_shots == 0 and result.evidence is not None and result.evidence.kind_maps is not None:
            entry["before"] = old_rule_sentence(inspector, result)
        out.append(entry)
        if len(out) == n:
            break
    return out


BOUND_KEYS = ["always_named_accuracy", "always_named_wrong_rate", "best_bar_accuracy"]


def bound(profile_root: Path, category: MVTecCategory, kind_shots: int, max_wrong: float) -> dict[str, float]:
    """What naming could reach on the parts ``evaluate_fitted`` scores after the same K-shot draw:
    every failed part's first region named with its nearest kind (``always_named_*``), and the best
    ``defect_type_accuracy`` that any bar on the kind's confidence would give with ``wrong_kind_rate``
    at most ``max_wrong`` (``best_bar_accuracy``). The bar is chosen with the test parts' labels, so
    it is an upper bound for the product's bar, which only sees the labelled regions: when it stays
    below a target, no calibration of this confidence reaches the target."""
    inspector = Inspector.load(category.name, profile_root)
    defective = [s for s in category.test_samples() if s.is_defective]
    samples = teach_shots(inspector, defective, kind_shots, inspector.config.seed)
    book = inspector.post_processor.kind_book
    assert book is not None
    inspector.post_processor.kind_book = KindBook(book.kinds, Bar(0.0, "every region named (bound)"))
    parts = [p for p in flagged_parts(samples, inspector.predict_batch([s.path for s in samples]), kind_shots)
             if p.judged]
    on_defect, judged = max(sum(p.on_defect for p in parts), 1), max(len(parts), 1)
    named = sorted((p for p in parts if p.confidence is not None), key=lambda p: -(p.confidence or 0.0))
    best = right = wrong = 0
    for i, part in enumerate(named):
        right, wrong = right + part.right, wrong + part.wrong
        at_a_bar = i + 1 == len(named) or named[i + 1].confidence != part.confidence  # a bar cannot split ties
        if at_a_bar and wrong <= max_wrong * judged:
            best = max(best, right)
    return {"always_named_accuracy": right / on_defect, "always_named_wrong_rate": wrong / judged,
            "best_bar_accuracy": best / on_defect}


def time_new_kind(profile_root: Path, category: MVTecCategory) -> float:
    """Seconds to teach a new kind name from 3 masked images of the first defect folder (loaded profile)."""
    inspector = Inspector.load(category.name, profile_root)
    shots = [s for s in category.test_samples() if s.is_defective and s.mask_path is not None][:3]
    parts = [LabelledPart(s.path, s.path.name, cv2.imread(str(s.mask_path), cv2.IMREAD_GRAYSCALE)) for s in shots]
    t0 = time.perf_counter()
    add_kind(inspector, "probe kind", parts)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_mode_option(parser)
    parser.add_argument("--categories", type=category_names, default=["bottle", "cookie", "tile"])
    parser.add_argument("--shots", type=int_list, default=[0, 1, 3, 5])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument("--wording", type=int, default=4, help="explanation sentences per category (0: none)")
    parser.add_argument("--bound", action="store_true",
                        help="for K > 0 also measure what naming could reach at best on the same parts")
    parser.add_argument("--bound-max-wrong", type=float, default=0.10,
                        help="the wrong_kind_rate the best bar of --bound may reach (the issue's limit)")
    parser.add_argument("--json", type=Path, default=RESULTS / "kinds.json")
    parser.add_argument("--keep-profiles", type=Path, default=None,
                        help="keep each fit's profile in DIR/seed<N>/ instead of a temporary folder")
    add_threads_option(parser)
    args = parser.parse_args()
    set_threads(args.threads)
    config = InspectorConfig(mode=args.mode)
    header = run_header(args, config)
    rows, sentences, add_seconds = [], [], {}
    for name in args.categories:
        category = MVTecCategory(category_dir(name))
        for seed in range(args.seeds):
            with tempfile.TemporaryDirectory() as scratch:
                root = str(args.keep_profiles / f"seed{seed}") if args.keep_profiles else scratch
                inspector = Inspector(config.model_copy(update={"seed": seed}), product=category.name)
                report = inspector.fit(category.train_images())
                inspector.save(root)
                for shots in args.shots:
                    run = evaluate_fitted(Inspector.load(category.name, root), category, args.mode, report.seconds,
                                          latency_samples=args.latency_samples, kind_shots=shots)
                    row = {"category": name, "seed": seed, "kind_shots": shots, "predict_ms_p50": run.predict_ms_p50,
                           "detection_rate": run.detection_rate, **{k: getattr(run, k) for k in KIND_KEYS}}
                    if args.bound and shots:
                        row.update(bound(Path(root), category, shots, args.bound_max_wrong))
                    rows.append(row)
                    print(row, file=sys.stderr, flush=True)
                if seed == 0:
                    add_seconds[name] = round(time_new_kind(Path(root), category), 2)
                    for shots in (0, 3) if args.wording else ():
                        sentences += [{"category": name, **s} for s in
                                      wording(Inspector.load(category.name, root), category, args.wording, shots)]
        summarise(args, header, rows, add_seconds, sentences, quiet=True)
    summarise(args, header, rows, add_seconds, sentences)


def summarise(args: argparse.Namespace, header: dict, rows: list[dict], add_seconds: dict, sentences: list[dict],
              quiet: bool = False) -> None:
    """Means over seeds per (category, K), printed as Markdown, and the JSON (also after each category)."""
    table = []
    for name in args.categories:
        for shots in args.shots:
            runs = [r for r in rows if r["category"] == name and r["kind_shots"] == shots]
            if not runs:
                continue
            keys = [*KIND_KEYS, "predict_ms_p50", *(k for k in BOUND_KEYS if k in runs[0])]
            means = {k: None if any(r[k] is None for r in runs) else round(statistics.fmean(r[k] for r in runs), 4)
                     for k in keys}
            table.append({"category": name, "kind_shots": shots, "seeds": len(runs), **means})
    write_json(args.json, header, {"table": table, "runs": rows, "add_kind_seconds": add_seconds,
                                   "wording": sentences})
    if quiet:
        return
    bounds = BOUND_KEYS if args.bound else []
    print("| category | K | " + " | ".join([*KIND_KEYS, *bounds]) + " | p50 ms |")
    print("|---|---|" + "---|" * (len(KIND_KEYS) + len(bounds) + 1))
    for t in table:
        cells = " | ".join("-" if t.get(k) is None else f"{t[k]:.3f}" for k in (*KIND_KEYS, *bounds))
        print(f"| {t['category']} | {t['kind_shots']} | {cells} | {t['predict_ms_p50']:.1f} |")
    print("seconds to teach a new kind from 3 images:", add_seconds)
    for s in sentences:
        print(s)


if __name__ == "__main__":
    main()
