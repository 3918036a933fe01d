"""The numbers of a report: defect rate with its confidence interval, time bins, defect kinds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from scipy.stats import binomtest

from inspect_app.reports.rows import ReportRow, defect_kind
from inspect_app.results import Verdict

HOURLY_MAX_SPAN = timedelta(hours=48)  # longer spans are binned per shift
SHIFT_HOURS = 8
SHIFT_START_HOUR = 6  # shifts 06-14, 14-22, 22-06 UTC


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k/n (scipy): sensible at 0 and n and for small n,
    where the normal approximation collapses to a zero-width or out-of-range interval.
    With nothing counted (n = 0) the proportion could be anything: (0, 1)."""
    if n <= 0:
        return 0.0, 1.0
    interval = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(interval.low), float(interval.high)


@dataclass
class Counts:
    total: int
    passed: int
    failed: int
    errors: int
    defect_rate: float | None  # failed / inspected
    ci_low: float | None
    ci_high: float | None

    @classmethod
    def of(cls, rows: Sequence[ReportRow]) -> Counts:
        verdicts = Counter(r.result.verdict for r in rows)
        passed, failed = verdicts[Verdict.PASS], verdicts[Verdict.FAIL]
        inspected = passed + failed
        if not inspected:
            return cls(len(rows), passed, failed, len(rows) - inspected, None, None, None)
        low, high = wilson_interval(failed, inspected)
        return cls(len(rows), passed, failed, len(rows) - inspected, failed / inspected, low, high)

    @property
    def ci95(self) -> tuple[float, float] | None:
        """The defect rate's 95 % interval, when anything was inspected."""
        return None if self.ci_low is None or self.ci_high is None else (self.ci_low, self.ci_high)


@dataclass
class TimeBin:
    start: datetime
    label: str
    inspected: int
    failed: int

    @property
    def rate(self) -> float:
        return self.failed / self.inspected if self.inspected else 0.0


def as_utc(t: datetime) -> datetime:
    """``t`` in UTC; a time without a zone is taken as UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def time_bins(rows: Sequence[ReportRow]) -> tuple[str, list[TimeBin]]:
    """Inspected rows with an acquisition time, per hour (spans up to 48 h) or per 8-hour shift.
    Returns the bin kind ("hour", "shift" or "none") and the bins in time order."""
    timed = [(as_utc(r.time), r.result.verdict == Verdict.FAIL) for r in rows if r.time is not None and r.inspected]
    if not timed:
        return "none", []
    first, last = min(t for t, _ in timed), max(t for t, _ in timed)
    kind = "hour" if last - first <= HOURLY_MAX_SPAN else "shift"
    bins: dict[datetime, list[int]] = {}
    for t, failed in timed:
        if kind == "hour":
            start = t.replace(minute=0, second=0, microsecond=0)
        else:
            shifted = t - timedelta(hours=SHIFT_START_HOUR)
            start = shifted.replace(hour=(shifted.hour // SHIFT_HOURS) * SHIFT_HOURS, minute=0, second=0,
                                    microsecond=0) + timedelta(hours=SHIFT_START_HOUR)
        counts = bins.setdefault(start, [0, 0])
        counts[0] += 1
        counts[1] += failed
    suffix = "" if kind == "hour" else f" +{SHIFT_HOURS}h"
    out = [TimeBin(s, s.strftime("%m-%d %H:00") + suffix, n, f)
           for s, (n, f) in sorted(bins.items())]
    return kind, out


def defect_kinds(rows: Sequence[ReportRow]) -> list[tuple[str, int]]:
    """Failed parts per main defect kind, most frequent first (the Pareto order)."""
    kinds = Counter(kind for r in rows if (kind := defect_kind(r.result)) is not None)
    return sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))


def part_frame(row: ReportRow) -> tuple[int, int, int, int] | None:
    """The box defects are placed in: the part's box when the inspector found one, else the
    whole image (its size from the result, or from the kept image's header for store rows)."""
    r = row.result
    if r.part_box:
        return r.part_box
    if r.image_size:
        return 0, 0, int(r.image_size[0]), int(r.image_size[1])
    if row.image_path:
        from PIL import Image

        try:
            with Image.open(row.image_path) as image:
                return 0, 0, image.width, image.height
        except OSError:
            return None
    return None


@dataclass
class Density:
    grid: np.ndarray  # share of placed failed parts with a defect region over each cell
    centroids: list[tuple[float, float]]  # region centroids in the unit frame
    placed: int  # failed parts placed in the frame
    unplaced: int  # failed parts whose frame is unknown
    aspect: float  # mean frame height / width


def defect_density(rows: Sequence[ReportRow], cells: int = 48) -> Density:
    """Where on the part defects concentrate: each failed part's region boxes, normalised to its
    part frame, marked once per part on a cells x cells grid."""
    grid = np.zeros((cells, cells))
    centroids, aspects = [], []
    placed = unplaced = 0
    for row in rows:
        if row.result.verdict != Verdict.FAIL or not row.result.regions:
            continue
        frame = part_frame(row)
        if frame is None:
            unplaced += 1
            continue
        x0, y0, x1, y1 = frame
        w, h = max(x1 - x0, 1), max(y1 - y0, 1)
        aspects.append(h / w)
        mask = np.zeros_like(grid, dtype=bool)
        for region in row.result.regions:
            bx0, by0, bx1, by1 = region.bbox
            c0 = int(np.clip((bx0 - x0) / w, 0, 1) * cells)
            r0 = int(np.clip((by0 - y0) / h, 0, 1) * cells)
            c1 = max(int(np.ceil(np.clip((bx1 - x0) / w, 0, 1) * cells)), min(c0 + 1, cells))
            r1 = max(int(np.ceil(np.clip((by1 - y0) / h, 0, 1) * cells)), min(r0 + 1, cells))
            mask[r0:r1, c0:c1] = True
            cx, cy = region.centroid
            centroids.append((float(np.clip((cx - x0) / w, 0, 1)), float(np.clip((cy - y0) / h, 0, 1))))
        grid += mask
        placed += 1
    if placed:
        grid /= placed
    return Density(grid, centroids, placed, unplaced, float(np.mean(aspects)) if aspects else 1.0)
