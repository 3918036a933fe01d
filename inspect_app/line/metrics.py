"""Prometheus metrics of one station, in its own registry (two stations in one process never mix
counts; the REST API serves ``station.metrics_registry`` at ``/metrics``).

They are the station's only counters: ``status()`` and the final accounting read them back
through ``StationMetrics.snapshot()``. Counters that must agree with each other (a result and
whether it was stored; a triggered frame and whether it was dropped) are changed together under
``StationMetrics.lock``, which ``snapshot()`` holds too, so a snapshot never sees half an update.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

from inspect_app.results import Verdict


class CameraState(StrEnum):
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"  # not started, stopped, or a replay that ended


# Latency buckets (seconds): from a fast batch on a small image to a badly overloaded station.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
GAP_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 1800)


def _samples(metric: MetricWrapperBase, suffix: str) -> dict[tuple[str, ...], float]:
    """Current values of a metric's children, by their label values."""
    return {tuple(s.labels.values()): s.value for family in metric.collect() for s in family.samples
            if s.name == family.name + suffix}


def _total(metric: MetricWrapperBase) -> int:
    return round(sum(_samples(metric, "_total").values()))


@dataclass(frozen=True)
class StationCounts:
    """The station's counters at one moment (see ``StationMetrics.snapshot``)."""

    captured: int  # frames read from the source (corrupt ones included)
    corrupt: int
    triggered: int  # frames selected for inspection (free-running, triggered, part-present, files, pushes)
    dropped: int  # free-running frames dropped because inspection fell behind
    rejected: int  # parts that will not be inspected (each still gets an ERROR result)
    inspected: int  # results the Inspector produced
    results: int  # results through the output stage (inspected + rejected, once delivered)
    verdicts: dict[Verdict, int]  # ``results`` by verdict
    stored: int
    store_failed: int  # neither stored nor spooled (the frame is left for a restart)
    spooled: int  # results that went to the spool while the store was away (stored later when replayed)
    spool_depth: int  # results in the spool now
    explained: int
    explaining: int  # FAIL results waiting for their explanation
    explanations_cut: int  # explanations cut at shutdown: their results keep the template sentence
    unprocessed_at_shutdown: int
    files_ignored: int  # watched folder: files that are not images (each counted once)
    already_recorded: int  # watched folder: files whose result an earlier run recorded (not inspected again)

    @property
    def admitted(self) -> int:
        """Parts that will produce a result: every triggered frame not dropped, and every rejected part."""
        return self.triggered - self.dropped + self.rejected


