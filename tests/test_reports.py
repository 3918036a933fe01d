"""Batch QA reports from a folder: files, numbers, bad input, the PDF and the HTML in a browser."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inspect_app.cli import app
from inspect_app.reports import build_report
from inspect_app.reports.rows import ReportRow, result_from_dict
from inspect_app.reports.scoring import WorstKeeper
from inspect_app.reports.stats import Counts, defect_density, time_bins, wilson_interval
from inspect_app.results import InspectionResult, Region, Verdict

from conftest import ImageFactory

N_GOOD, N_BAD = 8, 5


def make_folder(root: Path) -> Path:
    """Good and defective synthetic parts, a corrupt PNG, an empty JPEG and a text file."""
    factory = ImageFactory(root, seed=7)
    folder = root / "lot"
    for i in range(N_GOOD):
        factory.write(folder / f"good_{i:02d}.png", factory.good())
    for i in range(N_BAD):
        factory.write(folder / f"bad_{i:02d}.png", factory.defective(30 + 12 * i, 36 + 10 * i, radius=9))
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("operator notes")
    return folder


@pytest.fixture(scope="module")
def folder_report(tmp_path_factory, fitted_inspector):
    root = tmp_path_factory.mktemp("report")
    models = root / "models"
    fitted_inspector.save(models)
    folder = make_folder(root)
    calls = []

    def no_language_model():
        raise FileNotFoundError("language model files not installed")

    from inspect_app.explain import ExplainerService

    with ExplainerService(generator_factory=no_language_model, variant="facts") as explainer:
        summary = build_report("gradient", root / "out", images=folder, models_dir=models, worst_n=6,
                               explainer=explainer,
                               progress=lambda done, total, label: calls.append((done, total, label)))
    return summary, folder, models, calls


def test_folder_report_files_and_numbers(folder_report):
    summary, folder, _, calls = folder_report
    for path in (summary.html, summary.pdf, summary.csv, summary.json):
        assert path.is_file() and path.stat().st_size > 0
    assert set(summary.plots) == {"score_histogram", "defect_pareto", "defect_density"}  # no times in a folder
    assert (summary.n_images, summary.n_error, summary.n_skipped_files) == (N_GOOD + N_BAD + 2, 2, 1)
    assert summary.n_pass + summary.n_fail == N_GOOD + N_BAD
    assert summary.n_fail >= N_BAD - 1 and summary.n_pass >= N_GOOD - 1
    assert summary.defect_rate == pytest.approx(summary.n_fail / (N_GOOD + N_BAD))
    assert summary.defect_rate_ci95 == pytest.approx(wilson_interval(summary.n_fail, N_GOOD + N_BAD))
    assert ("inspecting" in {label for *_, label in calls}) and calls[0][1] == N_GOOD + N_BAD + 2

    rows = json.loads(summary.json.read_text())
    with summary.csv.open() as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(rows) == len(csv_rows) == N_GOOD + N_BAD + 2
    by_name = {Path(r["file"]).name: r for r in rows}
    assert by_name["empty.jpg"]["verdict"] == "ERROR" and "empty" in by_name["empty.jpg"]["error"]
    assert by_name["corrupt.png"]["verdict"] == "ERROR" and by_name["corrupt.png"]["error"]
    for row, flat in zip(rows, csv_rows, strict=True):
        assert flat["file"] == row["file"] and flat["verdict"] == row["verdict"]
        assert json.loads(flat["regions"]) == row["regions"]
        if row["verdict"] == "FAIL":  # the gallery's failed parts asked the (missing) language model
            assert row["explanation"].startswith("FAIL") and row["defect_kind"] and row["regions"]
            assert row["explanation_source"].startswith("template (fallback: language model unavailable")
        else:
            assert row["explanation"] is None
        if row["verdict"] != "ERROR":
            assert 0 <= row["score"] <= 1 and row["threshold"] == 0.5

    html = summary.html.read_text()
    assert "Not inspected" in html and "corrupt.png" in html and "file is empty" in html
    assert "notes.txt" in html  # skipped non-image files are named too
    assert "http://" not in html and "https://" not in html and 'src="data:image/' in html
    assert html.count('class="part"') == 6


def _wilson_by_formula(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval written out, as the report computed it before using scipy."""
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def test_wilson_interval_known_values():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson_interval(20, 20)[1] == 1.0 and wilson_interval(20, 20)[0] > 0.8
    low, high = wilson_interval(30, 1000)
    assert low < 0.03 < high and high - low < 0.025
    assert wilson_interval(0, 0) == (0.0, 1.0)  # nothing inspected: any rate is possible


@pytest.mark.parametrize("n", [1, 2, 7, 20, 83, 1000])
def test_wilson_interval_equals_the_written_out_formula(n):
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        low, high = wilson_interval(k, n)
        assert (low, high) == pytest.approx(_wilson_by_formula(k, n), abs=1e-12)
        assert 0.0 <= low <= k / n <= high <= 1.0
    assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


def test_counts_of_typed_and_stored_verdicts():
    rows = [ReportRow(result_from_dict({"file": f"{v}.png", "verdict": v, "score": s}))
            for v, s in (("PASS", 0.1), ("FAIL", 0.9), ("FAIL", 0.8), ("ERROR", None))]
    assert [r.result.verdict for r in rows] == [Verdict.PASS, Verdict.FAIL, Verdict.FAIL, Verdict.ERROR]
    counts = Counts.of(rows)
    assert (counts.total, counts.passed, counts.failed, counts.errors) == (4, 1, 2, 1)
    assert counts.defect_rate == pytest.approx(2 / 3) and counts.ci95 == wilson_interval(2, 3)
    assert Counts.of(rows[3:]).ci95 is None
    with pytest.raises(ValueError):
        result_from_dict({"file": "x.png", "verdict": "MAYBE"})


