"""One station name, one station: a lease row per name that the running station renews with its
heartbeat. A second live station with the same name is refused; a holder whose heartbeat is
older than ``stale_after_s``, or whose process is gone on this host, is taken over at once (so a
restart after ``kill -9`` works without waiting)."""

from __future__ import annotations

import os
import socket

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from inspect_app.store.database import Database, StoreError
from inspect_app.store.models import StationLeaseRow, utc_now


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class StationLeases:
    """``claim_station``, ``renew_station``, ``release_station``."""

    def __init__(self, database: Database):
        self._db = database
        self.host = socket.gethostname()

    def claim_station(self, station: str, owner: str, stale_after_s: float) -> None:
        """Take the name for ``owner`` (a random id of one station run); a ``StoreError`` says who
        holds it when a live station does."""
        now = utc_now()
        values = {"owner": owner, "host": self.host, "pid": os.getpid(), "heartbeat_at": now}
        for _attempt in range(3):  # lost races with another starting station: look again
            with self._db.transaction() as session:
                row = session.get(StationLeaseRow, station)
                if row is None:
                    session.add(StationLeaseRow(station=station, **values))
                    try:
                        session.flush()
                    except IntegrityError:
                        session.rollback()
                        continue
                    return
                age = (now - row.heartbeat_at).total_seconds()
                dead = row.host == self.host and not _process_alive(row.pid)
                if row.owner != owner and age < stale_after_s and not dead:
                    raise StoreError(
                        f"station {station!r} is already running (pid {row.pid} on {row.host}, last heartbeat "
                        f"{age:.1f} s ago): give this one another --station name, or stop that one first")
                taken = session.execute(update(StationLeaseRow).where(
                    StationLeaseRow.station == station, StationLeaseRow.owner == row.owner).values(**values))
                if taken.rowcount:  # type: ignore[attr-defined]
                    return
        raise StoreError(f"station {station!r}: another station took the name at the same moment")

    def renew_station(self, station: str, owner: str) -> bool:
        """Heartbeat of the lease; False when another station has taken the name over."""
        with self._db.transaction() as session:
            done = session.execute(update(StationLeaseRow).where(
                StationLeaseRow.station == station, StationLeaseRow.owner == owner).values(heartbeat_at=utc_now()))
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def release_station(self, station: str, owner: str) -> None:
        with self._db.transaction() as session:
            session.execute(delete(StationLeaseRow).where(StationLeaseRow.station == station,
                                                          StationLeaseRow.owner == owner))


