"""The output stage: every result leaves the station here, one at a time, in the order the line
needs it: the reject message first (the PLC is waiting), then the store, then the result topic,
CSV and webhook. FAIL results then go to the explainer; the explanation is attached when it
comes back (stored and published), so it never delays a verdict.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from inspect_app.line.config import StationConfig
from inspect_app.line.health import Alarms, iso_time
from inspect_app.line.metrics import StationMetrics
from inspect_app.line.sinks import Sinks
from inspect_app.results import InspectionResult, Verdict

if TYPE_CHECKING:
    from inspect_app.explain import ExplainerService, Explanation
    from inspect_app.store import ResultsStore

log = logging.getLogger(__name__)
END_GRACE_S = 2.0  # after inspection ended, explanations get their own timeout plus this to come back


@dataclass
class LineResult:
    """A result on its way through the output stage."""

    seq: int
    result: InspectionResult
    image: np.ndarray | None
    trigger: str
    triggered_at: float
    verdict_at: float
    rid: int | None = None

    @property
    def trigger_to_verdict_ms(self) -> float:
        return (self.verdict_at - self.triggered_at) * 1000

    def message(self, station: str, lot: str | None) -> dict[str, Any]:
        return {"station": station, "seq": self.seq, "id": self.rid, "time": iso_time(self.triggered_at),
                "trigger": self.trigger, "lot": lot, "triggered_at": self.triggered_at, "verdict_at": self.verdict_at,
                "trigger_to_verdict_ms": round(self.trigger_to_verdict_ms, 2), **self.result.to_dict()}


@dataclass(frozen=True)
class _Explained:
    line_result: LineResult
    future: Future[Explanation]


class _InspectionEnded:
    """No more results will come from inspection."""


class OutputStage:
    """Runs on the station's output thread (``run``). ``finished`` is set when everything put
    here has gone out and the explanations came back (or ran out of time); ``stop_capture`` is
    set once ``max_frames`` results went out and nothing admitted is still on its way."""

    def __init__(self, config: StationConfig, metrics: StationMetrics, store: ResultsStore, sinks: Sinks,
                 explainer: ExplainerService | None, alarms: Alarms, *, stop_capture: threading.Event,
                 finished: threading.Event):
        self.config, self.metrics, self.store, self.sinks = config, metrics, store, sinks
        self.explainer, self.alarms = explainer, alarms
        self.stop_capture, self.finished = stop_capture, finished
        self._events: queue.Queue[LineResult | _Explained | _InspectionEnded] = queue.Queue()

    def put(self, result: LineResult) -> None:
        self._events.put(result)
        self.metrics.queue_depth.labels("output").set(self._events.qsize())

    def end(self) -> None:
        """Inspection is over (said by the inspect thread, and again by ``stop`` in case it could not)."""
        self._events.put(_InspectionEnded())

    def pending(self) -> int:
        return self._events.qsize()

    def take_undelivered(self) -> int:
        """After ``run`` returned: empty the queue and count the results that never went out."""
        left = 0
        while True:
            try:
                left += isinstance(self._events.get_nowait(), LineResult)
            except queue.Empty:
                return left

    def run(self) -> None:
        end_deadline: float | None = None
        while end_deadline is None or (self.metrics.snapshot().explaining and time.monotonic() <= end_deadline):
            try:
                event = self._events.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                if isinstance(event, LineResult):
                    self._deliver(event)
                elif isinstance(event, _Explained):
                    self._attach_explanation(event.line_result, event.future)
                elif end_deadline is None:
                    end_deadline = time.monotonic() + self.config.explain.timeout_s + END_GRACE_S
            except Exception:  # a sink bug must not lose the following results
                log.exception("output stage failed on a %s", type(event).__name__)
        self.finished.set()

    def _deliver(self, lr: LineResult) -> None:
        res, cfg, mqtt = lr.result, self.config, self.sinks.mqtt
        if mqtt and res.verdict != Verdict.PASS:
            mqtt.publish("reject", {"station": cfg.name, "seq": lr.seq, "verdict": res.verdict, "score": res.score,
                                    "reason": res.error or "defect", "time": iso_time(lr.triggered_at),
                                    "trigger": lr.trigger, "verdict_at": lr.verdict_at})
        stored = False
        try:
            lr.rid = self.store.add_result(res, station=cfg.name, lot=cfg.lot, image=lr.image,
                                           time=datetime.fromtimestamp(lr.triggered_at, UTC))
            stored = True
        except Exception as exc:
            log.exception("result %d not stored", lr.seq)
            self.alarms.raise_alarm("store_failed", f"result {lr.seq} not stored: {type(exc).__name__}: {exc}")
        message = lr.message(cfg.name, cfg.lot)
        if mqtt:
            message["published_at"] = time.time()
            mqtt.publish("result", message)
        if self.sinks.csv:
            try:
                self.sinks.csv.write(message)
            except OSError as exc:
                self.metrics.sink_errors.labels("csv").inc()
                self.alarms.raise_alarm("csv_failed", f"CSV {self.sinks.csv.path}: {exc}")
        if self.sinks.webhook:
            self.sinks.webhook.submit(message)
        explain = res.verdict == Verdict.FAIL and self.explainer is not None
        with self.metrics.lock:  # one update: a snapshot never sees the result without its store outcome
            if stored:
                self.metrics.results_stored.inc()
            else:
                self.metrics.sink_errors.labels("store").inc()
            self.metrics.results.labels(res.verdict).inc()
            if explain:
                self.metrics.explanations_pending.inc()
        if explain and self.explainer is not None:
            self.explainer.submit(res).add_done_callback(functools.partial(self._explained, lr))
        lr.image = None
        self.metrics.queue_depth.labels("output").set(self._events.qsize())
        n = cfg.max_frames
        if n is not None:
            counts = self.metrics.snapshot()
            if counts.results >= n and counts.admitted <= counts.results:
                self.stop_capture.set()

    def _explained(self, lr: LineResult, future: Future[Explanation]) -> None:
        """The explainer's callback (on its thread): the output thread attaches the explanation."""
        self._events.put(_Explained(lr, future))

    def _attach_explanation(self, lr: LineResult, future: Future[Explanation]) -> None:
        try:
            expl = future.result()
        except Exception:
            self.metrics.explanations_pending.dec()
            log.exception("explanation of part %d failed", lr.seq)
            return
        with self.metrics.lock:
            self.metrics.explanations_pending.dec()
            self.metrics.explanations.labels(expl.source).inc()
        lr.result.explanation, lr.result.explanation_source = expl.text, expl.source
        if lr.rid is not None:
            try:
                self.store.set_explanation(lr.rid, expl.text, expl.source)
            except Exception:
                log.exception("explanation of result %s not stored", lr.rid)
        if self.sinks.mqtt:
            self.sinks.mqtt.publish("explanation", {
                "station": self.config.name, "seq": lr.seq, "id": lr.rid, "text": expl.text, "source": expl.source,
                "fallback_reason": expl.fallback_reason, "seconds": round(expl.seconds, 3),
                "verdict_at": lr.verdict_at, "explained_at": time.time()})
