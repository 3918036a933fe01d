"""The report's charts as PNG bytes (matplotlib, Agg canvas: no display, no global pyplot state)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from inspect_app.reports.stats import Density, TimeBin, wilson_interval

PASS_COLOUR, FAIL_COLOUR = "#2e9d5b", "#d1362f"
DPI = 110


def _figure(width: float = 6.4, height: float = 3.4):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def score_histogram(pass_scores: Sequence[float], fail_scores: Sequence[float], threshold: float) -> bytes:
    """Calibrated scores of passed and failed parts, with the threshold line."""
    fig = _figure()
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 41)
    ax.hist([list(pass_scores), list(fail_scores)], bins=bins, stacked=True, color=[PASS_COLOUR, FAIL_COLOUR],
            label=[f"PASS ({len(pass_scores)})", f"FAIL ({len(fail_scores)})"])
    ax.axvline(threshold, color="k", linestyle="--", linewidth=1.2, label=f"threshold {threshold:g}")
    ax.set_xlabel("calibrated anomaly score")
    ax.set_ylabel("parts")
    ax.set_xlim(0, 1)
    ax.legend(loc="upper center", fontsize=8)
    return _png(fig)


def defect_rate_over_time(kind: str, bins: Sequence[TimeBin]) -> bytes:
    """Defect rate per hour or shift, with 95 % Wilson intervals and the parts per bin."""
    fig = _figure(6.4, 3.2)
    ax = fig.add_subplot()
    x = np.arange(len(bins))
    rates = np.array([b.rate for b in bins]) * 100
    ci = np.array([wilson_interval(b.failed, b.inspected) for b in bins]) * 100
    ax.bar(x, rates, color=FAIL_COLOUR, alpha=0.8)
    ax.errorbar(x, rates, yerr=np.clip([rates - ci[:, 0], ci[:, 1] - rates], 0, None), fmt="none", ecolor="k",
                capsize=3, linewidth=0.8)
    for xi, b in zip(x, bins, strict=True):
        ax.annotate(str(b.inspected), (xi, 0), textcoords="offset points", xytext=(0, 2), ha="center",
                    fontsize=7, color="white" if b.rate > 0.08 else "k")
    step = max(1, len(bins) // 12)
    ax.set_xticks(x[::step], [b.label for b in bins][::step], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("defect rate (%)")
    ax.set_ylim(0, min(100, max(5.0, float(ci[:, 1].max()) * 1.1)))
    ax.set_title(f"per {kind} (UTC); numbers = parts inspected", fontsize=9)
    return _png(fig)


def pareto(kinds: Sequence[tuple[str, int]]) -> bytes:
    """Failed parts per main defect kind, most frequent first, with the cumulative share."""
    fig = _figure()
    ax = fig.add_subplot()
    names, counts = [k for k, _ in kinds], np.array([c for _, c in kinds], dtype=float)
    x = np.arange(len(names))
    ax.bar(x, counts, color=FAIL_COLOUR, alpha=0.85)
    ax.set_ylabel("failed parts")
    ax.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
    cumulative = ax.twinx()
    cumulative.plot(x, np.cumsum(counts) / counts.sum() * 100, color="k", marker="o", markersize=3)
    cumulative.set_ylim(0, 105)
    cumulative.set_ylabel("cumulative %")
    return _png(fig)


def density_map(density: Density) -> bytes:
    """Share of failed parts with a defect over each cell of the part's frame, with centroids."""
    fig = _figure(5.2, max(2.6, min(5.2, 4.2 * density.aspect)))
    ax = fig.add_subplot()
    image = ax.imshow(density.grid * 100, extent=(0, 1, 1, 0), cmap="magma", vmin=0,
                      vmax=max(1.0, float(density.grid.max()) * 100), aspect=density.aspect, interpolation="nearest")
    if density.centroids:
        cx, cy = zip(*density.centroids, strict=True)
        ax.scatter(cx, cy, s=6, c="#39f", alpha=0.6, linewidths=0, label="region centres")
        ax.legend(loc="lower right", fontsize=7)
    ax.set_xlabel("across the part (left to right)")
    ax.set_ylabel("down the part (top to bottom)")
    fig.colorbar(image, ax=ax, label="% of failed parts")
    return _png(fig)
