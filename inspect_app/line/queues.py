"""The bounded queue between capture and inspection, with the line's two overload rules:
free-running frames are dropped oldest-first (and counted); triggered parts wait for room
(backpressure on capture) and are refused only after a deadline, so the caller can reject the
part with an alarm. Nothing leaves the queue without the caller knowing."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from inspect_app.line.sources import Frame


@dataclass
class Job:
    """One frame on its way to the inspector."""

    seq: int  # part number at this station (1, 2, ...)
    frame: Frame
    trigger: str
    triggered_at: float
    droppable: bool
    key: str  # the frame's identity (see ``LineResult.key``)
    enqueued_at: float = field(default_factory=time.time)


class InspectQueue:
    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._items: deque[Job] = deque()
        self._cond = threading.Condition()
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, job: Job, timeout: float) -> tuple[bool, Job | None]:
        """Add ``job``. Returns (accepted, dropped): ``dropped`` is the free-running job pushed out
        to make room. A triggered job waits up to ``timeout`` s for room; a free-running one that
        finds only triggered jobs ahead of it is refused at once (accepted False: drop it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._items) >= self.maxsize and not self.closed:
                oldest = next((j for j in self._items if j.droppable), None)
                if oldest is not None:
                    self._items.remove(oldest)
                    self._items.append(job)
                    self._cond.notify_all()
                    return True, oldest
                if job.droppable:
                    return False, None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False, None
                self._cond.wait(remaining)
            if self.closed:
                return False, None
            self._items.append(job)
            self._cond.notify_all()
            return True, None

    def get_batch(self, max_items: int, timeout: float) -> list[Job]:
        """Up to ``max_items`` jobs that are already waiting; waits ``timeout`` only for the first."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            batch: list[Job] = []
            while self._items and len(batch) < max_items:
                batch.append(self._items.popleft())
            if batch:
                self._cond.notify_all()
            return batch

    def close(self) -> None:
        """No more puts (waiting producers are refused); what is queued can still be taken."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def take_all(self) -> list[Job]:
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items
