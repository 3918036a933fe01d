"""Writing a report's files: the HTML (Jinja2 template in this package), the PDF rendered by
WeasyPrint from that same HTML, and the per-image tables (CSV, JSON)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

from inspect_app.reports.rows import COLUMNS, ReportRow


def render_html(context: dict) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("inspect_app.reports", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v, digits=1: "–" if v is None else f"{100 * v:.{digits}f} %"
    env.filters["num"] = lambda v, digits=3: "–" if v is None else f"{v:.{digits}f}"
    return env.get_template("report.html.j2").render(**context)


def write_pdf(html: str, path: Path) -> Path:
    """The HTML rendered to PDF by WeasyPrint (Pango for text): one template, identical content.
    Every image is a data URI, so no URL is ever fetched."""
    import logging

    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    HTML(string=html, url_fetcher=URLFetcher(allowed_protocols={"data"})).write_pdf(_tmp(path))
    os.replace(_tmp(path), path)
    return path


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def write_text(path: Path, text: str) -> Path:
    """Write via a temporary file so a reader never sees half a report."""
    _tmp(path).write_text(text, encoding="utf-8")
    os.replace(_tmp(path), path)
    return path


def write_tables(rows: Sequence[ReportRow], csv_path: Path, json_path: Path) -> None:
    with _tmp(csv_path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(row.to_csv_row() for row in rows)
    os.replace(_tmp(csv_path), csv_path)
    write_text(json_path, json.dumps([row.to_dict() for row in rows], indent=1))
