"""What the run screen shows, free of widgets: the station's health from its heartbeat, the plant's
shift (own shift starts and time zone), counters and yield for the shift and the lot, the strip
of the last parts and the defect-rate trend. Read from the store's ``ResultReader`` Protocol so
the page, its tests and the refresh benchmark share one path."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from inspect_app.errors import InspectAppError
from inspect_app.results import Verdict
from inspect_app.store import ResultReader, StoredResult

PLANT_SETTINGS_KEY = "_plant"  # the store's settings row of the whole plant (product names start with a letter)
DEFAULT_SHIFT_STARTS = ("06:00", "14:00", "22:00")
ONLINE_WITHIN_S = 10.0  # a heartbeat (every 2 s by default) older than this: degraded
OFFLINE_AFTER_S = 30.0  # older than this, or a stopped station: offline
STRIP_LENGTH = 20


class StationHealth(StrEnum):
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"


@dataclass(frozen=True)
class StationCondition:
    health: StationHealth
    heartbeat_age_s: float | None  # None: manual inspections on this PC (no heartbeat)
    reasons: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        age = "" if self.heartbeat_age_s is None else f" · heartbeat {self.heartbeat_age_s:.0f} s ago"
        why = f" · {'; '.join(self.reasons)}" if self.reasons else ""
        return f"{self.health.value.upper()}{age}{why}"


def station_condition(status: dict[str, Any] | None, now: datetime) -> StationCondition:
    """Online, degraded (late heartbeat, camera not connected, dropped frames, store failures) or
    offline (no heartbeat for ``OFFLINE_AFTER_S``, stopped, or never reported)."""
    if status is None:
        return StationCondition(StationHealth.OFFLINE, None, ("the station has never reported",))
    age = max(0.0, (now - status["updated_at"]).total_seconds())
    state = status.get("state", "?")
    if age > OFFLINE_AFTER_S:
        return StationCondition(StationHealth.OFFLINE, age, (f"no heartbeat for {age:.0f} s",))
    if state in ("stopped", "stopping"):
        return StationCondition(StationHealth.OFFLINE, age, (f"station {state}",))
    reasons = []
    if age > ONLINE_WITHIN_S:
        reasons.append("heartbeat late")
    camera = (status.get("camera") or {}).get("state")
    if camera not in (None, "connected"):
        reasons.append(f"camera {camera}")
    if state != "running":
        reasons.append(f"station {state}")
    if status.get("store_failed"):
        reasons.append(f"{status['store_failed']} result(s) not stored")
    return StationCondition(StationHealth.DEGRADED if reasons else StationHealth.ONLINE, age, tuple(reasons))


@dataclass(frozen=True)
class PlantShifts:
    """The plant's shift starts (local wall-clock times, any order) in its time zone."""

    timezone: str = "UTC"
    starts: tuple[str, ...] = DEFAULT_SHIFT_STARTS

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> PlantShifts:
        shifts = cls(settings.get("timezone") or "UTC", tuple(settings.get("shift_starts") or DEFAULT_SHIFT_STARTS))
        shifts.validate()
        return shifts

    def validate(self) -> None:
        """``InspectAppError`` naming the bad time zone or shift start."""
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InspectAppError(f"unknown time zone {self.timezone!r} (e.g. Europe/Berlin)") from None
        if not self.starts:
            raise InspectAppError("give at least one shift start, e.g. 06:00")
        for start in self.starts:
            try:
                time.fromisoformat(start)
            except ValueError:
                raise InspectAppError(f"shift start {start!r} is not a time like 06:00") from None

    def local(self, when: datetime) -> datetime:
        """A stored (UTC) time on the plant's clock."""
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(ZoneInfo(self.timezone))

    def current(self, now: datetime) -> tuple[str, datetime]:
        """(label, start in UTC) of the shift running at ``now`` (an aware datetime)."""
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        starts = sorted(time.fromisoformat(s) for s in self.starts)
        candidates = [datetime.combine(local.date() + timedelta(days=d), t, zone)
                      for d in (-1, 0) for t in starts]
        start = max(c for c in candidates if c <= local)
        number = starts.index(start.timetz().replace(tzinfo=None)) + 1
        label = f"shift {number} since {start:%a %H:%M} {start.tzname()}"
        return label, start.astimezone(UTC)


