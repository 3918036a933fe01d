"""Pieces several pages draw: the page style, the big verdict (told by word, shape and colour),
region tables, the calibration histogram, the results store with a visible message when it cannot
be opened, and the progress of a background job with its ETA."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

import streamlit as st

from inspect_app.ui import resources
from inspect_app.ui.config import UIConfig

VERDICT_COLOURS = {"PASS": "#1b7f2a", "FAIL": "#c62828", "ERROR": "#8a6d00"}
# A shape per verdict, so the verdict reads without colour (colour-blind operators, glare).
VERDICT_SHAPES = {"PASS": "●", "FAIL": "■", "ERROR": "▲"}
VERDICT_MARKS = {"PASS": "✔", "FAIL": "✖", "ERROR": "!"}

PAGE_CSS = """
<style>
/* Streamlit's own "Limit 200MB per file" line: the real per-image limit is in each label. */
[data-testid="stFileUploaderDropzoneInstructions"] {display: none;}
.verdict {color: #fff; text-align: center; border-radius: 12px; padding: 0.4rem 1rem; margin: 0.2rem 0 0.6rem 0;}
.verdict .verdict-word {font-size: 4.2rem; font-weight: 800; letter-spacing: 0.08em; line-height: 1.1;}
.verdict .verdict-detail {font-size: 1.15rem;}
.verdict-fail {border: 6px dashed #fff; outline: 4px solid #c62828;}
.verdict-stale {filter: grayscale(0.85); opacity: 0.55;}
.verdict-error {background-image: repeating-linear-gradient(45deg, transparent 0 14px, rgba(0,0,0,.18) 14px 28px);}
[data-testid="stMainBlockContainer"] {padding-top: 2.2rem; padding-bottom: 1rem;}
.st-key-run_current img, .st-key-run_current_offline img {
    height: calc(100vh - 275px) !important; width: 100% !important; object-fit: contain; display: block;
    margin: 0 auto;}
.st-key-run_current_offline img {height: calc(100vh - 345px) !important; filter: grayscale(0.85); opacity: 0.6;}
.station-offline {background: #4a0000; color: #fff; font-size: 2.2rem; font-weight: 800; text-align: center;
                  border-radius: 10px; padding: 0.6rem;}
.station-degraded {background: #ffb300; color: #000; font-size: 1.3rem; font-weight: 700; text-align: center;
                   border-radius: 10px; padding: 0.3rem;}
.station-online {background: #e8f5e9; color: #1b5e20; font-size: 1.1rem; font-weight: 600; text-align: center;
                 border-radius: 10px; padding: 0.3rem;}
.run-strip {display: flex; gap: 0.45rem; margin-top: 0.4rem;}
.run-strip .strip-mark {flex: 1; min-height: 2.2rem; display: flex; align-items: center; justify-content: center;
                        color: #fff; text-decoration: none; font-weight: 700;}
.run-strip .strip-pass {background: #1b7f2a; border-radius: 50%;}
.run-strip .strip-fail {background: #c62828; border-radius: 2px;}
.run-strip .strip-error {background: #8a6d00; clip-path: polygon(50% 0, 100% 100%, 0 100%);}
.run-strip .strip-open {outline: 3px solid #000; outline-offset: 2px;}
[data-testid="stMetricValue"] {font-size: 1.6rem;}
</style>
"""


def page_style() -> None:
    st.html(PAGE_CSS)


def verdict_banner(verdict: str, detail: str = "", stale: bool = False) -> None:
    """A large verdict an operator reads from a distance: word, shape and colour (greyed when
    ``stale``: the last part of a station that stopped)."""
    colour = VERDICT_COLOURS.get(verdict, "#555")
    st.markdown(
        f'<div class="verdict verdict-{verdict.lower()}{" verdict-stale" if stale else ""}" '
        f'style="background-color:{colour}">'
        f'<div class="verdict-word">{VERDICT_SHAPES.get(verdict, "")} {verdict}</div>'
        f'<div class="verdict-detail">{html.escape(detail)}</div></div>',
        unsafe_allow_html=True)


def region_table(regions: list[dict]) -> None:
    """Region facts, the peak score first so a narrow column never hides it."""
    rows = [{"#": i, "peak score": round(float(r.get("peak_score", 0)), 3), "location": r.get("location"),
             "size": r.get("size"), "defect kind": r.get("defect_type") or "",
             "area %": round(100 * float(r.get("area_fraction", 0)), 2),
             "on part": "yes" if r.get("on_part", True) else "no", "shape": r.get("shape")}
            for i, r in enumerate(regions, 1)]
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={"#": st.column_config.NumberColumn(width="small"),
                                "peak score": st.column_config.NumberColumn(help="Calibrated: above 0.5 is a defect")})


def calibration_histogram(normal_scores, threshold: float, title: str, defect_scores=None) -> bytes:
    """PNG bytes of ``visualize.score_histogram`` (held-out good raw scores and the threshold line)."""
    from inspect_app.visualize import score_histogram

    with tempfile.TemporaryDirectory() as tmp:
        path = score_histogram(normal_scores, threshold, Path(tmp) / "hist.png", title=title,
                               defect_scores=defect_scores)
        return path.read_bytes()


RAW_SCORE_NOTE = ("Raw scores: the model's own distance from good parts, before calibration. Elsewhere the station "
                  "shows calibrated scores, where the threshold is always 0.50.")


def store_or_error(cfg: UIConfig):
    """The results store, or None after a visible error (the page goes on without it)."""
    try:
        return resources.store(cfg)
    except Exception as exc:  # StoreError, ImportError while the store is not installed, driver errors
        st.error(f"The results store cannot be opened: {exc}")
        return None


def job_progress_text(job) -> str:
    eta = job.eta_s
    left = "estimating time left" if eta is None else f"about {eta:.0f} s left"
    return f"{job.stage} ({job.stage_done}/{job.stage_total}) · {job.elapsed_s:.0f} s so far, {left}"


@st.fragment(run_every=0.5)
def job_progress(job, text: str) -> None:
    """Polls a ``BackgroundJob`` and reruns the page when it ends; the rest of the app stays
    usable meanwhile."""
    if not job.running:
        st.rerun(scope="app")
    st.progress(job.fraction, text=f"{text}: {job_progress_text(job)}")
