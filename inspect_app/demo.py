"""``inspect-app demo``: the main job end to end on real images that install with the package:
fit a product on good images, inspect good and defective ones, explain each FAIL to the operator,
and write overlays, the calibration histogram and a batch QA report.

With the shared MVTec bottle set present (``inspect_app.data.datasets.shared_datasets``) the demo
uses it; otherwise it uses the monocrystalline solar cells of the ``elpv-dataset`` wheel (defect
probability 0 = good, 1 = defective).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from inspect_app.data.datasets import elpv_cells, shared_datasets
from inspect_app.errors import NotEnoughImagesError
from inspect_app.explain import Explainer, ExplainerService
from inspect_app.inspector import Inspector
from inspect_app.progress import ProgressCallback
from inspect_app.reports import build_report
from inspect_app.results import EvidenceFor, Verdict
from inspect_app.visualize import save_overlay, score_histogram

ELPV_FIT_IMAGES = 150
ELPV_SHOWN_PER_CLASS = 8
VERDICT_COLOURS = {Verdict.PASS: "green", Verdict.FAIL: "red", Verdict.ERROR: "yellow"}


@dataclass
class DemoSummary:
    product: str
    correct: int  # verdicts that match the labels
    total: int
    report: Path  # the QA report's HTML page


def demo_sets(dataset: str) -> tuple[str, list[Path], list[Path], list[Path]]:
    """(product, training images, good test images, defective test images)."""
    shared = shared_datasets()
    if dataset == "bottle" or (dataset == "auto" and shared is not None):
        if shared is None:
            raise NotEnoughImagesError("the shared bottle set was not found (set INSPECT_APP_DATASETS)")
        root = shared / "mvtec_ad" / "bottle"
        train = sorted((root / "train" / "good").glob("*.png"))
        good = sorted((root / "test" / "good").glob("*.png"))[:6]
        bad = [p for d in sorted((root / "test").iterdir()) if d.name != "good" for p in sorted(d.glob("*.png"))[:3]]
        return "demo-bottle", train, good, bad
    if dataset not in ("auto", "elpv"):
        raise NotEnoughImagesError(f"unknown demo dataset {dataset!r}: choose auto, bottle or elpv")
    good, bad = elpv_cells()
    order = np.random.default_rng(0).permutation(len(good))
    train = [good[i] for i in order[:ELPV_FIT_IMAGES]]
    held = [good[i] for i in order[ELPV_FIT_IMAGES:ELPV_FIT_IMAGES + ELPV_SHOWN_PER_CLASS]]
    bad = [bad[i] for i in np.random.default_rng(1).permutation(len(bad))[:ELPV_SHOWN_PER_CLASS]]
    return "demo-solar-cell", train, held, bad


def run_demo(out_dir: Path, models_dir: Path | None, dataset: str,
             progress_factory: Callable[[], AbstractContextManager[ProgressCallback]], console: Console) -> DemoSummary:
    """Fit, inspect, explain and report as the module docstring says; ``progress_factory`` opens
    the progress display of each long step (``clikit.progress_bar`` in the CLI)."""
    product, train, good, bad = demo_sets(dataset)
    console.print(f"[bold]demo[/]: fitting [bold]{product}[/] on {len(train)} good images")
    inspector = Inspector(product=product)
    with progress_factory() as progress:
        fit_report = inspector.fit(train, progress=progress)
    path = inspector.save(models_dir)
    console.print(f"profile saved to {path} (fit {fit_report.seconds:.1f} s)")
    samples = [(p, "good") for p in good] + [(p, "defective") for p in bad]
    results = inspector.predict_batch([p for p, _ in samples], evidence=EvidenceFor.FAILS)
    explainer: Explainer = ExplainerService(models_dir=models_dir)
    try:
        fails = [res for res in results if res.verdict == Verdict.FAIL]
        console.print(f"explaining {len(fails)} FAIL result(s) ({explainer.variant} variant)")
        for res in fails:
            explanation = explainer.explain(res)
            res.explanation, res.explanation_source = explanation.text, explanation.source
        out_dir.mkdir(parents=True, exist_ok=True)
        images_dir = out_dir / "images"
        shutil.rmtree(images_dir, ignore_errors=True)
        images_dir.mkdir()
        for src, truth in samples:
            shutil.copy2(src, images_dir / f"{truth}_{src.parent.name}_{src.name}")
        with progress_factory() as progress:
            report = build_report(product, out_dir / "report", images=images_dir, models_dir=models_dir,
                                  explainer=explainer, progress=progress)
    finally:
        explainer.close()
    table = Table(title=f"{product}: verdicts on images not used for fitting")
    for col in ("image", "truth", "verdict", "score", "explanation or where"):
        table.add_column(col)
    correct = 0
    rows = []
    for (src, truth), res in zip(samples, results, strict=True):
        expected = Verdict.PASS if truth == "good" else Verdict.FAIL
        correct += res.verdict == expected
        colour = VERDICT_COLOURS[res.verdict]
        where = res.explanation or ", ".join(f"{r.size} {r.shape} area at {r.location}" for r in res.regions[:2])
        table.add_row(f"{src.parent.name}/{src.name}", truth, f"[{colour}]{res.verdict}[/]",
                      f"{res.score:.3f}" if res.score is not None else "", where or (res.error or ""))
        save_overlay(src, res, out_dir / f"{truth}_{src.parent.name}_{src.stem}.png")
        rows.append({**res.to_dict(), "truth": truth})
    console.print(table)
    cal = inspector.calibration
    assert cal is not None
    score_histogram(cal.normal_scores, cal.raw_threshold, out_dir / "calibration_histogram.png",
                    title=f"{product}: held-out good images and threshold")
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2))
    console.print(f"{correct}/{len(samples)} verdicts match the labels; overlays and results in {out_dir}/")
    console.print(f"QA report: {report.html} and {report.pdf}")
    return DemoSummary(product, correct, len(samples), report.html)
