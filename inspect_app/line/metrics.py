"""Prometheus metrics of one station, in its own registry (two stations in one process never mix
counts; the REST API serves ``station.metrics_registry`` at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info

CAMERA_STATES = ["connected", "reconnecting", "disconnected"]
# Latency buckets (seconds): from a fast batch on a small image to a badly overloaded station.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
GAP_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 1800)


class StationMetrics:
    """Counters, histograms and gauges of the line pipeline. Names start with ``inspect_line_``."""

    def __init__(self, station: str, product: str):
        self.registry = CollectorRegistry()
        r = self.registry
        Info("inspect_line_station", "The station and the product it inspects", registry=r).info(
            {"station": station, "product": product})
        self.inspections = Counter("inspect_line_inspections", "Inspected frames by verdict", ["verdict"], registry=r)
        self.inspection_latency = Histogram("inspect_line_inspection_seconds",
                                            "Inspector time per frame (a batch's time divided by its size)",
                                            buckets=LATENCY_BUCKETS, registry=r)
        self.trigger_to_verdict = Histogram("inspect_line_trigger_to_verdict_seconds",
                                            "From the trigger (or frame capture) to the verdict", buckets=LATENCY_BUCKETS,
                                            registry=r)
        self.queue_depth = Gauge("inspect_line_queue_depth", "Items waiting in each pipeline queue", ["queue"], registry=r)
        self.frames_captured = Counter("inspect_line_frames_captured", "Frames read from the source", registry=r)
        self.triggers = Counter("inspect_line_triggers", "Frames selected for inspection, by trigger kind", ["kind"],
                                registry=r)
        self.frames_dropped = Counter("inspect_line_frames_dropped",
                                      "Free-running frames dropped (oldest first) because inspection fell behind",
                                      registry=r)
        self.parts_rejected = Counter("inspect_line_parts_rejected",
                                      "Triggered parts not inspected (sent to the reject topic with an alarm)",
                                      ["reason"], registry=r)
        self.corrupt_frames = Counter("inspect_line_corrupt_frames", "Frames that could not be decoded (skipped)",
                                      registry=r)
        self.camera_state = Enum("inspect_line_camera_state", "Camera connection state", states=CAMERA_STATES,
                                 registry=r)
        self.camera_state.state("disconnected")
        self.camera_reconnects = Counter("inspect_line_camera_reconnects", "Successful camera reconnections", registry=r)
        self.camera_gap = Histogram("inspect_line_camera_gap_seconds", "Durations of camera outages", buckets=GAP_BUCKETS,
                                    registry=r)
        self.results_stored = Counter("inspect_line_results_stored", "Results written to the results store", registry=r)
        self.sink_errors = Counter("inspect_line_sink_errors", "Failed deliveries by sink", ["sink"], registry=r)
        self.mqtt_published = Counter("inspect_line_mqtt_published", "MQTT messages acknowledged by the broker (QoS 1)",
                                      registry=r)
        self.mqtt_connected = Gauge("inspect_line_mqtt_connected", "1 while connected to the MQTT broker", registry=r)
        self.explanations = Counter("inspect_line_explanations", "Explanations attached to FAIL results, by source",
                                    ["source"], registry=r)
        self.alarms = Counter("inspect_line_alarms", "Alarms raised, by kind", ["kind"], registry=r)