def test_worst_keeper_keeps_only_the_worst_maps_in_any_order():
    def result(score):
        return InspectionResult("f", Verdict.FAIL, score=score, anomaly_map=np.zeros((2, 2)))

    scores = [0.2, 0.9, 0.5, 0.9, 0.1, 0.7]
    for order in (range(6), reversed(range(6))):
        keeper, results = WorstKeeper(3), {}
        for i in order:
            results[i] = result(scores[i])
            keeper.offer(i, results[i])
        assert keeper.indices() == [1, 3, 5]
        assert [i for i in range(6) if results[i].anomaly_map is not None] == [1, 3, 5]


def test_time_bins_hour_and_shift():
    start = datetime(2026, 11, 24, 5, 30, tzinfo=UTC)

    def row(minutes, verdict):
        return ReportRow(InspectionResult("f", verdict, score=0.9 if verdict == Verdict.FAIL else 0.1),
                         time=start + timedelta(minutes=minutes))

    passed, failed = Verdict.PASS, Verdict.FAIL
    kind, bins = time_bins([row(0, passed), row(10, failed), row(45, passed), row(100, failed)])
    assert kind == "hour" and [(b.inspected, b.failed) for b in bins] == [(2, 1), (1, 0), (1, 1)]
    kind, bins = time_bins([row(0, failed), row(60 * 20, passed), row(60 * 60, passed)])
    assert kind == "shift"  # 05:30 is in the 22-06 shift, 01:30 next day in the 22-06 one, 17:30 in 14-22
    assert [b.start.hour for b in bins] == [22, 22, 14] and bins[0].failed == 1


def test_density_uses_the_part_box():
    region = Region(bbox=(60, 60, 80, 80), area_fraction=0.01, centroid=(70.0, 70.0), location="centre",
                    elongation=1.0, shape="compact", size="small", peak_score=0.9)
    row = ReportRow(InspectionResult("f", Verdict.FAIL, score=0.9, regions=[region], image_size=(200, 200),
                                     part_box=(40, 40, 100, 100)))
    density = defect_density([row], cells=6)
    assert density.placed == 1 and density.centroids == [(0.5, 0.5)]
    assert density.grid[3, 3] == 1.0 and density.grid[0, 0] == 0.0  # box 20..40 of 60 -> cells 2..4


def test_empty_folder_is_a_clear_error_and_writes_nothing(tmp_path, models_dir, fitted_inspector):
    fitted_inspector.save(models_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["report", "--product", "gradient", "--images", str(empty), "--out", str(out),
                                      "--models-dir", str(models_dir)])
    assert result.exit_code == 2
    assert "nothing to report" in result.output and "0 image file(s)" in result.output
    assert not out.exists()
    result = CliRunner().invoke(app, ["report", "--product", "gradient", "--out", str(out)])
    assert result.exit_code == 2 and "--images DIR or --from-store" in result.output


def test_cli_report(tmp_path, models_dir, fitted_inspector):
    fitted_inspector.save(models_dir)
    factory = ImageFactory(tmp_path, seed=3)
    folder = factory.folder("few", 3)
    factory.write(folder / "bad.png", factory.defective(64, 64, radius=10))
    result = CliRunner().invoke(app, ["report", "--product", "gradient", "--images", str(folder), "--out",
                                      str(tmp_path / "out"), "--models-dir", str(models_dir), "--no-explain",
                                      "--worst", "2"])
    assert result.exit_code == 0, result.output
    assert "4 images" in result.output and "report written" in result.output
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(rows) == 4 and all(r["explanation"] is None for r in rows)


def test_pdf_first_page_is_not_blank(folder_report, tmp_path):
    summary = folder_report[0]
    subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "1", str(summary.pdf), str(tmp_path / "page")],
                   check=True, timeout=60)
    page = np.asarray(Image.open(next(tmp_path.glob("page*.png"))).convert("L"), dtype=np.float32)
    assert page.shape[0] > 300 and page.shape[1] > 200
    ink = (page < 200).mean()
    assert 0.01 < ink < 0.6, ink  # text and a chart, not an empty or a black page
    assert page.std() > 20


def _chromium(user_dir: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={user_dir}", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
                 "--window-size=1100,1600"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")), reason="chromium not installed")
def test_html_opens_offline_with_every_image_loaded(folder_report, tmp_path):
    summary = folder_report[0]
    driver = _chromium(tmp_path / "profile")
    try:
        driver.set_page_load_timeout(60)
        driver.get(summary.html.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);")
        # the network is really off: an external URL fails to load in this browser
        probe = driver.execute_async_script(
            "const done = arguments[0]; const img = new Image(); img.onload = () => done('loaded');"
            "img.onerror = () => done('failed'); img.src = 'http://example.com/x.png';")
        driver.save_screenshot(str(summary.out_dir / "screenshot.png"))
    finally:
        driver.quit()
    assert probe == "failed"
    assert len(images) == 3 + 2 * 6  # three charts, original + overlay of six parts
    assert all(complete and width > 0 for _, complete, width in images), images
