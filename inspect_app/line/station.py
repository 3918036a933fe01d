"""The station runner: camera -> trigger -> inspect -> store and sinks, unattended, through faults.

Threads and queues (all bounded where frames wait), one module each:

    capture ──InspectQueue──> inspect (Inspector.predict_batch) ──results──> output
                                                                   ^           |  store, MQTT, CSV, webhook
                                               explainer ─────────┘ <─────────┘  (FAIL only, async)

- ``line.capture``: the source through ``CameraLink``, corrupt frames, triggers, rejected parts.
- ``line.inspection``: whatever is queued (up to ``batch_size``) through the one ``Inspector``.
- ``line.output``: reject message, store, result topic, CSV, webhook; explanations when they come.
- ``line.health``: alarms and a heartbeat that writes ``status()`` to the store and the retained
  MQTT status topic.

- ``line.ledger``: each result recorded once (store, or the spool while the store is away);
  its thread replays the spool and writes back MQTT acknowledgements.

This module starts and stops them and answers the outside world (``trigger``, ``push``,
``status``). ``start()`` claims the station's name (a live station of the same name is refused,
a dead one taken over) and publishes again the results a crash left unacknowledged. ``stop()``
stops capture, inspects what is queued within ``shutdown_timeout_s``, cuts the explanations
still running (their results keep the template sentence) and accounts for anything it could not
process (a folder's files stay for the next start). Every count comes from ``line.metrics``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from inspect_app.line.capture import Capture
from inspect_app.line.config import StationConfig
from inspect_app.line.health import Alarms, VerdictRate, iso_time, run_heartbeat
from inspect_app.line.inspection import LineInspector, run_inspection
from inspect_app.line.ledger import ResultLedger
from inspect_app.line.metrics import StationMetrics
from inspect_app.line.output import OutputStage
from inspect_app.line.profile_reload import ReloadingInspector
from inspect_app.line.queues import InspectQueue
from inspect_app.line.sinks import CsvSink, MqttLink, Sinks, WebhookSink
from inspect_app.line.sources import FolderSource, PushSource, create_source
from inspect_app.line.spool import Spool
from inspect_app.line.triggers import ExternalTrigger, PartPresentTrigger, create_trigger
from inspect_app.product_settings import SINK_SETTINGS
from inspect_app.results import Verdict

if TYPE_CHECKING:
    from inspect_app.explain import Explainer
    from inspect_app.store import LineStore, ResultsStore

log = logging.getLogger(__name__)
DEFAULT_SPOOL_DIR = Path("data/spool")
STOP_RESERVE_S = 1.0  # of the shutdown time, kept for delivering results and closing the sinks


def lease_stale_after_s(heartbeat_s: float) -> float:
    """A station name whose holder has not renewed it for this long is taken over."""
    return max(5.0, 3 * heartbeat_s)


def inspector_version(inspector: LineInspector | None) -> str | None:
    """The profile version the station judges with now (None before it has loaded one)."""
    return inspector.profile_version if inspector is not None else None


class StationState(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class TriggerAnswer(TypedDict):
    accepted: bool
    trigger: int | None  # external triggers now waiting for a frame
    reason: str | None  # why it was refused


class PushAnswer(TypedDict):
    accepted: bool
    part: int | None  # the part number of a refused image (it gets an ERROR result)
    reason: str | None


class Station:
    """One inspection station; see the module docstring. ``inspector``, ``store`` and
    ``explainer`` may be given (tests, the API); otherwise they are created from ``config`` in
    ``start()`` and closed by ``stop()``."""

    def __init__(self, config: StationConfig, *, inspector: LineInspector | None = None,
                 store: LineStore | None = None, explainer: Explainer | None = None):
        self.config = config
        self.name = config.name
        self.metrics = StationMetrics(config.name, config.product)
        self.metrics_registry = self.metrics.registry
        self.inspector = inspector
        self.store = store
        self.explainer = explainer
        self._owned_store: ResultsStore | None = None  # opened here from the config, so closed here
        self._owns_explainer = explainer is None
        self.source = create_source(config.source)
        self.trigger_policy = create_trigger(config.trigger)
        self.queue = InspectQueue(config.pipeline.queue_size)
        self.sinks = Sinks()
        self.alarms = Alarms(self.name, self.metrics, self.sinks)
        self.rate = VerdictRate()
        self.state = StationState.CREATED
        self.finished = threading.Event()  # set when everything admitted has been through the output stage
        self.started_at: float | None = None
        self._stop_capture = threading.Event()
        self._stop_heartbeat = threading.Event()
        self._part_numbers = itertools.count(1)
        self._threads: dict[str, threading.Thread] = {}
        self._capture: Capture | None = None
        self._output: OutputStage | None = None
        self.run_id = uuid.uuid4().hex[:16]  # this run: the name lease's owner and the camera frames' boot id
        self._lease_held = False
        self._ledger: ResultLedger | None = None
        self._spool: Spool | None = None
        self._stop_ledger = threading.Event()
        self._inspection_done = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Station:
        """Load what is missing, connect the sinks and start the threads. A failure here (no such
        product, store unreachable) closes whatever was opened and raises."""
        try:
            inspector, store = self._open()
        except BaseException:
            self._close_resources()
            self.state = StationState.STOPPED
            raise
        cfg = self.config
        ledger = self._ledger
        assert ledger is not None
        output = self._output = OutputStage(cfg, self.metrics, ledger, self.sinks, self.explainer, self.alarms,
                                            acknowledge=self.source.acknowledge, stop_capture=self._stop_capture,
                                            finished=self.finished)
        capture = self._capture = Capture(cfg, self.source, self.trigger_policy, self.queue, output, self.metrics,
                                          self.alarms, inspector, self._part_numbers, self._stop_capture, self.run_id)
        self.started_at = time.time()
        self.state = StationState.RUNNING
        threads: dict[str, Callable[[], None]] = {
            "capture": capture.run,
            "inspect": functools.partial(self._run_inspection, inspector, output),
            "output": output.run,
            "heartbeat": functools.partial(run_heartbeat, self.name, self.status, store, self.sinks,
                                           cfg.pipeline.heartbeat_s, self._stop_heartbeat, self._renew_lease),
            "ledger": functools.partial(ledger.run, self._stop_ledger)}
        for name, target in threads.items():
            thread = threading.Thread(target=target, name=f"{self.name}-{name}", daemon=True)
            self._threads[name] = thread
            thread.start()
        log.info("station %s running: product %s, source %s (%s), trigger %s", self.name, cfg.product,
                 cfg.source.uri, cfg.source.resolve_kind(), cfg.trigger.mode)
        return self

    def _run_inspection(self, inspector: LineInspector, output: OutputStage) -> None:
        try:
            run_inspection(self.name, self.config.product, inspector, self.queue, self.config.pipeline.batch_size,
                           output, self.metrics, self.rate)
        finally:
            self._inspection_done.set()

    def _open(self) -> tuple[LineInspector, LineStore]:
        cfg = self.config
        if self.store is None:
            from inspect_app.store import ResultsStore

            self.store = self._owned_store = ResultsStore(cfg.store.url, images_dir=cfg.store.images_dir)
        store = self.store
        store.claim_station(self.name, self.run_id, lease_stale_after_s(cfg.pipeline.heartbeat_s))
        self._lease_held = True
        if self.inspector is None:
            self.inspector = self._load_inspector(cfg)
        self.alarms.store = store
        cfg = self.config = self._with_product_settings(cfg, store)
        self._spool = Spool(cfg.store.spool or DEFAULT_SPOOL_DIR / f"{self.name}.db")
        ledger = self._ledger = ResultLedger(self.name, store, self._spool, self.metrics, self.alarms,
                                             publish_pending=cfg.mqtt is not None)
        if isinstance(self.source, FolderSource):
            self.source.is_recorded = ledger.recorded
            self.source.on_already_recorded = lambda _path: self.metrics.already_recorded.inc()
            self.source.on_ignored = lambda _path: self.metrics.files_ignored.inc()
        if cfg.csv:
            self.sinks.csv = CsvSink(cfg.csv)
        if cfg.webhook:
            self.sinks.webhook = WebhookSink(cfg.webhook, self.metrics)
        if cfg.mqtt:
            mqtt = self.sinks.mqtt = MqttLink(cfg.mqtt, self.name, self.metrics,
                                              on_trigger=lambda _payload: self.trigger("mqtt"),
                                              on_frame=lambda payload: self.push(payload, timeout=0))
            mqtt.status_payload = self.status
            mqtt.start()
            ledger.take_acknowledged = mqtt.take_acknowledged
            self._publish_unacknowledged(mqtt, store)
        if self.explainer is None and cfg.explain.enabled:
            try:
                from inspect_app.explain import ExplainerService

                self.explainer = ExplainerService(models_dir=cfg.models_dir, language=cfg.explain.language,
                                                  timeout_s=cfg.explain.timeout_s, max_queue=cfg.explain.max_queue,
                                                  variant=cfg.explain.variant)
            except Exception as exc:  # explanations are a help for operators, never a reason to stop a line
                log.exception("explanations unavailable")
                self.alarms.raise_alarm("explainer_unavailable", f"explanations are off: {type(exc).__name__}: {exc}")
        return self.inspector, self.store

    def _load_inspector(self, cfg: StationConfig) -> LineInspector:
        """The product's inspector; one that follows its profile file (``line.profile_reload``)
        unless ``pipeline.profile_check_s`` is 0."""
        from inspect_app.edge.loading import open_inspector
        from inspect_app.inspector_cache import InspectorCache

        def load() -> LineInspector:
            return open_inspector(cfg.product, cfg.models_dir, model_dir=cfg.model_dir, runtime=cfg.runtime,
                                  mode=cfg.mode)

        inspector = load()
        if not cfg.pipeline.profile_check_s:
            return inspector
        files = InspectorCache(cfg.models_dir, runtime=cfg.runtime, model_dir=cfg.model_dir)
        return ReloadingInspector(
            inspector, lambda: files.profile_version(cfg.product), load, check_every_s=cfg.pipeline.profile_check_s,
            on_reload=lambda old, new: self.metrics.profile_reloads.inc(),
            on_failure=lambda exc: self.alarms.raise_alarm(
                "profile_reload_failed", f"the changed profile of {cfg.product} could not be loaded, the station "
                f"keeps version {inspector_version(self.inspector)}: {type(exc).__name__}: {exc}"))

    @staticmethod
    def _with_product_settings(cfg: StationConfig, store: LineStore) -> StationConfig:
        """The product's settings saved from the UI: explanations on/off and language override the
        station file (they are the engineer's switch); saved sinks fill in sinks the file lacks."""
        try:
            saved = store.get_settings(cfg.product)
        except Exception:
            log.exception("product settings not readable: using the station config alone")
            return cfg
        update: dict[str, Any] = {}
        explain = {k: v for k, v in (("enabled", saved.get("explanations")), ("language", saved.get("language")))
                   if v is not None}
        if explain:
            update["explain"] = cfg.explain.model_copy(update=explain)
        for key, sink in (saved.get("sinks") or {}).items():
            if key in SINK_SETTINGS and getattr(cfg, key) is None and sink:
                update[key] = SINK_SETTINGS[key].model_validate(sink)
        if update:
            log.info("product settings from the store applied: %s", ", ".join(update))
        return cfg.model_copy(update=update)

    def _publish_unacknowledged(self, mqtt: MqttLink, store: LineStore) -> None:
        """Results of an earlier run whose MQTT message the broker never acknowledged (a crash took
        paho's in-memory outbox): published again with their stored id, so a consumer that did
        get them de-duplicates on the id."""
        again = store.pending_publication(self.name, limit=100_000)
        for row in again:
            mqtt.publish("result", {**row.to_dict(), "redelivered": True}, rid=row.id)
        if again:
            log.info("%d result(s) of an earlier run published again (unacknowledged before it stopped)", len(again))

    def _renew_lease(self) -> None:
        if self.store is None or not self._lease_held:
            return
        try:
            if not self.store.renew_station(self.name, self.run_id):
                self.alarms.raise_alarm("station_name_taken", f"another station took over the name {self.name!r} "
                                        "(this one's heartbeat was late): stop one of them")
        except Exception:
            log.exception("station name lease not renewed")

    def _close_resources(self) -> None:
        if self.sinks.mqtt is not None:
            self.sinks.mqtt.close(self.status(), timeout=2.0)
            self.sinks.mqtt = None
        if self.sinks.webhook is not None:
            self.sinks.webhook.close(timeout=2.0)
            self.sinks.webhook = None
        if self.explainer is not None and self._owns_explainer:
            self.explainer.close()
        self._stop_ledger.set()
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._lease_held and self.store is not None:
            try:
                self.store.release_station(self.name, self.run_id)
            except Exception:
                log.exception("station name lease not released (the next start takes it over)")
            self._lease_held = False
        if self._owned_store is not None:
            self._owned_store.close()

    def stop(self, timeout: float | None = None) -> dict[str, Any]:
        """Stop capturing, inspect what is queued, deliver, and return the final status (with the
        accounting), all within ``timeout`` (default ``shutdown_timeout_s``): explanations still
        running when the time is nearly up are cut (their results keep the template sentence);
        queued frames not inspected by then are counted, and a folder's files among them stay
        for the next start."""
        output = self._output
        if self.state != StationState.RUNNING or output is None:
            return self.status()
        timeout = self.config.pipeline.shutdown_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.state = StationState.STOPPING
        self._stop_capture.set()
        self._join("capture", deadline - STOP_RESERVE_S)
        if not self._inspection_done.wait(max(0.0, deadline - STOP_RESERVE_S - time.monotonic())):
            queued = self.queue.take_all()
            if queued:
                self.metrics.unprocessed_at_shutdown.inc(len(queued))
                self.alarms.raise_alarm("shutdown_unprocessed", f"{len(queued)} queued frame(s) not inspected before "
                                        f"the {timeout:g} s shutdown limit (parts {queued[0].seq}..{queued[-1].seq})")
        if not self.finished.wait(max(0.0, deadline - STOP_RESERVE_S - time.monotonic())):
            output.cut_explanations()  # out of time: the FAILs keep their template sentence
        self._join("inspect", deadline)
        output.end()  # in case the inspect thread could not say so itself
        self._join("output", deadline)
        undelivered = output.take_undelivered()
        if isinstance(self.source, PushSource):
            undelivered += self.source.pending()  # pushed after capture had stopped
        if undelivered:
            self.metrics.unprocessed_at_shutdown.inc(undelivered)
        self._stop_heartbeat.set()
        self._stop_ledger.set()
        if self._ledger is not None:
            self._ledger.wake()
        self._join("ledger", time.monotonic() + 1.0)
        if self.sinks.webhook:
            self.sinks.webhook.close(timeout=max(0.5, deadline - time.monotonic()))
            self.sinks.webhook = None
        if self.store is not None:
            self.store.flush(timeout=max(0.5, deadline - time.monotonic()))
        self.state = StationState.STOPPED
        final = self.status()
        if self.store is not None:
            try:
                self.store.update_station_status(self.name, final)
            except Exception:
                log.exception("final station status not stored")
        if self.sinks.mqtt:
            unacknowledged = self.sinks.mqtt.close(final, timeout=max(0.5, deadline - time.monotonic()))
            final["mqtt"].update(unacknowledged=unacknowledged, connected=False)
            self.sinks.mqtt = None
        if self._ledger is not None:
            self._ledger.finish()
        self._join("heartbeat", time.monotonic() + 0.5)
        self._close_resources()
        log.info("station %s stopped: %s", self.name,
                 {k: final[k] for k in ("results", "stored", "rejected_parts", "dropped_frames")})
        return final

    def _join(self, name: str, deadline: float) -> None:
        thread = self._threads.get(name)
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ inputs from other threads
    def trigger(self, source: str = "http") -> TriggerAnswer:
        """External trigger (HTTP ``/trigger``, the MQTT trigger topic): inspect the next frame."""
        if self.state != StationState.RUNNING:
            return {"accepted": False, "trigger": None, "reason": f"station is {self.state}"}
        if not isinstance(self.trigger_policy, ExternalTrigger):
            return {"accepted": False, "trigger": None,
                    "reason": f"trigger mode is {self.config.trigger.mode!r}, not 'external'"}
        self.trigger_policy.fire()
        self.metrics.external_triggers.labels(source).inc()
        return {"accepted": True, "trigger": self.trigger_policy.pending(), "reason": None}

    def push(self, data: bytes, name: str | None = None, timeout: float | None = None) -> PushAnswer:
        """One pushed image = one part (HTTP ``/frames``, the MQTT frame topic). Waits up to
        ``timeout`` s for room (backpressure), then refuses the part with an alarm."""
        if not isinstance(self.source, PushSource):
            return {"accepted": False, "part": None, "reason": "this station's source is not 'push'"}
        capture = self._capture
        if self.state != StationState.RUNNING or capture is None:
            return {"accepted": False, "part": None, "reason": f"station is {self.state}"}
        timeout = self.config.pipeline.backpressure_s if timeout is None else timeout
        if self.source.push(data, name, timeout):
            return {"accepted": True, "part": None, "reason": None}
        seq = next(self._part_numbers)
        capture.reject(seq, "push", time.time(), "push queue full: image refused", name=name)
        return {"accepted": False, "part": seq, "reason": "queue full: the part was rejected"}

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """JSON-safe snapshot: what the heartbeat stores and the status topic carries."""
        counts = self.metrics.snapshot()
        now = time.time()
        link = self._capture.link if self._capture is not None else None
        verdicts = counts.verdicts
        inspected = verdicts[Verdict.PASS] + verdicts[Verdict.FAIL]
        queues = {"inspect": len(self.queue), "output": self._output.pending() if self._output else 0}
        if isinstance(self.source, PushSource):
            queues["push"] = self.source.pending()
        if self.sinks.webhook:
            queues["webhook"] = self.sinks.webhook.pending()
        for name, depth in queues.items():
            self.metrics.queue_depth.labels(name).set(depth)
        mqtt = self.sinks.mqtt
        published, published_results, refused = self.metrics.mqtt_counts()
        return {
            "station": self.name, "product": self.config.product, "state": self.state.value,
            "profile_version": inspector_version(self.inspector),
            "started_at": iso_time(self.started_at) if self.started_at else None,
            "uptime_s": round(now - self.started_at, 1) if self.started_at else 0.0,
            "source": {"kind": self.config.source.resolve_kind(), "uri": self.config.source.uri},
            "trigger": self.config.trigger.mode,
            "camera": {"state": link.state.value if link else "disconnected",
                       "reconnects": link.reconnects if link else 0,
                       "gaps_s": [round(g, 2) for g in list(link.gaps)[-10:]] if link else [],
                       "total_gap_s": round(link.total_gap_s, 2) if link else 0.0,
                       "current_gap_s": round(link.current_gap_s(), 2) if link else 0.0,
                       "last_error": link.last_error if link else None},
            "fps": round(self.rate.per_second(now), 2),
            "counts": {v.value: n for v, n in verdicts.items()},
            "defect_rate": round(verdicts[Verdict.FAIL] / inspected, 4) if inspected else None,
            "frames_captured": counts.captured, "corrupt_frames": counts.corrupt,
            "triggered": counts.triggered, "dropped_frames": counts.dropped, "rejected_parts": counts.rejected,
            "parts_not_at_rest": (self.trigger_policy.unsettled if isinstance(self.trigger_policy, PartPresentTrigger)
                                  else None),
            "inspected": counts.inspected, "results": counts.results, "stored": counts.stored,
            "store_failed": counts.store_failed, "queues": queues,
            "store": {"state": "spooling" if counts.spool_depth else "ok", "spooled": counts.spooled,
                      "spool_depth": counts.spool_depth},
            "files": {"ignored": counts.files_ignored, "already_recorded": counts.already_recorded},
            "explanations": {"done": counts.explained, "pending": counts.explaining,
                             "cut_at_shutdown": counts.explanations_cut},
            "unprocessed_at_shutdown": counts.unprocessed_at_shutdown,
            "mqtt": None if mqtt is None else {
                "connected": mqtt.connected.is_set(), "published": published, "published_results": published_results,
                "unacknowledged": mqtt.unacknowledged(), "refused": refused},
        }
