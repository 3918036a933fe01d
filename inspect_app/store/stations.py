"""Station heartbeats and alarms: each station's latest status (one row per station, replaced
by every heartbeat) and the alarm log the line, the API and the store itself write to."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from inspect_app.store.database import Database
from inspect_app.store.models import AlarmRow, StationStatusRow, utc_now
from inspect_app.store.records import AlarmEntry, StationStatus

ALARM_DEDUP_WINDOW_S = 60.0
"""Store-side de-duplication: one alarm row per (station, kind) per this many seconds; repeats in
between are counted and mentioned in the next row, so a fault on every frame cannot flood the log.
(How often the line re-publishes an alarm over MQTT is the line station's own setting.)"""


class StationMonitor:
    """Heartbeats (``update_station_status``/``station_status``) and alarms (``raise_alarm``/``alarms``)."""

    def __init__(self, database: Database):
        self._db = database
        self._alarm_lock = threading.Lock()
        self._alarm_last: dict[tuple[str, str], tuple[float, int]] = {}  # (station, kind) -> (recorded at, folded)

    def update_station_status(self, station: str, status: Mapping[str, Any]) -> None:
        """Heartbeat: replace the station's status (a JSON-serialisable mapping)."""
        with self._db.transaction() as session:
            self._db.upsert(session, StationStatusRow,
                            {"station": station, "status": dict(status), "updated_at": utc_now()})

    def station_status(self, station: str | None = None) -> list[StationStatus]:
        """Every station's (or one station's) last status, by station name."""
        stmt = select(StationStatusRow).order_by(StationStatusRow.station)
        if station is not None:
            stmt = stmt.where(StationStatusRow.station == station)
        with self._db.session() as session:
            return [{**row.status, "station": row.station, "updated_at": row.updated_at}
                    for row in session.scalars(stmt)]

    def raise_alarm(self, kind: str, message: str, station: str = "local") -> None:
        """Record an alarm, at most once per ``ALARM_DEDUP_WINDOW_S`` for the same station and kind;
        the next one recorded says how many repeats were folded into it."""
        now = time.monotonic()
        with self._alarm_lock:
            last, folded = self._alarm_last.get((station, kind), (-ALARM_DEDUP_WINDOW_S, 0))
            if now - last < ALARM_DEDUP_WINDOW_S:
                self._alarm_last[(station, kind)] = (last, folded + 1)
                return
            self._alarm_last[(station, kind)] = (now, 0)
        if folded:
            message += (f" ({folded} similar alarm(s) in the previous {ALARM_DEDUP_WINDOW_S:g} s not recorded "
                        "separately)")
        with self._db.transaction() as session:
            session.add(AlarmRow(time=utc_now(), station=station, kind=kind, message=message))

    def alarms(self, since: datetime | None = None, limit: int = 200) -> list[AlarmEntry]:
        """Newest first."""
        stmt = select(AlarmRow).order_by(AlarmRow.time.desc(), AlarmRow.id.desc()).limit(limit)
        if since is not None:
            stmt = stmt.where(AlarmRow.time >= since)
        with self._db.session() as session:
            return [AlarmEntry(id=a.id, time=a.time, station=a.station, kind=a.kind, message=a.message)
                    for a in session.scalars(stmt)]

