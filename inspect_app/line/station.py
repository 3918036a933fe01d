"""The station runner: camera -> trigger -> inspect -> store and sinks, unattended, through faults.

Threads and queues (all bounded where frames wait):

    capture ──InspectQueue──> inspect (Inspector.predict_batch) ──events──> output
                                                                  ^           |  store, MQTT, CSV, webhook
                                              ExplainerService ───┘ <─────────┘  (FAIL only, async)

- capture reads the source through ``CameraLink`` (reconnects with backoff, records gaps), skips
  and counts corrupt frames, and asks the trigger which frames are parts.
- inspect takes whatever is queued (up to ``batch_size``) and runs the one ``Inspector``.
- output sends the reject message first (the PLC is waiting), stores the result, publishes it,
  then hands FAIL results to the explainer; the explanation is attached when it comes back, so
  it never delays a verdict.
- a heartbeat writes ``status()`` to the store and the retained MQTT status topic.

``stop()`` stops capture, flushes the queues within ``shutdown_timeout_s`` and accounts for
anything it could not process.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from inspect_app.line.config import CsvConfig, MqttConfig, StationConfig, WebhookConfig
from inspect_app.line.memory import TRIM_EVERY_S, release_free_memory
from inspect_app.line.metrics import StationMetrics
from inspect_app.line.queues import InspectQueue, Job
from inspect_app.line.sinks import CsvSink, MqttLink, WebhookSink
from inspect_app.line.sources import CameraLink, Frame, PushSource, create_source
from inspect_app.line.triggers import Decision, ExternalTrigger, PartPresentTrigger, create_trigger
from inspect_app.results import EvidenceFor

if TYPE_CHECKING:
    from inspect_app.inspector import Inspector
    from inspect_app.results import InspectionResult

log = logging.getLogger(__name__)
ALARM_REPEAT_S = 5.0  # the same alarm kind goes to MQTT at most this often


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


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

    def message(self, station: str, lot: str | None) -> dict:
        return {"station": station, "seq": self.seq, "id": self.rid, "time": _iso(self.triggered_at),
                "trigger": self.trigger, "lot": lot, "triggered_at": self.triggered_at, "verdict_at": self.verdict_at,
                "trigger_to_verdict_ms": round(self.trigger_to_verdict_ms, 2), **self.result.to_dict()}


class Station:
    """One inspection station; see the module docstring. ``inspector``, ``store`` and
    ``explainer`` may be given (tests, the API); otherwise they are created from ``config`` in
    ``start()`` and closed by ``stop()``."""

    def __init__(self, config: StationConfig, *, inspector: Inspector | None = None, store: Any = None,
                 explainer: Any = None):
        self.config = config
        self.name = config.name
        self.metrics = StationMetrics(config.name, config.product)
        self.metrics_registry = self.metrics.registry
        self.inspector = inspector
        self.store = store
        self.explainer = explainer
        self._owns = {"store": store is None, "explainer": explainer is None}
        self.source = create_source(config.source)
        self.trigger_policy = create_trigger(config.trigger)
        self.queue = InspectQueue(config.pipeline.queue_size)
        self.link: CameraLink | None = None
        self.mqtt: MqttLink | None = None
        self.webhook: WebhookSink | None = None
        self.csv: CsvSink | None = None
        self.state = "created"
        self.finished = threading.Event()  # set when everything admitted has been through the output stage
        self._stop_capture = threading.Event()
        self._stop_heartbeat = threading.Event()
        self._events: queue.Queue[tuple] = queue.Queue()
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._verdict_times: deque[float] = deque(maxlen=1000)
        self._alarm_sent: dict[str, float] = {}
        self.started_at: float | None = None
        self.counts = {"captured": 0, "corrupt": 0, "triggered": 0, "dropped": 0, "rejected": 0, "admitted": 0,
                       "inspected": 0, "results": 0, "stored": 0, "store_failed": 0, "explaining": 0, "explained": 0,
                       "unprocessed_at_shutdown": 0, "explanations_unfinished": 0,
                       "PASS": 0, "FAIL": 0, "ERROR": 0}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Station:
        """Load what is missing, connect the sinks and start the threads. A failure here (no such
        product, store unreachable) closes whatever was opened and raises."""
        try:
            self._open()
        except BaseException:
            self._close_resources()
            self.state = "stopped"
            raise
        self.started_at = time.time()
        self.state = "running"
        for name, target in (("capture", self._capture), ("inspect", self._inspect), ("output", self._output),
                             ("heartbeat", self._heartbeat)):
            thread = threading.Thread(target=target, name=f"{self.name}-{name}", daemon=True)
            self._threads[name] = thread
            thread.start()
        cfg = self.config
        log.info("station %s running: product %s, source %s (%s), trigger %s", self.name, cfg.product,
                 cfg.source.uri, cfg.source.resolve_kind(), cfg.trigger.mode)
        return self

    def _open(self) -> None:
        cfg = self.config
        if self.inspector is None:
            from inspect_app.inspector import Inspector

            self.inspector = Inspector.load(cfg.product, cfg.models_dir, mode=cfg.mode)
        if self.store is None:
            from inspect_app.store import ResultsStore

            self.store = ResultsStore(cfg.store.url, images_dir=cfg.store.images_dir)
        cfg = self.config = self._with_product_settings(cfg)
        if self.csv is None and cfg.csv:
            self.csv = CsvSink(cfg.csv)
        if self.explainer is None and cfg.explain.enabled:
            try:
                from inspect_app.explain import ExplainerService

                self.explainer = ExplainerService(models_dir=cfg.models_dir, language=cfg.explain.language,
                                                  timeout_s=cfg.explain.timeout_s, max_queue=cfg.explain.max_queue,
                                                  variant=cfg.explain.variant)
            except Exception as exc:  # explanations are a help for operators, never a reason to stop a line
                log.exception("explanations unavailable")
                self.alarm("explainer_unavailable", f"explanations are off: {type(exc).__name__}: {exc}")
        if cfg.webhook:
            self.webhook = WebhookSink(cfg.webhook, self.metrics)
        if cfg.mqtt:
            self.mqtt = MqttLink(cfg.mqtt, self.name, self.metrics,
                                 on_trigger=lambda _payload: self.trigger("mqtt"),
                                 on_frame=lambda payload: self.push(payload, timeout=0))
            self.mqtt.status_payload = self.status
            self.mqtt.start()

    def _close_resources(self) -> None:
        if self.mqtt is not None:
            self.mqtt.close(self.status(), timeout=2.0)
        if self.webhook is not None:
            self.webhook.close(timeout=2.0)
        if self.explainer is not None and self._owns["explainer"]:
            self.explainer.close()
        if self.store is not None and self._owns["store"]:
            self.store.close()

    def _with_product_settings(self, cfg: StationConfig) -> StationConfig:
        """The product's settings saved from the UI: explanations on/off and language override the
        station file (they are the engineer's switch); saved sinks fill in sinks the file lacks."""
        try:
            saved = self.store.get_settings(cfg.product)
        except Exception:
            log.exception("product settings not readable: using the station config alone")
            return cfg
        update: dict = {}
        explain = {k: v for k, v in (("enabled", saved.get("explanations")), ("language", saved.get("language")))
                   if v is not None}
        if explain:
            update["explain"] = cfg.explain.model_copy(update=explain)
        models = {"mqtt": MqttConfig, "webhook": WebhookConfig, "csv": CsvConfig}
        for key, sink in (saved.get("sinks") or {}).items():
            if key in models and getattr(cfg, key) is None and sink:
                update[key] = models[key].model_validate(sink)
        if update:
            log.info("product settings from the store applied: %s", ", ".join(update))
        return cfg.model_copy(update=update)

    def stop(self, timeout: float | None = None) -> dict:
        """Stop capturing, flush the queues, and return the final status (with the accounting)."""
        if self.state != "running":
            return self.status()
        timeout = self.config.pipeline.shutdown_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.state = "stopping"
        self._stop_capture.set()
        self._join("capture", deadline)
        if not self.finished.wait(max(0.0, deadline - time.monotonic())):
            left = self.queue.take_all()
            with self._lock:
                self.counts["unprocessed_at_shutdown"] += len(left)
            if left:
                self.alarm("shutdown_unprocessed", f"{len(left)} queued frame(s) not inspected before the "
                                                   f"{timeout:.0f} s shutdown limit (parts {left[0].seq}..{left[-1].seq})")
        self._join("inspect", deadline + 5)
        self._events.put(("end",))  # in case the inspector thread could not say so itself
        self._join("output", deadline + 10)
        left = 0
        while True:  # results the output stage could not deliver in time
            try:
                left += self._events.get_nowait()[0] == "result"
            except queue.Empty:
                break
        if isinstance(self.source, PushSource):
            left += self.source.pending()  # pushed after capture had stopped
        with self._lock:
            self.counts["explanations_unfinished"] = self.counts["explaining"]
            self.counts["unprocessed_at_shutdown"] += left
        self._stop_heartbeat.set()
        self._join("heartbeat", time.monotonic() + 5)
        if self.webhook:
            self.webhook.close(timeout=max(1.0, deadline - time.monotonic()))
        if self.store is not None:
            self.store.flush(timeout=max(1.0, deadline - time.monotonic()))
        self.state = "stopped"
        final = self.status()
        if self.store is not None:
            try:
                self.store.update_station_status(self.name, final)
            except Exception:
                log.exception("final station status not stored")
        if self.mqtt:
            final["mqtt"]["unacknowledged"] = self.mqtt.close(final, timeout=max(2.0, deadline - time.monotonic()))
            final["mqtt"]["connected"] = False
            self.mqtt = None
        self.webhook = None
        self._close_resources()
        log.info("station %s stopped: %s", self.name, {k: final[k] for k in ("results", "stored", "rejected_parts", "dropped_frames")})
        return final

    def _join(self, name: str, deadline: float) -> None:
        thread = self._threads.get(name)
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ inputs from other threads
    def trigger(self, source: str = "http") -> dict:
        """External trigger (HTTP ``/trigger``, the MQTT trigger topic): inspect the next frame."""
        if self.state != "running":
            return {"accepted": False, "trigger": None, "reason": f"station is {self.state}"}
        if not isinstance(self.trigger_policy, ExternalTrigger):
            return {"accepted": False, "trigger": None,
                    "reason": f"trigger mode is {self.config.trigger.mode!r}, not 'external'"}
        self.trigger_policy.fire()
        self.metrics.triggers.labels(f"external-{source}").inc()
        return {"accepted": True, "trigger": self.trigger_policy.pending(), "reason": None}

    def push(self, data: bytes, name: str | None = None, timeout: float | None = None) -> dict:
        """One pushed image = one part (HTTP ``/frames``, the MQTT frame topic). Waits up to
        ``timeout`` s for room (backpressure), then refuses the part with an alarm."""
        if not isinstance(self.source, PushSource):
            return {"accepted": False, "part": None, "reason": "this station's source is not 'push'"}
        if self.state != "running":
            return {"accepted": False, "part": None, "reason": f"station is {self.state}"}
        timeout = self.config.pipeline.backpressure_s if timeout is None else timeout
        if self.source.push(data, name, timeout):
            return {"accepted": True, "part": None, "reason": None}
        seq = next(self._seq)
        self._reject(seq, "push", time.time(), "push queue full: image refused", name=name)
        return {"accepted": False, "part": seq, "reason": "queue full: the part was rejected"}

    # ------------------------------------------------------------------ capture
    def _admitted_enough(self) -> bool:
        n = self.config.max_frames
        return n is not None and self.counts["admitted"] >= n

    def _capture(self) -> None:
        self.link = CameraLink(self.source, self.config.source, self._stop_capture, on_state=self._camera_state,
                               on_gap=self._camera_gap)
        unsettled = 0
        try:
            for frame in self.link.frames():
                for triggered_at in self.trigger_policy.expired(time.time()):
                    self._reject(next(self._seq), "external", triggered_at,
                                 f"no camera frame within {self.config.trigger.timeout_s:.1f} s of the trigger")
                if frame is None:
                    continue
                self.metrics.frames_captured.inc()
                with self._lock:
                    self.counts["captured"] += 1
                if frame.error is not None:
                    self._corrupt(frame)
                    continue
                decision = (Decision(self.source.kind, frame.captured_at, droppable=False) if frame.part
                            else self.trigger_policy.on_frame(frame))
                if isinstance(self.trigger_policy, PartPresentTrigger) and self.trigger_policy.unsettled > unsettled:
                    unsettled = self.trigger_policy.unsettled
                    self.alarm("part_not_at_rest", f"a part left the view without coming to rest: not inspected "
                                                   f"({unsettled} so far); check still_fraction/still_frames")
                if decision is not None:
                    self._submit(frame, decision)
                if self._admitted_enough():
                    log.info("max frames (%d) admitted: capture stops", self.config.max_frames)
                    break
        except Exception as exc:  # keep the accounting straight even on a bug in a source
            log.exception("capture stopped by an unexpected error")
            self.alarm("capture_failed", f"capture stopped: {type(exc).__name__}: {exc}")
        finally:
            if isinstance(self.source, PushSource):  # accepted pushes are parts: inspect them too
                for frame in self.source.drain():
                    if frame.error is not None:
                        self._corrupt(frame)
                    else:
                        self._submit(frame, Decision("push", frame.captured_at, droppable=False))
            if isinstance(self.trigger_policy, ExternalTrigger):
                for triggered_at in self.trigger_policy.drain():
                    self._reject(next(self._seq), "external", triggered_at, "station stopped before a frame came")
            self.queue.close()

    def _corrupt(self, frame: Frame) -> None:
        self.metrics.corrupt_frames.inc()
        with self._lock:
            self.counts["corrupt"] += 1
            n = self.counts["corrupt"]
        log.warning("corrupt frame skipped (%d so far): %s", n, frame.error)
        if frame.part:  # a file or pushed image is a part: it must be rejected, not ignored
            self._reject(next(self._seq), self.source.kind, frame.captured_at, f"corrupt image: {frame.error}",
                         name=frame.name)

    def _submit(self, frame: Frame, decision: Decision) -> None:
        seq = next(self._seq)
        self.metrics.triggers.labels(decision.kind).inc()
        with self._lock:
            self.counts["triggered"] += 1
        job = Job(seq, frame, decision.kind, decision.triggered_at, decision.droppable)
        accepted, dropped = self.queue.put(job, timeout=0 if job.droppable else self.config.pipeline.backpressure_s)
        with self._lock:
            self.counts["admitted"] += int(accepted) - int(dropped is not None)
        self.metrics.queue_depth.labels("inspect").set(len(self.queue))
        if dropped is not None or (not accepted and job.droppable):
            self.metrics.frames_dropped.inc()
            with self._lock:
                self.counts["dropped"] += 1
        elif not accepted:
            self._reject(seq, decision.kind, decision.triggered_at,
                         f"inspection queue full for {self.config.pipeline.backpressure_s:.1f} s", name=frame.name)

    def _reject(self, seq: int, trigger: str, triggered_at: float, reason: str, name: str | None = None) -> None:
        """A triggered part that will not be inspected: stored as ERROR, sent to the reject topic."""
        from inspect_app.results import InspectionResult

        self.metrics.parts_rejected.labels(reason.split(":")[0].split(" within")[0][:40]).inc()
        with self._lock:
            self.counts["rejected"] += 1
            self.counts["admitted"] += 1
        self.alarm("part_rejected", f"part {seq} ({trigger}) rejected without inspection: {reason}")
        result = InspectionResult(name or f"{self.name}#{seq}", "ERROR", error=f"not inspected: {reason}",
                                  product=self.config.product, mode=self.inspector.mode if self.inspector else None,
                                  profile_version=self.inspector.profile_version if self.inspector else None)
        self._events.put(("result", LineResult(seq, result, None, trigger, triggered_at, time.time())))

    def _camera_state(self, state: str) -> None:
        self.metrics.camera_state.state(state)
        if state == "reconnecting" and self.link is not None:
            self.alarm("camera_lost", f"camera {self.config.source.uri} lost ({self.link.last_error}); reconnecting")

    def _camera_gap(self, gap_s: float) -> None:
        self.metrics.camera_gap.observe(gap_s)
        self.metrics.camera_reconnects.inc()
        log.info("camera reconnected after a %.1f s gap", gap_s)

    # ------------------------------------------------------------------ inspection
    def _inspect(self) -> None:
        from inspect_app.results import InspectionResult

        batch_size = self.config.pipeline.batch_size
        try:
            while True:
                jobs = self.queue.get_batch(batch_size, timeout=0.2)
                self.metrics.queue_depth.labels("inspect").set(len(self.queue))
                if not jobs:
                    if self.queue.closed and not len(self.queue):
                        return
                    continue
                names = [j.frame.name or f"{self.name}#{j.seq}" for j in jobs]
                t0 = time.perf_counter()
                try:
                    results = self.inspector.predict_batch([j.frame.image for j in jobs], names,
                                                           evidence=EvidenceFor.FAILS)
                except Exception as exc:  # one bad batch never stops the station
                    log.exception("inspection of %d frame(s) failed", len(jobs))
                    results = [InspectionResult(n, "ERROR", error=f"inspection failed: {type(exc).__name__}: {exc}",
                                                product=self.config.product) for n in names]
                per_frame = (time.perf_counter() - t0) / len(jobs)
                verdict_at = time.time()
                for job, result in zip(jobs, results):
                    self.metrics.inspection_latency.observe(per_frame)
                    self.metrics.trigger_to_verdict.observe(max(0.0, verdict_at - job.triggered_at))
                    self.metrics.inspections.labels(result.verdict).inc()
                    with self._lock:
                        self.counts["inspected"] += 1
                        self._verdict_times.append(verdict_at)
                    self._events.put(("result", LineResult(job.seq, result, job.frame.image, job.trigger,
                                                           job.triggered_at, verdict_at)))
                self.metrics.queue_depth.labels("output").set(self._events.qsize())
        finally:
            self._events.put(("end",))

    # ------------------------------------------------------------------ output
    def _output(self) -> None:
        ended = False
        end_deadline = None
        while True:
            if ended and (self.counts["explaining"] == 0 or time.monotonic() > end_deadline):
                break
            try:
                event = self._events.get(timeout=0.2)
            except queue.Empty:
                continue
            kind = event[0]
            try:
                if kind == "result":
                    self._deliver(event[1])
                elif kind == "explained":
                    self._attach_explanation(event[1], event[2])
                elif kind == "end" and not ended:
                    ended = True
                    end_deadline = time.monotonic() + self.config.explain.timeout_s + 2
            except Exception:  # a sink bug must not lose the following results
                log.exception("output stage failed on a %s event", kind)
        self.finished.set()

    def _deliver(self, lr: LineResult) -> None:
        res, cfg = lr.result, self.config
        if self.mqtt and res.verdict != "PASS":
            self.mqtt.publish("reject", {"station": self.name, "seq": lr.seq, "verdict": res.verdict,
                                         "score": res.score, "reason": res.error or "defect", "time": _iso(lr.triggered_at),
                                         "trigger": lr.trigger, "verdict_at": lr.verdict_at})
        try:
            lr.rid = self.store.add_result(res, station=self.name, lot=cfg.lot, image=lr.image,
                                           time=datetime.fromtimestamp(lr.triggered_at, UTC))
            self.metrics.results_stored.inc()
            with self._lock:
                self.counts["stored"] += 1
        except Exception as exc:
            log.exception("result %d not stored", lr.seq)
            self.metrics.sink_errors.labels("store").inc()
            with self._lock:
                self.counts["store_failed"] += 1
            self.alarm("store_failed", f"result {lr.seq} not stored: {type(exc).__name__}: {exc}")
        message = lr.message(self.name, cfg.lot)
        if self.mqtt:
            message["published_at"] = time.time()
            self.mqtt.publish("result", message)
        if self.csv:
            try:
                self.csv.write(message)
            except OSError as exc:
                self.metrics.sink_errors.labels("csv").inc()
                self.alarm("csv_failed", f"CSV {cfg.csv.path}: {exc}")
        if self.webhook:
            self.webhook.submit(message)
        with self._lock:
            self.counts["results"] += 1
            self.counts[res.verdict] = self.counts.get(res.verdict, 0) + 1
        if res.verdict == "FAIL" and self.explainer is not None:
            with self._lock:
                self.counts["explaining"] += 1
            future = self.explainer.submit(res)
            future.add_done_callback(lambda fut, lr=lr: self._events.put(("explained", lr, fut)))
        lr.image = None
        self.metrics.queue_depth.labels("output").set(self._events.qsize())
        n = cfg.max_frames
        if n is not None and self.counts["results"] >= n and self.counts["admitted"] <= self.counts["results"]:
            self._stop_capture.set()

    def _attach_explanation(self, lr: LineResult, future: Future) -> None:
        with self._lock:
            self.counts["explaining"] -= 1
        try:
            expl = future.result()
        except Exception:
            log.exception("explanation of part %d failed", lr.seq)
            return
        lr.result.explanation, lr.result.explanation_source = expl.text, expl.source
        self.metrics.explanations.labels(expl.source).inc()
        with self._lock:
            self.counts["explained"] += 1
        if lr.rid is not None:
            try:
                self.store.set_explanation(lr.rid, expl.text, expl.source)
            except Exception:
                log.exception("explanation of result %s not stored", lr.rid)
        if self.mqtt:
            self.mqtt.publish("explanation", {"station": self.name, "seq": lr.seq, "id": lr.rid, "text": expl.text,
                                              "source": expl.source, "fallback_reason": expl.fallback_reason,
                                              "seconds": round(expl.seconds, 3), "verdict_at": lr.verdict_at,
                                              "explained_at": time.time()})

    # ------------------------------------------------------------------ status
    def alarm(self, kind: str, message: str) -> None:
        """Log, count, record in the store (which folds repeats) and publish (at most every 5 s per kind)."""
        log.warning("alarm %s: %s", kind, message)
        self.metrics.alarms.labels(kind).inc()
        if self.store is not None:
            try:
                self.store.raise_alarm(kind, message, station=self.name)
            except Exception:
                log.exception("alarm not stored")
        now = time.monotonic()
        if self.mqtt and now - self._alarm_sent.get(kind, -ALARM_REPEAT_S) >= ALARM_REPEAT_S:
            self._alarm_sent[kind] = now
            self.mqtt.publish("alarm", {"station": self.name, "kind": kind, "message": message, "time": _iso(time.time())})

    def _heartbeat(self) -> None:
        trimmed = time.monotonic()
        while not self._stop_heartbeat.wait(self.config.pipeline.heartbeat_s):
            if time.monotonic() - trimmed >= TRIM_EVERY_S:  # see line.memory: keeps RSS flat
                release_free_memory()
                trimmed = time.monotonic()
            status = self.status()
            try:
                self.store.update_station_status(self.name, status)
            except Exception:
                log.exception("heartbeat not stored")
            if self.mqtt:
                self.mqtt.publish("status", status, retain=True)

    def status(self) -> dict:
        """JSON-safe snapshot: what the heartbeat stores and the status topic carries."""
        with self._lock:
            counts = dict(self.counts)
            now = time.time()
            recent = [t for t in self._verdict_times if now - t <= 10.0]
        link = self.link
        inspected = counts["PASS"] + counts["FAIL"]
        queues = {"inspect": len(self.queue), "output": self._events.qsize()}
        if isinstance(self.source, PushSource):
            queues["push"] = self.source.pending()
        if self.webhook:
            queues["webhook"] = self.webhook.pending()
        for name, depth in queues.items():
            self.metrics.queue_depth.labels(name).set(depth)
        return {
            "station": self.name, "product": self.config.product, "state": self.state,
            "started_at": _iso(self.started_at) if self.started_at else None,
            "uptime_s": round(now - self.started_at, 1) if self.started_at else 0.0,
            "source": {"kind": self.config.source.resolve_kind(), "uri": self.config.source.uri},
            "trigger": self.config.trigger.mode,
            "camera": {"state": link.state if link else "disconnected", "reconnects": link.reconnects if link else 0,
                       "gaps_s": [round(g, 2) for g in list(link.gaps)[-10:]] if link else [],
                       "total_gap_s": round(link.total_gap_s, 2) if link else 0.0,
                       "current_gap_s": round(link.current_gap_s(), 2) if link else 0.0,
                       "last_error": link.last_error if link else None},
            "fps": round(len(recent) / 10.0, 2),
            "counts": {v: counts[v] for v in ("PASS", "FAIL", "ERROR")},
            "defect_rate": round(counts["FAIL"] / inspected, 4) if inspected else None,
            "frames_captured": counts["captured"], "corrupt_frames": counts["corrupt"],
            "triggered": counts["triggered"], "dropped_frames": counts["dropped"], "rejected_parts": counts["rejected"],
            "parts_not_at_rest": (self.trigger_policy.unsettled if isinstance(self.trigger_policy, PartPresentTrigger)
                                  else None),
            "inspected": counts["inspected"], "results": counts["results"], "stored": counts["stored"],
            "store_failed": counts["store_failed"], "queues": queues,
            "explanations": {"done": counts["explained"], "pending": counts["explaining"],
                             "unfinished_at_shutdown": counts["explanations_unfinished"]},
            "unprocessed_at_shutdown": counts["unprocessed_at_shutdown"],
            "mqtt": None if self.mqtt is None else {
                "connected": self.mqtt.connected.is_set(), "published": self.mqtt.published,
                "published_results": self.mqtt.published_results, "unacknowledged": self.mqtt.unacknowledged(),
                "refused": self.mqtt.refused},
        }
