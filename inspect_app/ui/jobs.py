"""Long work (fitting a product, building a report) in a background thread, with one honest bar
over all its stages: the UI's progress display (the CLI's are ``clikit.progress_bar`` and
``clikit.LogProgress``).

A Streamlit script must finish quickly, so a page starts a ``BackgroundJob`` (whose ``progress``
is the work's ``ProgressCallback``) and ``widgets.job_progress`` polls it; the thread never
touches Streamlit. Jobs live in a process-wide ``JobBoard``, so a fit keeps running and stays on
show when the user leaves the page or reloads.

Stages are weighted by their measured cost: a ``StageCostBook`` keeps, per kind of job, how many
seconds each stage took per unit of size (good images of a fit), split into the time its counter
moves and the silent time after it is full (e.g. building the memory bank after "encoding good
images" reaches n/n). The bar moves through a silent tail by time, never past 95 % of it.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar, cast

from inspect_app.errors import InspectAppError
from inspect_app.progress import ProgressCallback

R = TypeVar("R")
TAIL_CAP = 0.95  # a silent tail fills by time up to this share of its expected length
EMA = 0.5  # weight of the newest run when a stage cost is updated


@dataclass
class StageCost:
    """Seconds per unit of size: while the stage's counter moves, and after it is full."""

    counting_s: float
    tail_s: float

    @property
    def total_s(self) -> float:
        return self.counting_s + self.tail_s


# Seconds per good image, measured with benchmarks/ui_feedback.py on MVTec bottle on this project's
# 2-core machine while other jobs loaded it (2026-12-06: fused on 60 images, load average 6-9;
# image-image on 10 images, load 12; image-text takes fused's stages, it has no memory bank of its
# own to build). Only the shares matter for the bar; each station replaces them with its own fits.
_FUSED = [("reading images", StageCost(0.0069, 0.0072)), ("encoding good images", StageCost(0.0332, 0.0331)),
          ("synthesising defects", StageCost(0.3125, 0.3601)),
          ("training image-text decoder", StageCost(6.963, 0.0041)), ("calibrating", StageCost(0.0015, 0.0))]
DEFAULT_COSTS: dict[str, list[tuple[str, StageCost]]] = {
    "fit:image-image": [("reading images", StageCost(0.01, 0.1511)), ("encoding good images", StageCost(0.0529, 0.111)),
                        ("calibrating", StageCost(0.0106, 0.0))],
    "fit:image-text": _FUSED,
    "fit:fused": _FUSED,
}


class StageCostBook:
    """Stage costs per kind of job, read from and written to a small JSON file."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()

    def plan(self, kind: str) -> list[tuple[str, StageCost]]:
        saved = self._read().get(kind)
        if saved:
            return [(s["stage"], StageCost(s["counting_s"], s["tail_s"])) for s in saved]
        return list(DEFAULT_COSTS.get(kind, []))

    def _read(self) -> dict[str, list[dict]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def record(self, kind: str, measured: list[tuple[str, StageCost]]) -> None:
        """Blend a finished job's per-unit stage costs into the book (stages in the order seen)."""
        if self.path is None or not measured:
            return
        with self._lock:
            book = self._read()
            old = {name: cost for name, cost in self.plan(kind)}
            blended = []
            for name, cost in measured:
                prior = old.get(name)
                if prior is not None:
                    cost = StageCost(EMA * cost.counting_s + (1 - EMA) * prior.counting_s,
                                     EMA * cost.tail_s + (1 - EMA) * prior.tail_s)
                blended.append({"stage": name, "counting_s": cost.counting_s, "tail_s": cost.tail_s})
            book[kind] = blended
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(json.dumps(book, indent=1))
            except OSError:
                pass  # the estimate is a convenience