class StationMetrics:
    """Counters, histograms and gauges of the line pipeline. Names start with ``inspect_line_``."""

    def __init__(self, station: str, product: str):
        self.lock = threading.Lock()
        self.registry = CollectorRegistry()
        r = self.registry
        Info("inspect_line_station", "The station and the product it inspects", registry=r).info(
            {"station": station, "product": product})
        self.inspections = Counter("inspect_line_inspections", "Inspected frames by verdict", ["verdict"], registry=r)
        self.results = Counter("inspect_line_results", "Results through the output stage (stored or not) by verdict; "
                               "parts rejected without inspection are ERROR", ["verdict"], registry=r)
        self.inspection_latency = Histogram("inspect_line_inspection_seconds",
                                            "Inspector time per frame (a batch's time divided by its size)",
                                            buckets=LATENCY_BUCKETS, registry=r)
        self.trigger_to_verdict = Histogram("inspect_line_trigger_to_verdict_seconds",
                                            "From the trigger (or frame capture) to the verdict",
                                            buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("inspect_line_queue_depth", "Items waiting in each pipeline queue", ["queue"],
                                 registry=r)
        self.frames_captured = Counter("inspect_line_frames_captured", "Frames read from the source", registry=r)
        self.triggers = Counter("inspect_line_triggers", "Frames selected for inspection, by trigger kind", ["kind"],
                                registry=r)
        self.external_triggers = Counter("inspect_line_external_triggers", "External trigger signals (each selects "
                                         "the next frame), by where they came from", ["source"], registry=r)
        self.frames_dropped = Counter("inspect_line_frames_dropped",
                                      "Free-running frames dropped (oldest first) because inspection fell behind",
                                      registry=r)
        self.parts_rejected = Counter("inspect_line_parts_rejected",
                                      "Triggered parts not inspected (sent to the reject topic with an alarm)",
                                      ["reason"], registry=r)
        self.corrupt_frames = Counter("inspect_line_corrupt_frames", "Frames that could not be decoded (skipped)",
                                      registry=r)
        self.unprocessed_at_shutdown = Counter("inspect_line_unprocessed_at_shutdown", "Admitted parts not "
                                               "inspected or not delivered within the shutdown limit", registry=r)
        self.camera_state = Enum("inspect_line_camera_state", "Camera connection state",
                                 states=[s.value for s in CameraState], registry=r)
        self.camera_state.state(CameraState.DISCONNECTED)
        self.camera_reconnects = Counter("inspect_line_camera_reconnects", "Successful camera reconnections",
                                         registry=r)
        self.camera_gap = Histogram("inspect_line_camera_gap_seconds", "Durations of camera outages",
                                    buckets=GAP_BUCKETS, registry=r)
        self.results_stored = Counter("inspect_line_results_stored", "Results written to the results store", registry=r)
        self.sink_errors = Counter("inspect_line_sink_errors", "Failed deliveries by sink", ["sink"], registry=r)
        self.mqtt_published = Counter("inspect_line_mqtt_published", "MQTT messages acknowledged by the broker "
                                      "(QoS 1), by topic", ["topic"], registry=r)
        self.mqtt_connected = Gauge("inspect_line_mqtt_connected", "1 while connected to the MQTT broker", registry=r)
        self.explanations = Counter("inspect_line_explanations", "Explanations attached to FAIL results, by source",
                                    ["source"], registry=r)
        self.explanations_pending = Gauge("inspect_line_explanations_pending",
                                          "FAIL results waiting for their explanation", registry=r)
        self.alarms = Counter("inspect_line_alarms", "Alarms raised, by kind", ["kind"], registry=r)
        self.results_spooled = Counter("inspect_line_results_spooled", "Results written to the local spool "
                                       "because the results store was unreachable", registry=r)
        self.spool_depth = Gauge("inspect_line_spool_depth", "Results in the spool waiting for the store", registry=r)
        self.explanations_cut = Counter("inspect_line_explanations_cut", "Explanations cut at shutdown (the result "
                                        "keeps the template sentence)", registry=r)
        self.files_ignored = Counter("inspect_line_files_ignored", "Watched-folder files that are not images "
                                     "(each counted once)", registry=r)
        self.profile_reloads = Counter("inspect_line_profile_reloads", "New profile versions swapped in while "
                                       "running (a refit, a moved threshold, learnt false rejects)", registry=r)
        self.already_recorded = Counter("inspect_line_files_already_recorded", "Watched-folder files skipped "
                                        "because an earlier run recorded their result", registry=r)

    def snapshot(self) -> StationCounts:
        with self.lock:
            verdicts = _samples(self.results, "_total")
            sink_errors = _samples(self.sink_errors, "_total")
            return StationCounts(
                captured=_total(self.frames_captured), corrupt=_total(self.corrupt_frames),
                triggered=_total(self.triggers), dropped=_total(self.frames_dropped),
                rejected=_total(self.parts_rejected), inspected=_total(self.inspections),
                results=round(sum(verdicts.values())),
                verdicts={v: round(verdicts.get((v.value,), 0)) for v in Verdict},
                stored=_total(self.results_stored), store_failed=round(sink_errors.get(("store",), 0)),
                spooled=_total(self.results_spooled), spool_depth=round(_samples(self.spool_depth, "")[()]),
                explained=_total(self.explanations),
                explaining=round(_samples(self.explanations_pending, "")[()]),
                explanations_cut=_total(self.explanations_cut),
                unprocessed_at_shutdown=_total(self.unprocessed_at_shutdown),
                files_ignored=_total(self.files_ignored), already_recorded=_total(self.already_recorded))

    def mqtt_counts(self) -> tuple[int, int, int]:
        """(acknowledged messages, acknowledged results, messages refused by a full outbox)."""
        published = _samples(self.mqtt_published, "_total")
        refused = _samples(self.sink_errors, "_total").get(("mqtt",), 0)
        return round(sum(published.values())), round(published.get(("result",), 0)), round(refused)
