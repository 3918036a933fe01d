"""Where results go besides the results store: MQTT (for the line's PLC gateway and dashboards),
a webhook (HTTP POST with retries and a dead-letter file) and a CSV file.

MQTT topics (``<prefix>`` defaults to ``inspect``):

| topic | dir | QoS | retained | payload |
|---|---|---|---|---|
| ``<prefix>/<station>/result`` | out | 1 | no | every result: stored id (de-duplicate on it), verdict, score, ... |
| ``<prefix>/<station>/reject`` | out | 1 | no | FAIL and not-inspected parts, sent first, for the PLC |
| ``<prefix>/<station>/explanation`` | out | 1 | no | the operator sentence of a FAIL, when ready |
| ``<prefix>/<station>/status`` | out | 1 | yes | heartbeat; the last will says ``offline`` |
| ``<prefix>/<station>/alarm`` | out | 1 | no | camera lost, queue full, disk full, ... |
| ``<prefix>/<station>/trigger`` | in | 1 | - | any payload: inspect the next frame (external trigger) |
| ``<prefix>/<station>/frame`` | in | 1 | - | an encoded image: one part (push source) |
"""

from __future__ import annotations

import csv
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from inspect_app.line.metrics import StationMetrics
from inspect_app.product_settings import CsvConfig, MqttConfig, WebhookConfig

log = logging.getLogger(__name__)


def _utc(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).isoformat(timespec="milliseconds")


