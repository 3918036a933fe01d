"""Pieces several pages draw: the big verdict, region tables, the calibration histogram, and
the results store with a visible message when it cannot be opened."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

import streamlit as st

from inspect_app.ui import resources
from inspect_app.ui.config import UIConfig

VERDICT_COLOURS = {"PASS": "#1b7f2a", "FAIL": "#c62828", "ERROR": "#8a6d00"}


def verdict_banner(verdict: str, detail: str = "") -> None:
    """A large colour-coded verdict an operator reads from a distance."""
    colour = VERDICT_COLOURS.get(verdict, "#555")
    st.markdown(
        f'<div class="verdict verdict-{verdict.lower()}" style="background:{colour};color:#fff;'
        f'text-align:center;border-radius:12px;padding:0.6rem 1rem;margin:0.4rem 0 0.8rem 0">'
        f'<div style="font-size:4.5rem;font-weight:800;letter-spacing:0.1em;line-height:1.1">{verdict}</div>'
        f'<div style="font-size:1.2rem">{html.escape(detail)}</div></div>',
        unsafe_allow_html=True)


def region_rows(regions: list[dict]) -> list[dict]:
    """Region facts as table rows (dicts from ``Region.to_dict`` or the store)."""
    rows = []
    for i, r in enumerate(regions, 1):
        rows.append({"#": i, "location": r.get("location"), "size": r.get("size"), "shape": r.get("shape"),
                     "defect kind": r.get("defect_type") or "", "peak score": round(float(r.get("peak_score", 0)), 3),
                     "area %": round(100 * float(r.get("area_fraction", 0)), 2),
                     "on part": "yes" if r.get("on_part", True) else "no", "box": str(tuple(r.get("bbox", ())))})
    return rows


def calibration_histogram(normal_scores, threshold: float, title: str, defect_scores=None) -> bytes:
    """PNG bytes of ``visualize.score_histogram`` (held-out good scores and the threshold line)."""
    from inspect_app.visualize import score_histogram

    with tempfile.TemporaryDirectory() as tmp:
        path = score_histogram(normal_scores, threshold, Path(tmp) / "hist.png", title=title,
                               defect_scores=defect_scores)
        return path.read_bytes()


def store_or_error(cfg: UIConfig):
    """The results store, or None after a visible error (the page goes on without it)."""
    try:
        return resources.store(cfg)
    except Exception as exc:  # StoreError, ImportError while the store is not installed, driver errors
        st.error(f"The results store cannot be opened: {exc}")
        return None


@st.fragment(run_every=0.5)
def job_progress(key: str, text: str) -> None:
    """Polls the ``BackgroundJob`` in ``st.session_state[key]`` and reruns the page when it ends;
    the rest of the app stays usable meanwhile."""
    job = st.session_state.get(key)
    if job is None or not job.running:
        st.rerun(scope="app")
    st.progress(job.fraction, text=f"{text}: {job.status}")
