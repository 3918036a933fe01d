"""Long work (fitting a product, building a report) in a background thread: the UI's progress
display (the CLI's are ``clikit.progress_bar`` and ``clikit.LogProgress``).

A Streamlit script must finish quickly for the page to stay responsive, so the page starts a
``BackgroundJob``, whose ``progress`` is the work's ``ProgressCallback``, and
``widgets.job_progress`` polls it; the thread never touches Streamlit.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from inspect_app.errors import InspectAppError
from inspect_app.progress import ProgressCallback

R = TypeVar("R")


class BackgroundJob(Generic[R]):
    """Runs ``work(progress)`` once in a daemon thread; ``result`` is what it returned."""

    def __init__(self, name: str, work: Callable[[ProgressCallback], R]):
        self.name = name
        self.started = time.time()
        self.finished: float | None = None
        self.done, self.total, self.stage = 0, 1, "starting"
        self._result: R | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(work,), name=f"ui-job-{name}", daemon=True)
        self._thread.start()

    def progress(self, done: int, total: int, stage: str, /) -> None:
        """The work's ``ProgressCallback``: records where it is, for the page to show."""
        with self._lock:
            self.done, self.total, self.stage = done, max(total, 1), stage

    def _run(self, work: Callable[[ProgressCallback], R]) -> None:
        try:
            self._result = work(self.progress)
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
    def result(self) -> R:
        """What the work returned; ``RuntimeError`` while it runs or when it failed."""
        if self.running or self.error is not None:
            raise RuntimeError(f"job {self.name} has no result: {self.error or 'it is still running'}")
        return cast(R, self._result)

    @property
    def fraction(self) -> float:
        with self._lock:
            return min(1.0, self.done / self.total)

    @property
    def status(self) -> str:
        with self._lock:
            return f"{self.stage}: {self.done}/{self.total} ({time.time() - self.started:.0f} s)"

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self.running
