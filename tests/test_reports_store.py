"""Reports from the results store: same rows, times per hour, lot filter, kept images, missing files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspect_app.cli import app
from inspect_app.reports import build_report

from conftest import ImageFactory

START = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


@pytest.fixture
def filled_store(tmp_path, fitted_inspector):
    from inspect_app.store import ResultsStore

    factory = ImageFactory(tmp_path, seed=11)
    store = ResultsStore(f"sqlite:///{tmp_path / 'results.db'}", images_dir=tmp_path / "kept")
    images = [factory.good() for _ in range(6)] + [factory.defective(40 + 10 * i, 60, radius=9) for i in range(4)]
    results = fitted_inspector.predict(images, names=[f"cam1_{i:03d}.png" for i in range(len(images))])
    ids = []
    for i, (image, result) in enumerate(zip(images, results, strict=True)):
        ids.append(store.add_result(result, station="line-1", lot="A" if i % 2 == 0 else "B", image=image,
                                    time=START + timedelta(minutes=25 * i)))
    store.add_result(fitted_inspector.predict(str(tmp_path / "missing.png")), station="line-1", lot="A",
                     time=START + timedelta(minutes=3))
    store.add_result(fitted_inspector.predict(images[0]), station="line-1", time=START - timedelta(days=2))
    assert store.flush(timeout=30)
    yield store, results, ids
    store.close()


def test_store_report(filled_store, tmp_path):
    store, results, ids = filled_store
    failed_ids = [rid for rid, r in zip(ids, results, strict=True) if r.verdict == "FAIL"]
    assert len(failed_ids) >= 3
    lost = store.get(failed_ids[0])
    Path(lost.image_path).unlink()  # a kept image deleted behind the store's back
    from inspect_app.explain import ExplainerService

    with ExplainerService(variant="template") as explainer:  # the deterministic sentence: no model to load
        summary = build_report("gradient", tmp_path / "out", store=store, since=START,
                               until=START + timedelta(days=1), worst_n=4, explainer=explainer)
    assert summary.scoring == "results store"
    assert summary.n_images == len(results) + 1  # the old result is outside the window
    assert summary.n_error == 1 and summary.n_fail == len(failed_ids)
    assert {"score_histogram", "defect_rate_over_time", "defect_pareto", "defect_density"} <= set(summary.plots)
    rows = json.loads(summary.json.read_text())
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)
    assert {r["lot"] for r in rows} == {"A", "B"} and all(r["station"] == "line-1" for r in rows)
    by_file = {r["file"]: r for r in rows}
    for result in results:
        row = by_file[result.file]
        assert row["verdict"] == result.verdict and row["score"] == pytest.approx(result.score, abs=1e-6)
        if result.verdict == "FAIL":
            assert row["explanation"].startswith("FAIL") and row["explanation_source"] == "template"
            assert row["image_path"] and row["overlay_path"]
        else:
            assert row["explanation"] is None
    html = summary.html.read_text()
    assert "defect rate over time" in html and "per hour" in html
    assert "original image missing or unreadable" in html  # the deleted file is noted, not hidden
    assert "results store (since" in html and "sqlite:" not in html and "results.db" not in html  # no internal URL
    assert html.count('<img src="data:image/jpeg') >= 2 * (min(4, len(failed_ids)) - 1)

    lot_a = build_report("gradient", tmp_path / "lot_a", store=store, lot="A", explain=False)
    assert lot_a.n_images == sum(1 for i in range(len(results)) if i % 2 == 0) + 1  # and the missing file


def test_store_report_cli_and_empty_window(filled_store, tmp_path):
    store = filled_store[0]
    url = store.url
    runner = CliRunner()
    result = runner.invoke(app, ["report", "--product", "gradient", "--from-store", "--store", url,
                                 "--since", "2026-11-20T06:00", "--until", "2026-11-21", "--out",
                                 str(tmp_path / "cli"), "--no-explain"])
    assert result.exit_code == 0, result.output
    assert "11 images" in result.output and (tmp_path / "cli" / "report.pdf").is_file()
    result = runner.invoke(app, ["report", "--product", "gradient", "--from-store", "--store", url,
                                 "--since", "2030-01-01", "--out", str(tmp_path / "none")])
    assert result.exit_code == 2 and "nothing to report" in result.output
    assert not (tmp_path / "none").exists()
    result = runner.invoke(app, ["report", "--product", "gradient", "--from-store", "--store", url,
                                 "--since", "yesterday", "--out", str(tmp_path / "none")])
    assert result.exit_code == 2 and "ISO 8601" in result.output
