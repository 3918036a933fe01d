"""``build_report``: inspect a folder (here or on Ray) or read the results store, then write
report.html, report.pdf, results.csv, results.json and the plot PNGs.

Inspection happens once: every later stage reuses the results; overlays are drawn for the
gallery only and each chart once, so the report costs little beyond the inspection itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspect_app import __version__
from inspect_app.errors import InspectAppError, NotEnoughImagesError
from inspect_app.progress import ProgressCallback
from inspect_app.reports import plots
from inspect_app.reports.gallery import GalleryItem, data_uri, gallery_item
from inspect_app.reports.render import render_html, write_pdf, write_tables, write_text
from inspect_app.reports.rows import ReportRow, defect_kind
from inspect_app.reports.scoring import WorstKeeper, drop_maps, score_files
from inspect_app.reports.stats import Counts, as_utc, defect_density, defect_kinds, time_bins
from inspect_app.results import Verdict

if TYPE_CHECKING:
    from inspect_app.explain import Explainer

FAILED_TABLE_ROWS = 200  # the HTML/PDF lists this many failed parts; the CSV/JSON list every image
STORE_PAGE = 1000


@dataclass
class ReportSummary:
    product: str
    out_dir: Path
    html: Path
    pdf: Path
    csv: Path
    json: Path
    plots: dict[str, Path]
    n_images: int
    n_pass: int
    n_fail: int
    n_error: int  # not inspected (unreadable), listed in the report with the reason
    defect_rate: float | None
    defect_rate_ci95: tuple[float, float] | None
    n_skipped_files: int  # non-image files in the folder, listed in the report
    scoring: str  # "this process", "Ray (local)" or "Ray (<address>)", or "results store"
    explanation_sources: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


def _ranked(rows: list[ReportRow]) -> list[int]:
    """Indices of the inspected rows, highest score first (ties: earlier first)."""
    scored = [(r.result.score, i) for i, r in enumerate(rows) if r.result.score is not None]
    return [i for _, i in sorted(scored, key=lambda t: (-t[0], t[1]))]


def _scores(rows: list[ReportRow], verdict: Verdict) -> list[float]:
    return [r.result.score for r in rows if r.result.verdict == verdict and r.result.score is not None]


def _rows_from_folder(product: str, folder: Path, models_dir, ray_address: str | None, worst_n: int,
                      progress: ProgressCallback | None) -> tuple[list[ReportRow], list[int], dict[str, Any]]:
    from inspect_app.data.images import list_images
    from inspect_app.inspector import Inspector

    folder = Path(os.path.abspath(folder))  # absolute, not resolved: symlinked images keep their names
    try:
        files, skipped = list_images(folder)
    except NotEnoughImagesError as exc:
        raise NotEnoughImagesError(f"nothing to report: {exc}") from None
    inspector = Inspector.load(product, models_dir)
    keeper = WorstKeeper(worst_n)
    if ray_address:
        from inspect_app.reports.ray_scoring import score_files_on_ray

        results = score_files_on_ray(product, models_dir, files, ray_address, keeper, progress=progress)
        scoring = f"Ray ({ray_address})"
    else:
        results = score_files(inspector, files, keeper, progress)
        scoring = "this process"
    cal = inspector.calibration
    info = {"source": f"folder {folder}", "scoring": scoring, "skipped": [p.name for p in skipped],
            "raw_threshold": cal.raw_threshold if cal else None, "mode": inspector.mode,
            "times_note": "Acquisition times are not recorded for a folder (file modification times change "
                          "when files are copied, so they are not used): no defect rate over time."}
    return [ReportRow(r) for r in results], keeper.indices(), info


def _open_store(store):
    if store is None or not isinstance(store, (str, Path)):
        return store, False
    from inspect_app.store import ResultsStore

    return ResultsStore(str(store)), True


def _rows_from_store(product: str, store, since, until, lot, worst_n: int,
                     progress: ProgressCallback | None) -> tuple[list[ReportRow], list[int], dict[str, Any]]:
    store, opened = _open_store(store)
    try:
        filters = {"product": product, "since": since, "until": until, "lot": lot}
        total = store.count(**filters)
        window = ", ".join(f"{k} {v.isoformat() if isinstance(v, datetime) else v}"
                           for k, v in (("since", since), ("until", until), ("lot", lot)) if v)
        if total == 0:
            raise NotEnoughImagesError(f"nothing to report: the results store holds no results for product "
                                       f"{product!r}" + (f" ({window})" if window else ""))
        rows: list[ReportRow] = []
        while len(rows) < total:
            page = store.query(**filters, limit=STORE_PAGE, offset=len(rows), newest_first=False)
            if not page:
                break
            rows += [ReportRow.from_stored(s) for s in page]
            if progress:
                progress(len(rows), total, "reading the results store")
    finally:
        if opened:
            store.close()
    # The header names the data, not the database's address (an internal URL means nothing to a
    # quality engineer reading the report, and a station's store location is not theirs to see).
    info: dict[str, Any] = {"source": "results store" + (f" ({window})" if window else ""),
            "scoring": "results store", "skipped": [], "raw_threshold": None, "mode": None,
            "times_note": "Defect rate over time could not be drawn: no stored result has a time."}
    return rows, _ranked(rows)[:worst_n], info


def build_report(product: str, out_dir: str | Path, *, images: str | Path | None = None, store=None,
                 since: datetime | None = None, until: datetime | None = None, lot: str | None = None,
                 models_dir: str | Path | None = None, ray_address: str | None = None, explain: bool = True,
                 progress: ProgressCallback | None = None, worst_n: int = 12,
                 explainer: Explainer | None = None) -> ReportSummary:
    """Write the report of ``product`` to ``out_dir`` from a folder of ``images`` (inspected now,
    in this process or on Ray at ``ray_address``/"local") or from a results ``store`` (a
    ``ResultsStore`` or its URL; filtered by ``since``/``until``/``lot``). ``explainer``: a running
    explanation service to reuse (the UI's); by default one is started for the report.

    Nothing is written when there is nothing to report (empty folder, no stored results).
    """
    if (images is None) == (store is None):
        raise InspectAppError("give either a folder of images or a results store, not both or neither")
    if ray_address and images is None:
        raise InspectAppError("--ray scores images: it applies to a folder, not to stored results")
    since, until = (None if t is None else as_utc(t) for t in (since, until))
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if images is not None:
        rows, worst, info = _rows_from_folder(product, Path(images), models_dir, ray_address, worst_n, progress)
    else:
        rows, worst, info = _rows_from_store(product, store, since, until, lot, worst_n, progress)
    seconds["inspect" if images is not None else "read_store"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sources: dict[str, int] = {}
    if explain:
        from inspect_app.reports.explanations import explain_failures

        sources = explain_failures([r.result for r in rows], set(worst), models_dir, progress, explainer)
    seconds["explain"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = Counts.of(rows)
    kind, bins = time_bins(rows)
    kinds = defect_kinds(rows)
    density = defect_density(rows)
    charts: dict[str, bytes] = {
        "score_histogram": plots.score_histogram(
            _scores(rows, Verdict.PASS), _scores(rows, Verdict.FAIL), rows[0].result.threshold)}
    if bins:
        charts["defect_rate_over_time"] = plots.defect_rate_over_time(kind, bins)
    if kinds:
        charts["defect_pareto"] = plots.pareto(kinds)
    if density.placed:
        charts["defect_density"] = plots.density_map(density)
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    plot_paths = {}
    for name, png in charts.items():
        plot_paths[name] = plot_dir / f"{name}.png"
        plot_paths[name].write_bytes(png)
    seconds["plots"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gallery: list[GalleryItem] = [gallery_item(rows[i], rank + 1) for rank, i in enumerate(worst)]
    for row in rows:
        drop_maps(row.result)  # maps were kept for the gallery only
    seconds["gallery"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    times = [as_utc(r.time) for r in rows if r.time is not None]
    failed = [rows[i] for i in _ranked(rows) if rows[i].result.verdict == Verdict.FAIL]
    context = {
        "product": product, "generated": datetime.now(UTC), "version": __version__, "info": info,
        "counts": counts, "charts": {k: data_uri(v, "image/png") for k, v in charts.items()},
        "time_kind": kind, "kinds": kinds, "density": density, "gallery": gallery,
        "failed": failed[:FAILED_TABLE_ROWS], "n_failed_hidden": max(0, len(failed) - FAILED_TABLE_ROWS),
        "errors": [r for r in rows if not r.inspected],
        "profile_versions": sorted({r.result.profile_version for r in rows if r.result.profile_version}),
        "thresholds": sorted({r.result.threshold for r in rows if r.inspected}),
        "first_time": min(times) if times else None, "last_time": max(times) if times else None,
        "since": since, "until": until, "lot": lot, "explain": explain, "sources": sources,
        "kind_of": defect_kind,
    }
    html = render_html(context)
    html_path = write_text(out_dir / "report.html", html)
    seconds["html"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pdf_path = write_pdf(html, out_dir / "report.pdf")
    seconds["pdf"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    csv_path, json_path = out_dir / "results.csv", out_dir / "results.json"
    write_tables(rows, csv_path, json_path)
    seconds["tables"] = time.perf_counter() - t0
    return ReportSummary(
        product=product, out_dir=out_dir, html=html_path, pdf=pdf_path, csv=csv_path, json=json_path,
        plots=plot_paths, n_images=counts.total, n_pass=counts.passed, n_fail=counts.failed,
        n_error=counts.errors, defect_rate=counts.defect_rate,
        defect_rate_ci95=counts.ci95,
        n_skipped_files=len(info["skipped"]), scoring=info["scoring"], explanation_sources=sources,
        seconds={k: round(v, 3) for k, v in seconds.items()})