class BackgroundJob(Generic[R]):
    """Runs ``work(progress)`` once in a daemon thread; ``result`` is what it returned.

    ``kind``/``size``/``costs``: the job's kind in the cost book and its size in units (good
    images); without them the bar follows the current stage's counter only.
    """

    def __init__(self, name: str, work: Callable[[ProgressCallback], R], *, kind: str = "", size: float = 1.0,
                 costs: StageCostBook | None = None, owner: str = ""):
        self.name, self.kind, self.size, self.owner = name, kind, max(size, 1.0), owner
        self.costs = costs
        self.plan = costs.plan(kind) if costs is not None and kind else []
        self.started = time.time()
        self.finished: float | None = None
        self.stage_done, self.stage_total, self.stage = 0, 1, "starting"
        self._timeline: list[tuple[str, float, float | None]] = []  # (stage, started, counter full at)
        self._shown = 0.0
        self._result: R | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(work,), name=f"ui-job-{name}", daemon=True)
        self._thread.start()

    def progress(self, done: int, total: int, stage: str, /) -> None:
        """The work's ``ProgressCallback``: records where it is, for the page to show."""
        now = time.time()
        with self._lock:
            if not self._timeline or self._timeline[-1][0] != stage:
                self._timeline.append((stage, now, None))
            self.stage_done, self.stage_total, self.stage = done, max(total, 1), stage
            name, began, full = self._timeline[-1]
            if full is None and done >= total:
                self._timeline[-1] = (name, began, now)

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
            if self.error is None and self.costs is not None and self.kind:
                self.costs.record(self.kind, self.measured())

    def measured(self) -> list[tuple[str, StageCost]]:
        """Per-unit costs of the stages this run went through (its timeline)."""
        end = self.finished or time.time()
        with self._lock:
            timeline = list(self._timeline)
        out = []
        for i, (stage, began, full) in enumerate(timeline):
            ended = timeline[i + 1][1] if i + 1 < len(timeline) else end
            full_at = full if full is not None else ended
            out.append((stage, StageCost((full_at - began) / self.size, (ended - full_at) / self.size)))
        return out

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
    def elapsed_s(self) -> float:
        return (self.finished or time.time()) - self.started

    @property
    def fraction(self) -> float:
        """Share of the whole job done, by the expected cost of its stages (never moves back)."""
        if not self.running:
            return 1.0
        with self._lock:
            stage, done, total = self.stage, self.stage_done, self.stage_total
            full = self._timeline[-1][2] if self._timeline else None
            names = [name for name, _ in self.plan]
            if not self.plan:
                share = done / total
            elif stage in names:
                index = names.index(stage)
                cost = self.plan[index][1]
                within = cost.counting_s * done / total
                if full is not None:
                    within += min(cost.tail_s * TAIL_CAP, (time.time() - full) / self.size)
                whole = sum(c.total_s for _, c in self.plan) or 1.0
                share = (sum(c.total_s for _, c in self.plan[:index]) + within) / whole
            else:  # a stage the book does not know yet: hold where the bar is
                share = 0.0
            self._shown = max(self._shown, min(0.99, share))
            return self._shown

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace so far; None until the pace is known."""
        fraction = self.fraction
        if not self.running:
            return 0.0
        if fraction < 0.02 or self.elapsed_s < 2.0:
            return None
        return self.elapsed_s * (1 - fraction) / fraction

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self.running


class JobBoard:
    """The process's background jobs by key (one fit per product, one report per user): a job
    survives navigation, reloads and other browser sessions looking on."""

    def __init__(self) -> None:
        self._jobs: dict[str, BackgroundJob] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> BackgroundJob | None:
        with self._lock:
            return self._jobs.get(key)

    def start(self, key: str, name: str, work: Callable[[ProgressCallback], R], **options) -> BackgroundJob[R]:
        """Start ``work`` under ``key``; ``InspectAppError`` while the key's last job still runs."""
        with self._lock:
            running = self._jobs.get(key)
            if running is not None and running.running:
                raise InspectAppError(f"{running.name} is still running; wait for it to finish")
            job = self._jobs[key] = BackgroundJob(name, work, **options)
        return job

    def pop(self, key: str) -> None:
        with self._lock:
            self._jobs.pop(key, None)

    def items(self, prefix: str) -> list[tuple[str, BackgroundJob]]:
        """The jobs whose key starts with ``prefix``, newest first."""
        with self._lock:
            found = [(k, j) for k, j in self._jobs.items() if k.startswith(prefix)]
        return sorted(found, key=lambda item: item[1].started, reverse=True)
