"""The output stage: every result leaves the station here, one at a time, in the order the line
needs it: the reject message first (the PLC is waiting), then the record (store, or the spool
while the store is away: ``line.ledger``), then the frame's acknowledgement (a folder file moves
to ``done/`` only now), then the result topic with the stored id, CSV and webhook. A spooled
result is published when the replay gives it its id, never with ``id: null``.

A FAIL is recorded with the instant template sentence and goes to the explainer; a better
sentence replaces it (stored and published) when it comes back, so it never delays a verdict,
and an explanation cut at shutdown leaves the template sentence in place.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from inspect_app.line.config import StationConfig
from inspect_app.line.health import Alarms, iso_time
from inspect_app.line.ledger import Recorded, ResultLedger
from inspect_app.line.metrics import StationMetrics
from inspect_app.line.sinks import Sinks
from inspect_app.line.sources import Frame
from inspect_app.line.spool import SpoolEntry
from inspect_app.results import InspectionResult, Verdict

if TYPE_CHECKING:
    from inspect_app.explain import Explainer, Explanation

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
    key: str  # the frame's identity (``Frame.key``, or the station run's boot id and part number)
    frame: Frame | None = None  # acknowledged to the source once the result is recorded
    rid: int | None = None

    @property
    def trigger_to_verdict_ms(self) -> float:
        return (self.verdict_at - self.triggered_at) * 1000

    def message(self, station: str, lot: str | None) -> dict[str, Any]:
        return {"station": station, "seq": self.seq, "id": self.rid, "frame_key": self.key,
                "time": iso_time(self.triggered_at),
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
    here has gone out and the explanations came back (or ran out of time, or were cut by
    ``cut_explanations``); ``stop_capture`` is set once ``max_frames`` results went out and
    nothing admitted is still on its way. ``acknowledge(frame)`` tells the source a frame's
    result is recorded."""

    def __init__(self, config: StationConfig, metrics: StationMetrics, ledger: ResultLedger, sinks: Sinks,
                 explainer: Explainer | None, alarms: Alarms, *, acknowledge: Callable[[Frame], None],
                 stop_capture: threading.Event, finished: threading.Event):
        self.config, self.metrics, self.ledger, self.sinks = config, metrics, ledger, sinks
        self.explainer, self.alarms, self.acknowledge = explainer, alarms, acknowledge
        self.stop_capture, self.finished = stop_capture, finished
        self._cut = threading.Event()
        self._events: queue.Queue[LineResult | _Explained | _InspectionEnded] = queue.Queue()
        ledger.on_replayed = self._replayed

    def cut_explanations(self) -> None:
        """Shutdown: stop waiting for explanations; their results keep the template sentence."""
        self._cut.set()

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
        while end_deadline is None or (self.metrics.snapshot().explaining and time.monotonic() <= end_deadline
                                       and not self._cut.is_set()):
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
        cut = self.metrics.snapshot().explaining
        if cut:
            with self.metrics.lock:
                self.metrics.explanations_cut.inc(cut)
                self.metrics.explanations_pending.dec(cut)
            log.info("%d explanation(s) cut at shutdown: their results keep the template sentence", cut)
        self.finished.set()

    def _deliver(self, lr: LineResult) -> None:
        res, cfg, mqtt = lr.result, self.config, self.sinks.mqtt
        if mqtt and res.verdict != Verdict.PASS:
            mqtt.publish("reject", {"station": cfg.name, "seq": lr.seq, "frame_key": lr.key, "verdict": res.verdict,
                                    "score": res.score, "reason": res.error or "defect",
                                    "time": iso_time(lr.triggered_at), "trigger": lr.trigger,
                                    "verdict_at": lr.verdict_at})
        explain = res.verdict == Verdict.FAIL and self.explainer is not None
        if explain:
            self._add_template(res)
        message = lr.message(cfg.name, cfg.lot)
        outcome, lr.rid = self.ledger.record(res, key=lr.key, lot=cfg.lot, triggered_at=lr.triggered_at,
                                             image=lr.image, message=message)
        if outcome != Recorded.FAILED and lr.frame is not None:
            self.acknowledge(lr.frame)
        if outcome == Recorded.STORED:
            message["id"] = lr.rid
            self._publish_result(message, lr.rid)
        if self.sinks.csv:
            try:
                self.sinks.csv.write(message)
            except OSError as exc:
                self.metrics.sink_errors.labels("csv").inc()
                self.alarms.raise_alarm("csv_failed", f"CSV {self.sinks.csv.path}: {exc}")
        if self.sinks.webhook:
            self.sinks.webhook.submit(message)
        with self.metrics.lock:  # one update: a snapshot never sees the result without its record outcome
            if outcome == Recorded.STORED:
                self.metrics.results_stored.inc()
            elif outcome == Recorded.FAILED:
                self.metrics.sink_errors.labels("store").inc()
            self.metrics.results.labels(res.verdict).inc()
            if explain:
                self.metrics.explanations_pending.inc()
        if explain and self.explainer is not None:
            self.explainer.submit(res).add_done_callback(functools.partial(self._explained, lr))
        lr.image, lr.frame = None, None
        self.metrics.queue_depth.labels("output").set(self._events.qsize())
        n = cfg.max_frames
        if n is not None:
            counts = self.metrics.snapshot()
            if counts.results >= n and counts.admitted <= counts.results:
                self.stop_capture.set()

    def _add_template(self, result: InspectionResult) -> None:
        """The instant sentence, recorded with the FAIL (a better one replaces it later)."""
        from inspect_app.explain import template_explanation

        try:
            result.explanation = template_explanation(result, language=self.config.explain.language)
            result.explanation_source = "template"
        except Exception:  # a missing translation must not cost the result
            log.exception("template explanation failed")

    def _publish_result(self, message: dict[str, Any], rid: int | None) -> None:
        if self.sinks.mqtt:
            message["published_at"] = time.time()
            self.sinks.mqtt.publish("result", message, rid=rid)

    def _replayed(self, entry: SpoolEntry, rid: int) -> None:
        """A spooled result reached the store (replay thread): publish it now, with its id."""
        self._publish_result({**entry.message, "id": rid, "replayed": True}, rid)

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
        already_recorded = expl.source == "template" and lr.result.explanation == expl.text
        lr.result.explanation, lr.result.explanation_source = expl.text, expl.source
        if lr.rid is not None and not already_recorded:
            try:
                self.ledger.store.set_explanation(lr.rid, expl.text, expl.source)
            except Exception:
                log.exception("explanation of result %s not stored", lr.rid)
        if self.sinks.mqtt:
            self.sinks.mqtt.publish("explanation", {
                "station": self.config.name, "seq": lr.seq, "id": lr.rid, "text": expl.text, "source": expl.source,
                "fallback_reason": expl.fallback_reason, "seconds": round(expl.seconds, 3),
                "verdict_at": lr.verdict_at, "explained_at": time.time()})