@dataclass(frozen=True)
class Counters:
    passed: int
    failed: int
    errors: int

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors

    @property
    def yield_rate(self) -> float | None:
        """Share of inspected parts that passed (ERROR counts: the part was not shown to be good)."""
        return self.passed / self.total if self.total else None


def counters(store: ResultReader, *, station: str, since: datetime | None = None, lot: str | None = None) -> Counters:
    """PASS / FAIL / ERROR counts of a station since a time and/or for a lot (three count queries)."""
    found = {v: store.count(station=station, verdict=v, since=since, lot=lot) for v in Verdict}
    return Counters(found[Verdict.PASS], found[Verdict.FAIL], found[Verdict.ERROR])


@dataclass(frozen=True)
class TrendPoint:
    time: datetime  # of the group's last part
    defect_rate_pct: float


def defect_trend(results: list[StoredResult], per_point: int = 10) -> list[TrendPoint]:
    """Defect rate over consecutive groups of ``per_point`` parts, oldest first."""
    ordered = sorted(results, key=lambda r: r.time)
    return [TrendPoint(group[-1].time, 100 * sum(r.verdict == Verdict.FAIL for r in group) / len(group))
            for group in (ordered[i:i + per_point] for i in range(0, len(ordered) - per_point + 1, per_point))]


def trend_svg(points: list[TrendPoint], first: str, last: str) -> str:
    """The defect-rate trend as a small static SVG line (``first``/``last``: the time labels).

    Not a chart widget: the run screen redraws every second, and a Vega-Lite chart rebuilt on each
    refresh cost the wall-screen browser and the UI server ~0.15 core together, which the line
    station on the same 2-core PC lost (benchmarks/ui_refresh.py; NOTEBOOK 2026-12-06).
    """
    width, height, left, top, bottom = 300, 90, 34, 8, 16
    ceiling = max(5.0, 5.0 * math.ceil(max(p.defect_rate_pct for p in points) / 5.0))
    step = (width - left - 4) / max(len(points) - 1, 1)

    def y(rate: float) -> float:
        return top + (height - top - bottom) * (1 - rate / ceiling)

    line = " ".join(f"{left + i * step:.1f},{y(p.defect_rate_pct):.1f}" for i, p in enumerate(points))
    now = points[-1].defect_rate_pct
    return (f'<svg class="defect-trend" viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'xmlns="http://www.w3.org/2000/svg"><title>Defect rate, now {now:.0f} %</title>'
            f'<line x1="{left}" y1="{y(ceiling):.1f}" x2="{width}" y2="{y(ceiling):.1f}" stroke="#ccc" '
            f'stroke-dasharray="3 3"/><line x1="{left}" y1="{y(0):.1f}" x2="{width}" y2="{y(0):.1f}" stroke="#999"/>'
            f'<text x="{left - 4}" y="{y(ceiling) + 4:.1f}" text-anchor="end" font-size="10">{ceiling:.0f} %</text>'
            f'<text x="{left - 4}" y="{y(0) + 4:.1f}" text-anchor="end" font-size="10">0 %</text>'
            f'<polyline points="{line}" fill="none" stroke="#b71c1c" stroke-width="2"/>'
            f'<text x="{left}" y="{height - 3}" font-size="10">{first}</text>'
            f'<text x="{width}" y="{height - 3}" text-anchor="end" font-size="10">{last}</text></svg>')


def picture_of(result: StoredResult) -> tuple[str | None, str]:
    """The stored picture of a part and what it is: the overlay when kept, else the image."""
    if result.overlay_path:
        return result.overlay_path, "overlay"
    if result.image_path:
        return result.image_path, "image"
    return None, "no image kept (PASS images are sampled by the retention policy)"
