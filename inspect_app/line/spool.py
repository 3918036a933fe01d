"""The station's durable spool: results the results store could not take (database down, SQLite
locked) wait here, in a local SQLite file beside the station, and are replayed in order when the
store is back. One row per frame identity, committed with ``synchronous=FULL`` before the frame
counts as recorded (its file may then go to ``done/``), so neither a store outage nor a crash
loses a result, and a replay that races a crash cannot store it twice (the store's unique frame
key returns the first row). Result images are not spooled: a spooled result is stored without them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspect_app.results import InspectionResult, Region, Verdict


def result_from_dict(data: dict[str, Any]) -> InspectionResult:
    """The inverse of ``InspectionResult.to_dict`` for what the store keeps (no maps, no evidence)."""
    regions = [Region(**{**r, "bbox": tuple(r["bbox"]), "centroid": tuple(r["centroid"])})
               for r in data.get("regions") or []]
    size = data.get("image_size")
    box = data.get("part_box")
    return InspectionResult(
        file=data.get("file"), verdict=Verdict(data["verdict"]), score=data.get("score"),
        threshold=data.get("threshold", 0.5), raw_score=data.get("raw_score"), regions=regions,
        image_size=tuple(size) if size else None, part_box=tuple(box) if box else None,
        timings_ms=dict(data.get("timings_ms") or {}), error=data.get("error"), product=data.get("product"),
        mode=data.get("mode"), profile_version=data.get("profile_version"), explanation=data.get("explanation"),
        explanation_source=data.get("explanation_source"))


@dataclass
class SpoolEntry:
    """One result waiting for the store, with the MQTT message to publish once it has its id."""

    frame_key: str
    time: float  # when it was triggered (epoch seconds): the stored result's time
    lot: str | None
    result: InspectionResult
    message: dict[str, Any]
    seq: int = 0  # the spool's own order


class Spool:
    """Append-only (until replayed) local SQLite table; thread-safe."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a spooled result survives a power cut
        self._db.execute("CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "frame_key TEXT NOT NULL UNIQUE, time REAL NOT NULL, lot TEXT, result TEXT NOT NULL, "
                         "message TEXT NOT NULL)")
        self._count = self._db.execute("SELECT count(*) FROM spool").fetchone()[0]

    def __len__(self) -> int:
        return self._count

    def append(self, entry: SpoolEntry) -> None:
        """Commit ``entry`` (a second entry with the same frame key is ignored)."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO spool (frame_key, time, lot, result, message) VALUES (?, ?, ?, ?, ?)",
                (entry.frame_key, entry.time, entry.lot, json.dumps(entry.result.to_dict(), default=str),
                 json.dumps(entry.message, default=str)))
            self._count += cursor.rowcount

    def has(self, frame_key: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM spool WHERE frame_key = ?", (frame_key,)).fetchone() is not None

    def oldest(self, limit: int = 50) -> list[SpoolEntry]:
        with self._lock:
            rows = self._db.execute("SELECT seq, frame_key, time, lot, result, message FROM spool ORDER BY seq "
                                    "LIMIT ?", (limit,)).fetchall()
        return [SpoolEntry(key, at, lot, result_from_dict(json.loads(result)), json.loads(message), seq)
                for seq, key, at, lot, result, message in rows]

    def remove(self, seq: int) -> None:
        """The entry is in the store now."""
        with self._lock:
            self._count -= self._db.execute("DELETE FROM spool WHERE seq = ?", (seq,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()
