"""``inspect-app report``: a QA report of a folder (inspected now) or of stored results."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from inspect_app.clikit import ModelsDir, console, out, progress_bar, user_errors
from inspect_app.errors import InspectAppError


def _time(value: str | None, option: str) -> datetime | None:
    """ISO 8601 date or date-time; without a zone it is UTC."""
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InspectAppError(f"{option} {value!r} is not an ISO 8601 time (e.g. 2026-11-24T06:00)") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def register(app: typer.Typer) -> None:
    @app.command()
    @user_errors
    def report(product: str = typer.Option(..., "--product", help="Product name (profile folder name)."),
               out_dir: Path = typer.Option(..., "--out", help="Folder for report.html, report.pdf, results.csv/json."),
               images: Path | None = typer.Option(None, "--images", help="Folder of images to inspect now."),
               from_store: bool = typer.Option(False, "--from-store", help="Report stored results instead."),
               since: str | None = typer.Option(None, "--since",
                                                   help="Stored results from this time (ISO 8601, UTC if no zone)."),
               until: str | None = typer.Option(None, "--until", help="Stored results up to this time."),
               lot: str | None = typer.Option(None, "--lot", help="Only this lot (stored results)."),
               store_url: str | None = typer.Option(None, "--store", help="Results store URL (default "
                                                       "$INSPECT_APP_STORE_URL or ./data/store/results.db)."),
               models_dir: Path | None = ModelsDir,
               ray: str | None = typer.Option(None, "--ray", help="Score on Ray: a cluster ADDRESS, or 'local' "
                                                 "for a local instance (folder reports)."),
               no_explain: bool = typer.Option(False, "--no-explain", help="Do not explain failed parts."),
               worst: int = typer.Option(12, "--worst", min=0, max=200, help="Parts in the gallery of worst parts."),
               ) -> None:
        """Write a QA report: summary with the defect rate and its 95 % interval, charts, a gallery of
        the worst parts, and one row per image in results.csv / results.json."""
        from inspect_app.reports import build_report

        if (images is None) == (not from_store):
            raise InspectAppError("give either --images DIR or --from-store")
        if not from_store and (since or until or lot or store_url):
            raise InspectAppError("--since, --until, --lot and --store apply to --from-store")
        store = None
        if from_store:
            from inspect_app.store import default_store_url

            store = store_url or default_store_url()
        with progress_bar() as progress:
            summary = build_report(product, out_dir, images=images, store=store, since=_time(since, "--since"),
                                   until=_time(until, "--until"), lot=lot, models_dir=models_dir, ray_address=ray,
                                   explain=not no_explain, progress=progress, worst_n=worst)
        rate = "–"
        if summary.defect_rate is not None and summary.defect_rate_ci95 is not None:
            low, high = summary.defect_rate_ci95
            rate = f"{summary.defect_rate:.1%} (95 % CI {low:.1%}–{high:.1%})"
        out.print(f"{summary.product}: {summary.n_images} images, PASS {summary.n_pass}, FAIL {summary.n_fail}, "
                  f"not inspected {summary.n_error}; defect rate {rate}")
        if summary.n_error:
            console.print(f"[yellow]{summary.n_error} image(s) could not be inspected: listed in the report[/]")
        out.print(f"report written to {summary.html}, {summary.pdf.name}, {summary.csv.name}, {summary.json.name}")