class MqttLink:
    """One paho client per station. QoS 1 messages published while the broker is unreachable
    wait in paho's own outbox (bounded by ``max_queued``) and go out after paho reconnects;
    the station's metrics count broker acknowledgements by topic, ``unacknowledged()`` what is
    still waiting. ``on_trigger`` and ``on_frame`` get the payloads of the two inbound topics."""

    def __init__(self, cfg: MqttConfig, station: str, metrics: StationMetrics,
                 on_trigger: Callable[[bytes], object] | None = None,
                 on_frame: Callable[[bytes], object] | None = None):
        self.cfg, self.station, self.metrics = cfg, station, metrics
        self.on_trigger, self.on_frame = on_trigger, on_frame
        base = f"{cfg.topic_prefix}/{station}"
        self.topics = {k: f"{base}/{k}"
                       for k in ("result", "reject", "explanation", "status", "alarm", "trigger", "frame")}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id or f"inspect-app-{station}",
                                  clean_session=True)
        if cfg.username:
            self.client.username_pw_set(cfg.username, cfg.password)
        self.client.max_queued_messages_set(cfg.max_queued)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.will_set(self.topics["status"], json.dumps({"station": station, "state": "offline",
                                                                "reason": "connection lost"}), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.status_payload: Callable[[], Mapping[str, Any]] | None = None
        self.closing = False
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[str, int | None]] = {}  # mid -> (topic key, result id), not acknowledged
        self._early: set[int] = set()  # acknowledged before publish() returned its mid
        self._acknowledged: list[int] = []  # result ids whose message the broker acknowledged

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: mqtt.ConnectFlags, reason_code: ReasonCode,
                    _properties: Properties | None) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker %s:%s refused the connection: %s", self.cfg.host, self.cfg.port, reason_code)
            return
        log.info("MQTT connected to %s:%s", self.cfg.host, self.cfg.port)
        self.connected.set()
        self.metrics.mqtt_connected.set(1)
        client.subscribe([(self.topics["trigger"], 1), (self.topics["frame"], 1)])
        if self.status_payload is not None:
            self.publish("status", self.status_payload(), retain=True)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, _properties: Properties | None) -> None:
        if self.connected.is_set() and not self.closing:
            log.warning("MQTT disconnected (%s): messages wait in the outbox until it reconnects", reason_code)
        self.connected.clear()
        self.metrics.mqtt_connected.set(0)

    def _on_publish(self, _client: mqtt.Client, _userdata: object, mid: int, _reason_code: ReasonCode,
                    _properties: Properties) -> None:
        with self._lock:
            waiting = self._waiting.pop(mid, None)
            if waiting is None:
                self._early.add(mid)
                return
            self._count(*waiting)

    def _count(self, key: str, rid: int | None) -> None:
        self.metrics.mqtt_published.labels(key).inc()
        if rid is not None:
            self._acknowledged.append(rid)

    def take_acknowledged(self) -> list[int]:
        """Result ids whose result message the broker acknowledged since the last call."""
        with self._lock:
            taken, self._acknowledged = self._acknowledged, []
            return taken

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic == self.topics["trigger"] and self.on_trigger:
                self.on_trigger(bytes(msg.payload))
            elif msg.topic == self.topics["frame"] and self.on_frame:
                self.on_frame(bytes(msg.payload))
        except Exception:  # a bad message must not stop paho's network thread
            log.exception("MQTT message on %s could not be handled", msg.topic)

    def publish(self, key: str, payload: Mapping[str, Any], retain: bool = False, rid: int | None = None) -> bool:
        """Queue a QoS 1 message; False (and counted) when the outbox is full. ``rid``: the stored
        result the message carries (its acknowledgement is reported by ``take_acknowledged``)."""
        info = self.client.publish(self.topics[key], json.dumps(payload, default=str), qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.metrics.sink_errors.labels("mqtt").inc()
            return False
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                self._count(key, rid)
            else:
                self._waiting[info.mid] = (key, rid)
        return True

    def unacknowledged(self) -> int:
        with self._lock:
            return len(self._waiting)

    def wait_delivered(self, timeout: float) -> int:
        """Wait until every queued message is acknowledged; returns how many are still waiting."""
        deadline = time.monotonic() + timeout
        while self.unacknowledged() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.unacknowledged()

    def close(self, final_status: Mapping[str, Any], timeout: float) -> int:
        """Publish the final retained status, wait for acknowledgements, disconnect cleanly
        (a clean disconnect does not fire the last will, hence the explicit status)."""
        self.status_payload = None
        self.publish("status", final_status, retain=True)
        self.closing = True
        left = self.wait_delivered(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        return left


class WebhookSink:
    """POSTs result JSON to a URL from its own thread, retrying with exponential backoff
    (tenacity); what still fails (or finds the queue full) is appended to a dead-letter JSONL
    file, never lost."""

    def __init__(self, cfg: WebhookConfig, metrics: StationMetrics):
        self.cfg, self.metrics = cfg, metrics
        self._queue: queue.Queue[Mapping[str, Any] | None] = queue.Queue(cfg.queue_size)
        self._retrying = Retrying(retry=retry_if_exception_type((OSError, ValueError)),  # URLError, HTTPError: OSErrors
                                  stop=stop_after_attempt(cfg.retries + 1),
                                  wait=wait_exponential(multiplier=cfg.backoff_s), reraise=True)
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def submit(self, payload: Mapping[str, Any]) -> None:
        if payload.get("verdict") not in self.cfg.verdicts:
            return
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            self._dead_letter(payload, "webhook queue full")

    def pending(self) -> int:
        return self._queue.qsize()

    def _post(self, payload: Mapping[str, Any]) -> None:
        request = urllib.request.Request(self.cfg.url, data=json.dumps(payload, default=str).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=self.cfg.timeout_s) as resp:
            if resp.status >= 300:
                raise urllib.error.HTTPError(self.cfg.url, resp.status, resp.reason, resp.headers, None)

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            try:
                self._retrying(self._post, payload)
            except (OSError, ValueError) as exc:
                self._dead_letter(payload, f"{type(exc).__name__}: {exc}")

    def _dead_letter(self, payload: Mapping[str, Any], error: str) -> None:
        self.metrics.sink_errors.labels("webhook").inc()
        path = self.cfg.dead_letter
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fh.write(json.dumps({"time": _utc(), "url": self.cfg.url, "error": error, "payload": payload},
                                default=str) + "\n")
        log.warning("webhook delivery failed (%s): written to %s", error, path)

    def close(self, timeout: float) -> int:
        """Deliver what is queued (within ``timeout``); the rest goes to the dead-letter file."""
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(None, timeout=max(0.1, timeout))
        except queue.Full:
            pass
        self._thread.join(max(0.1, deadline - time.monotonic()))
        left = 0
        while True:
            try:
                payload = self._queue.get_nowait()
            except queue.Empty:
                break
            if payload is not None:
                self._dead_letter(payload, "station stopped before delivery")
                left += 1
        return left


CSV_FIELDS = ["time", "station", "seq", "id", "product", "lot", "trigger", "verdict", "score", "threshold",
              "regions", "trigger_to_verdict_ms", "file", "error"]


class CsvSink:
    """Appends one row per result; writes the header when the file is new."""

    def __init__(self, cfg: CsvConfig):
        self.path = Path(cfg.path)
        self._lock = threading.Lock()

    def write(self, message: Mapping[str, Any]) -> None:
        row = {k: message.get(k) for k in CSV_FIELDS}
        row["regions"] = len(message.get("regions") or [])
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists() or self.path.stat().st_size == 0
            with self.path.open("a", newline="") as fh:
                writer = csv.DictWriter(fh, CSV_FIELDS)
                if new:
                    writer.writeheader()
                writer.writerow(row)


@dataclass
class Sinks:
    """The sinks a station opened (any of them may be off)."""

    mqtt: MqttLink | None = None
    webhook: WebhookSink | None = None
    csv: CsvSink | None = None
