"""Explanations off the inspection path: a worker thread, a bounded queue and a deadline.

``submit`` never blocks. A FAIL result goes to the language model when one is configured and
loads; everything else, a full queue, a model that is missing or broken, a deadline that
passes, and a generated text that fails validation all resolve to the deterministic sentence,
and the ``Explanation`` records which of these happened. The worker explains what is queued in
batches: on a CPU one decoding pass for several sentences costs little more than for one.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from inspect_app.explain.facts import Facts, facts_from_result
from inspect_app.explain.interface import Explanation
from inspect_app.explain.template import template_from_facts
from inspect_app.explain.validate import cut_to_sentences, validate

log = logging.getLogger(__name__)

VARIANTS = ("facts", "adapter", "template")
SOURCES = {"facts": "language-model", "adapter": "adapter", "template": "template"}
GATHER_S = 0.05  # how long the worker waits for more jobs to batch with the first: ~5 % of a sentence
CLOSE_JOIN_S = 0.2  # ``close`` waits this long for the worker threads (daemons) before it returns
CUT_AT_SHUTDOWN = "cut at shutdown"  # the fallback reason of explanations resolved by ``close``
_VERDICT_PREFIX = re.compile(r"^\s*(pass|fail|error)\s*[:.\-]\s*", re.IGNORECASE)


class Generator(Protocol):
    """Writes the raw sentences for results, several at once (see ``explain.generator``)."""

    source: str

    def generate_batch(self, results: list, max_seconds: float | None = None) -> list[str]: ...


def finish(raw: str, facts: Facts, source: str, seconds: float) -> Explanation:
    """The text to show for raw model output: cut to whole sentences, validated against the facts,
    prefixed with the Inspector's verdict; the deterministic sentence when validation fails."""
    body = _VERDICT_PREFIX.sub("", cut_to_sentences(raw)) if raw.strip() else ""
    check = validate(body, facts)
    if check.ok:
        return Explanation(f"{facts.verdict}: {body}", source, raw, None, seconds)
    return Explanation(template_from_facts(facts), "template", raw, f"validation: {check.reason}", seconds)


def _one_torch_thread() -> None:
    """The worker's torch operations run on one thread (torch keeps the count per calling thread).
    With a second multi-threaded team beside inspection's on two cores, inspection ran at 50
    instead of 85 images/s even while the explainer sat idle (benchmarks/NOTEBOOK.md, 2026-11-25)."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def _run_only_when_idle() -> None:
    """Let inspection have the CPU: the worker thread runs in Linux's SCHED_IDLE class, so it gets a
    core only when no inspection thread wants it, and a waking inspection thread preempts it at
    once. Nice +10 was not enough: with inspection saturating both cores, a language model at nice
    10 still cut inspection throughput by ~30 %, because inspection's two threads synchronise at
    every parallel step and one preempted thread stalls both (benchmarks/NOTEBOOK.md, 2026-11-25). Where
    SCHED_IDLE is missing the thread runs at nice +19; elsewhere this does nothing."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, tid, 19)
    except (AttributeError, OSError):
        pass


def _normal_priority(tid: int | None) -> None:
    """Take the worker out of ``SCHED_IDLE`` (best effort): once the service closes, the worker
    must finish its step and release the GIL at once, even with every core busy; in the idle
    class it may wait seconds for a core while the closing thread (and interpreter exit) waits
    for the GIL."""
    if tid is None:
        return
    try:
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass


@dataclass
class _Job:
    result: object
    facts: Facts
    future: Future
    started: float
    deadline: float


