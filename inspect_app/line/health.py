"""What a station says about itself besides its results: alarms, the heartbeat (``status()`` to
the store and the retained MQTT status topic) and the recent verdict rate."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from inspect_app.line.memory import TRIM_EVERY_S, release_free_memory
from inspect_app.line.metrics import StationMetrics
from inspect_app.line.sinks import Sinks

if TYPE_CHECKING:
    from inspect_app.store import LineStore

log = logging.getLogger(__name__)
ALARM_MQTT_INTERVAL_S = 5.0  # the same alarm kind goes to MQTT at most this often (the store folds repeats itself)
RATE_WINDOW_S = 10.0  # the fps in the status counts verdicts of this many recent seconds


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


class Alarms:
    """Logs, counts, records in the store and publishes on the alarm topic. ``store`` and
    ``sinks`` are the station's: alarms raised before they are open are logged and counted."""

    def __init__(self, station: str, metrics: StationMetrics, sinks: Sinks):
        self.station, self.metrics, self.sinks = station, metrics, sinks
        self.store: LineStore | None = None
        self._published: dict[str, float] = {}  # kind -> time.monotonic() of its last MQTT message
        self._lock = threading.Lock()

    def raise_alarm(self, kind: str, message: str) -> None:
        log.warning("alarm %s: %s", kind, message)
        self.metrics.alarms.labels(kind).inc()
        if self.store is not None:
            try:
                self.store.raise_alarm(kind, message, station=self.station)
            except Exception:
                log.exception("alarm not stored")
        mqtt = self.sinks.mqtt
        if mqtt is None:
            return
        now = time.monotonic()
        with self._lock:
            due = now - self._published.get(kind, -ALARM_MQTT_INTERVAL_S) >= ALARM_MQTT_INTERVAL_S
            if due:
                self._published[kind] = now
        if due:
            mqtt.publish("alarm", {"station": self.station, "kind": kind, "message": message,
                                   "time": iso_time(time.time())})


class VerdictRate:
    """Verdicts per second over the last ``RATE_WINDOW_S`` (the station's fps)."""

    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=1000)
        self._lock = threading.Lock()

    def add(self, at: float, n: int = 1) -> None:
        with self._lock:
            self._times.extend([at] * n)

    def per_second(self, now: float) -> float:
        with self._lock:
            recent = sum(1 for t in self._times if now - t <= RATE_WINDOW_S)
        return recent / RATE_WINDOW_S


def run_heartbeat(station: str, status: Callable[[], dict[str, Any]], store: LineStore, sinks: Sinks,
                  every_s: float, stop: threading.Event, renew_lease: Callable[[], None]) -> None:
    """Until ``stop``: renew the station's name lease, write ``status()`` to the store and the
    retained status topic every ``every_s``, and hand free heap pages back now and then (see
    ``line.memory``: keeps RSS flat)."""
    trimmed = time.monotonic()
    while not stop.wait(every_s):
        if time.monotonic() - trimmed >= TRIM_EVERY_S:
            release_free_memory()
            trimmed = time.monotonic()
        renew_lease()
        snapshot = status()
        try:
            store.update_station_status(station, snapshot)
        except Exception:
            log.exception("heartbeat not stored")
        if sinks.mqtt:
            sinks.mqtt.publish("status", snapshot, retain=True)
