"""Every result recorded exactly once: into the results store, or, while the store is unreachable,
into the station's durable spool (``line.spool``), from which a replay thread moves it into the
store in order when it is back. The store's unique frame key makes a second recording of the
same frame (a replay racing a crash, a restart) return the first row's id instead of a new row.

The ledger also answers ``recorded(key)`` (store or spool: a restarted station skips those
frames) and writes back which results the MQTT broker acknowledged, so that a restart after a
crash publishes again, with the same id, exactly the results whose messages may be lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from inspect_app.line.health import Alarms
from inspect_app.line.metrics import StationMetrics
from inspect_app.line.spool import Spool, SpoolEntry
from inspect_app.results import InspectionResult

if TYPE_CHECKING:
    from inspect_app.store import LineStore

log = logging.getLogger(__name__)
RETRY_MIN_S, RETRY_MAX_S = 0.5, 5.0  # replay attempts while the store is away: doubling between these


class Recorded(StrEnum):
    STORED = "stored"
    SPOOLED = "spooled"
    FAILED = "failed"  # neither store nor spool took it (the frame is not acknowledged: a restart retries it)


class ResultLedger:
    """See module docstring. ``on_replayed(entry, rid)`` is called (on the replay thread) for each
    spooled result once the store has it; ``take_acknowledged()`` gives the result ids whose MQTT
    messages the broker acknowledged since the last call."""

    def __init__(self, station: str, store: LineStore, spool: Spool, metrics: StationMetrics, alarms: Alarms,
                 publish_pending: bool):
        self.station, self.store, self.spool, self.metrics, self.alarms = station, store, spool, metrics, alarms
        self.publish_pending = publish_pending
        self.on_replayed: Callable[[SpoolEntry, int], None] | None = None
        self.take_acknowledged: Callable[[], list[int]] | None = None
        self._wake = threading.Event()
        self._unmarked: list[int] = []
        metrics.spool_depth.set(len(spool))

    @property
    def spooling(self) -> bool:
        return len(self.spool) > 0

    def recorded(self, key: str) -> bool:
        """True when a result for this frame is in the store or the spool."""
        if self.spool.has(key):
            return True
        try:
            return self.store.find_frame(self.station, key) is not None
        except Exception as exc:  # the store is away: the spool and the unique key still prevent a second row
            log.warning("cannot ask the store whether %s was recorded: %s", key, exc)
            return False

    def record(self, result: InspectionResult, *, key: str, lot: str | None, triggered_at: float,
               image: np.ndarray | None, message: dict[str, Any]) -> tuple[Recorded, int | None]:
        """Store the result (its id) or, when the store fails or results are already waiting in
        the spool (order), spool it (no id yet: ``on_replayed`` gives it)."""
        if not self.spooling:
            try:
                rid = self.store.add_result(result, station=self.station, lot=lot, image=image,
                                            time=datetime.fromtimestamp(triggered_at, UTC), frame_key=key,
                                            publish_pending=self.publish_pending)
                return Recorded.STORED, rid
            except Exception as exc:
                log.warning("result %s not stored (%s): spooled to %s", key, exc, self.spool.path)
                self.alarms.raise_alarm("store_unreachable", f"results store unreachable ({type(exc).__name__}: "
                                        f"{exc}): results wait in the spool {self.spool.path}")
        try:
            self.spool.append(SpoolEntry(key, triggered_at, lot, result, message))
        except Exception as exc:
            log.exception("result %s neither stored nor spooled", key)
            self.alarms.raise_alarm("spool_failed", f"result {key} neither stored nor spooled: {exc}; its frame "
                                    "is not acknowledged, a restart inspects it again")
            return Recorded.FAILED, None
        self.metrics.results_spooled.inc()
        self.metrics.spool_depth.set(len(self.spool))
        self._wake.set()
        return Recorded.SPOOLED, None

    def replay(self) -> bool:
        """Move spooled results into the store, oldest first; False when the store refused one."""
        while True:
            entries = self.spool.oldest()
            if not entries:
                return True
            for entry in entries:
                try:
                    rid = self.store.add_result(entry.result, station=self.station, lot=entry.lot,
                                                time=datetime.fromtimestamp(entry.time, UTC),
                                                frame_key=entry.frame_key, publish_pending=self.publish_pending)
                except Exception as exc:
                    log.info("spool replay waits: the store still refuses (%s)", exc)
                    return False
                self.spool.remove(entry.seq)
                self.metrics.results_stored.inc()
                self.metrics.spool_depth.set(len(self.spool))
                if self.on_replayed is not None:
                    self.on_replayed(entry, rid)
            log.info("spool replayed into the store: %d left", len(self.spool))

    def mark_published(self) -> None:
        """Write back the acknowledged results (kept for the next call when the store refuses)."""
        if self.take_acknowledged is not None:
            self._unmarked.extend(self.take_acknowledged())
        if not self._unmarked:
            return
        try:
            self.store.mark_published(self._unmarked)
            self._unmarked = []
        except Exception as exc:
            log.info("acknowledged publications not recorded yet: %s", exc)

    def run(self, stop: threading.Event) -> None:
        """The replay thread: replays while there is a spool, and records acknowledgements."""
        wait = RETRY_MIN_S
        while not stop.is_set():
            self._wake.wait(wait)
            self._wake.clear()
            if stop.is_set():
                break
            ok = self.replay() if self.spooling else True
            wait = RETRY_MIN_S if ok else min(wait * 2, RETRY_MAX_S)
            self.mark_published()

    def wake(self) -> None:
        """End the replay thread's wait now (it then sees its stop event)."""
        self._wake.set()

    def finish(self) -> None:
        """At stop: one last replay attempt and acknowledgement write-back."""
        if self.spooling:
            self.replay()
        self.mark_published()