class ExplainerService:
    """See module docstring. ``variant``: "adapter" (soft tokens from the maps + facts), "facts"
    (facts-only prompt) or "template"; ``None`` is the default variant chosen by measurement."""

    def __init__(self, models_dir: str | Path | None = None, language: str = "en", timeout_s: float = 10.0,
                 max_queue: int = 8, batch_size: int = 8, variant: str | None = None, language_model: str | None = None,
                 allow_download: bool = False, generator_factory: Callable[[], Generator] | None = None):
        from inspect_app.explain.generator import DEFAULT_VARIANT, load_generator

        self.variant = variant or DEFAULT_VARIANT
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown explanation variant {self.variant!r}: choose one of {', '.join(VARIANTS)}")
        self.language = language
        self.timeout_s = timeout_s
        self.batch_size = max(1, batch_size)
        self.max_queue = max_queue
        self._factory = generator_factory or (lambda: load_generator(
            self.variant, models_dir=models_dir, language=language, language_model=language_model,
            allow_download=allow_download))
        self._generator: Generator | None = None
        self._load_error: str | None = None
        self._loaded = self.variant == "template"
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._closed = False
        self.counts = {"submitted": 0, "model": 0, "fallback": 0, "queue_full": 0, "timeout": 0,
                       "cut": 0}
        # Deadlines: one watchdog thread over the jobs in submission order (equal timeouts, so the
        # first pending job always has the earliest deadline), not a timer thread per job.
        self._pending: deque[_Job] = deque()
        self._wake = threading.Condition()
        self._worker = self._watchdog = None
        if self.variant != "template":
            self._worker = threading.Thread(target=self._run, name="explainer", daemon=True)
            self._watchdog = threading.Thread(target=self._watch, name="explainer-deadlines", daemon=True)
            self._worker.start()
            self._watchdog.start()

    # ------------------------------------------------------------------ public
    def submit(self, result) -> Future:
        """A future resolving to an ``Explanation``; never blocks the caller."""
        fut: Future = Future()
        facts = facts_from_result(result)
        start = time.perf_counter()
        self.counts["submitted"] += 1
        if self.variant == "template" or facts.verdict != "FAIL" or self._closed:
            fut.set_result(Explanation(template_from_facts(facts), "template", seconds=time.perf_counter() - start))
            return fut
        if self._loaded and self._generator is None:
            self._fallback_now(fut, facts, start, f"language model unavailable: {self._load_error}")
            return fut
        job = _Job(result, facts, fut, start, start + self.timeout_s)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.counts["queue_full"] += 1
            self._fallback_now(fut, facts, start, "explanation queue full")
            return fut
        with self._wake:
            self._pending.append(job)
            self._wake.notify()
        return fut

    def explain(self, result) -> Explanation:
        """Blocking convenience: submit and wait; never raises. The caller's own clock enforces the
        deadline: with the cores saturated the watchdog (or the GIL held by the idle-class worker)
        can be late, so when ``timeout_s`` has passed the caller resolves the job to the
        deterministic sentence itself instead of waiting on."""
        start = time.perf_counter()
        future = self.submit(result)
        try:
            return future.result(timeout=self.timeout_s)
        except Exception:  # TimeoutError here; any other failure of the job gets the same answer
            pass
        expl = Explanation(template_from_facts(facts_from_result(result)), "template",
                           fallback_reason=f"timeout after {self.timeout_s:g} s",
                           seconds=time.perf_counter() - start)
        with self._lock:
            if not future.done():
                self.counts["fallback"] += 1
                self.counts["timeout"] += 1
                future.set_result(expl)
                return expl
        try:
            return future.result(timeout=0)
        except Exception:
            return expl

    def close(self) -> None:
        """Stop the worker at once: queued and running jobs are cut, resolving to the deterministic
        sentence with ``fallback_reason`` "cut at shutdown" (a station's SIGTERM must not wait for
        a sentence). The worker is a daemon thread; its running generation is bounded by its own
        deadline and its text, if any, is discarded."""
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._cut(job)
        with self._wake:
            running = list(self._pending)
            self._pending.clear()
            self._wake.notify()
        for job in running:
            self._cut(job)
        if self._worker is not None:
            self._queue.put(None)
            _normal_priority(self._worker.native_id)  # an idle-class worker holding the GIL would stall the caller
            self._worker.join(timeout=CLOSE_JOIN_S)
        if self._watchdog is not None:
            self._watchdog.join(timeout=CLOSE_JOIN_S)

    def _cut(self, job: _Job) -> None:
        if self._resolve(job, Explanation(template_from_facts(job.facts), "template",
                                          fallback_reason=CUT_AT_SHUTDOWN)):
            self.counts["cut"] += 1

    def __enter__(self) -> ExplainerService:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _fallback_now(self, fut: Future, facts: Facts, start: float, reason: str) -> None:
        self.counts["fallback"] += 1
        fut.set_result(Explanation(template_from_facts(facts), "template", fallback_reason=reason,
                                   seconds=time.perf_counter() - start))

    def _resolve(self, job: _Job, expl: Explanation) -> bool:
        with self._lock:
            if job.future.done():
                return False
            expl.seconds = time.perf_counter() - job.started
            if expl.fallback_reason:
                self.counts["fallback"] += 1
            else:
                self.counts["model"] += 1
            job.future.set_result(expl)
            return True

    def _watch(self) -> None:
        """Resolve each job whose deadline passes before the worker has explained it."""
        while True:
            with self._wake:
                while self._pending and self._pending[0].future.done():
                    self._pending.popleft()
                if self._closed and not self._pending:
                    return
                if not self._pending:
                    self._wake.wait()
                    continue
                job = self._pending[0]
                wait = job.deadline - time.perf_counter()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                self._pending.popleft()
            self._expire(job)

    def _expire(self, job: _Job) -> None:
        if self._resolve(job, Explanation(template_from_facts(job.facts), "template",
                                          fallback_reason=f"timeout after {self.timeout_s:g} s")):
            self.counts["timeout"] += 1

    def _ensure_generator(self) -> Generator | None:
        if not self._loaded:
            try:
                self._generator = self._factory()
            except Exception as exc:  # missing or corrupt model files: the station goes on with the template
                self._load_error = f"{type(exc).__name__}: {exc}"
                log.warning("explanations fall back to the deterministic sentence: %s", self._load_error)
            self._loaded = True
        return self._generator

    def _take_batch(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` plus whatever else is queued or arrives within ``GATHER_S``, up to
        ``batch_size`` live jobs; and whether the stop sentinel was met."""
        jobs, stop = [first], False
        window_ends = time.perf_counter() + GATHER_S
        while len(jobs) < self.batch_size:
            try:
                job = self._queue.get(timeout=max(window_ends - time.perf_counter(), 0.0))
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            if not job.future.done():  # else it expired while queued
                jobs.append(job)
        return jobs, stop

    def _run(self) -> None:
        _run_only_when_idle()
        _one_torch_thread()
        self._ensure_generator()  # load at start, so the first FAIL does not wait for it
        while True:
            first = self._queue.get()
            if first is None:
                return
            if first.future.done():  # expired while queued
                continue
            jobs, stop = self._take_batch(first)
            self._explain(jobs)
            if stop:
                return

    def _explain(self, jobs: list[_Job]) -> None:
        generator = self._ensure_generator()
        if generator is None:
            for job in jobs:
                self._resolve(job, Explanation(template_from_facts(job.facts), "template",
                                               fallback_reason=f"language model unavailable: {self._load_error}"))
            return
        remaining = min(job.deadline for job in jobs) - time.perf_counter()
        if remaining <= 0:
            return  # the watchdog resolves them
        try:
            raws = generator.generate_batch([job.result for job in jobs], max_seconds=remaining)
        except Exception as exc:  # one bad generation must not stop the worker
            log.warning("explanation failed, using the deterministic sentence: %s", exc)
            for job in jobs:
                self._resolve(job, Explanation(template_from_facts(job.facts), "template",
                                               fallback_reason=f"generation failed: {type(exc).__name__}: {exc}"))
            return
        for job, raw in zip(jobs, raws, strict=False):  # jobs left without text: the watchdog's deadline
            self._resolve(job, finish(raw, job.facts, generator.source, 0.0))
