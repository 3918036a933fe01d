"""Long work (fitting a product, building a report) in a background thread.

A Streamlit script must finish quickly for the page to stay responsive, so the page starts a
``BackgroundJob`` and a fragment polls its progress; the thread never touches Streamlit.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from inspect_app.errors import InspectAppError


class BackgroundJob:
    """Runs ``work(progress)`` once in a daemon thread; ``progress(done, total, label)`` is the
    Inspector's callback signature."""

    def __init__(self, name: str, work: Callable[[Callable[[int, int, str], None]], Any]):
        self.name = name
        self.started = time.time()
        self.finished: float | None = None
        self.done, self.total, self.label = 0, 1, "starting"
        self.result: Any = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(work,), name=f"ui-job-{name}", daemon=True)
        self._thread.start()

    def _progress(self, done: int, total: int, label: str) -> None:
        with self._lock:
            self.done, self.total, self.label = done, max(total, 1), label

    def _run(self, work) -> None:
        try:
            self.result = work(self._progress)
        except InspectAppError as exc:
            self.error = str(exc)
        except Exception as exc:  # shown on the page; the app keeps running
            self.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            self.finished = time.time()

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def fraction(self) -> float:
        with self._lock:
            return min(1.0, self.done / self.total)

    @property
    def status(self) -> str:
        with self._lock:
            return f"{self.label}: {self.done}/{self.total} ({time.time() - self.started:.0f} s)"

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self.running
