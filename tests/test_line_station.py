"""The station end to end with real parts: the Debian mosquitto broker, a local HTTP MJPEG camera
that can be killed and restarted, a real SQLite results store, and the fitted tiny inspector.
Fault tests: camera killed mid-run, broker restarted, corrupt frames, image disk full, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from inspect_app.line import Station, parse_station_config
from inspect_app.line.testing import MjpegCamera, Mosquitto, encode_jpeg, free_port
from inspect_app.store import ResultsStore

from conftest import ImageFactory

pytestmark = pytest.mark.skipif(not Mosquitto.available(), reason="mosquitto is not installed (.ci/run installs it)")
VENV_BIN = Path(sys.executable).parent


def wait_until(condition, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def broker(tmp_path):
    server = Mosquitto(tmp_path / "mosquitto").start()
    yield server
    server.stop()


class Subscriber:
    """A persistent-session QoS 1 subscriber to ``inspect/#`` that reconnects on its own."""

    def __init__(self, port: int):
        self.messages: list[tuple[str, dict, float]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}",
                                  clean_session=False)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe("inspect/#", qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, json.loads(m.payload) if m.payload.startswith(b"{") else m.payload, time.time()))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def on(self, suffix: str) -> list[dict]:
        return [p for t, p, _ in list(self.messages) if t.endswith("/" + suffix)]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def store(tmp_path):
    s = ResultsStore(f"sqlite:///{tmp_path}/results.db", images_dir=tmp_path / "images")
    yield s
    s.close()


def station_config(uri: str, broker: Mosquitto | None = None, **overrides):
    data = {"name": "t1", "product": "gradient",
            "source": {"uri": uri, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5, "read_timeout_s": 2,
                       "settle_s": 0.1, "poll_s": 0.02},
            "pipeline": {"heartbeat_s": 0.3, "queue_size": 64, "shutdown_timeout_s": 30},
            "explain": {"enabled": False}}
    if broker is not None:
        data["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return parse_station_config(data)


def jpeg_frames(n: int, seed: int = 0, defective_every: int = 4) -> list[bytes]:
    images = ImageFactory(seed=seed)
    return [encode_jpeg(images.defective(64, 64, radius=12) if i % defective_every == defective_every - 1
                        else images.good()) for i in range(n)]


# ---------------------------------------------------------------- the happy path (and a corrupt frame)
def test_stream_to_store_mqtt_and_csv_with_one_corrupt_frame(tmp_path, broker, store, fitted_inspector):
    frames = jpeg_frames(40)
    frames[7] = frames[7][: len(frames[7]) // 2]  # truncated in transit
    camera = MjpegCamera(frames, fps=25).start()
    sub = Subscriber(broker.port)
    cfg = station_config(camera.url, broker, max_frames=39, csv={"path": str(tmp_path / "line.csv")})
    station = Station(cfg, inspector=fitted_inspector, store=store).start()
    try:
        assert station.finished.wait(60)
    finally:
        final = station.stop()
        camera.kill()
    assert final["corrupt_frames"] == 1 and final["dropped_frames"] == 0 and final["rejected_parts"] == 0
    assert final["results"] == final["stored"] == 39 == store.count(station="t1")
    assert final["mqtt"]["published_results"] == 39 and final["mqtt"]["unacknowledged"] == 0
    wait_until(lambda: len(sub.on("result")) >= 39, 10, what="39 result messages")
    results = sub.on("result")
    stored_ids = {r.id for r in store.query(station="t1")}
    assert sorted(m["id"] for m in results) == sorted(stored_ids)  # in = stored = published, one each
    n_fail = final["counts"]["FAIL"]
    assert n_fail >= 5 and len(sub.on("reject")) == n_fail  # every 4th frame has a defect
    assert all(m["trigger_to_verdict_ms"] >= 0 and m["verdict"] in ("PASS", "FAIL") for m in results)
    status = [p for p in sub.on("status")]
    assert status and status[-1]["state"] == "stopped"
    assert len((tmp_path / "line.csv").read_text().splitlines()) == 40
    heartbeat = store.station_status("t1")[0]
    assert heartbeat["state"] == "stopped" and heartbeat["stored"] == 39
    from prometheus_client import generate_latest

    text = generate_latest(station.metrics_registry).decode()
    assert "inspect_line_corrupt_frames_total 1.0" in text
    assert f'inspect_line_inspections_total{{verdict="FAIL"}} {float(n_fail)}' in text
    assert "inspect_line_trigger_to_verdict_seconds_count 39.0" in text
    assert 'inspect_line_queue_depth{queue="inspect"}' in text
    sub.close()


# ---------------------------------------------------------------- camera faults
@pytest.mark.slow
def test_camera_killed_mid_run_reconnects_and_records_the_gap(broker, store, fitted_inspector):
    camera = MjpegCamera(jpeg_frames(80, seed=1), fps=25).start()
    cfg = station_config(camera.url, broker, max_frames=60)
    station = Station(cfg, inspector=fitted_inspector, store=store).start()
    try:
        wait_until(lambda: station.status()["results"] >= 15, 30, what="15 results")
        camera.kill()
        wait_until(lambda: station.status()["camera"]["state"] == "reconnecting", 10, what="reconnecting")
        time.sleep(1.5)
        assert station.status()["camera"]["current_gap_s"] >= 1.0
        camera.restart()
        assert station.finished.wait(60)
    finally:
        final = station.stop()
        camera.kill()
    cam = final["camera"]
    assert cam["reconnects"] == 1 and len(cam["gaps_s"]) == 1 and 1.4 <= cam["gaps_s"][0] <= 10
    assert final["stored"] == 60 == store.count(station="t1")
    assert any(a["kind"] == "camera_lost" for a in store.alarms())


@pytest.mark.slow
def test_broker_restart_queues_messages_and_delivers_them_after(tmp_path, broker, store, fitted_inspector):
    folder = tmp_path / "drop"
    folder.mkdir()
    images = ImageFactory(seed=2)
    for i in range(5):
        images.write(folder / f"a{i:02d}.png", images.good())
    sub = Subscriber(broker.port)
    station = Station(station_config(str(folder), broker), inspector=fitted_inspector, store=store).start()
    try:
        wait_until(lambda: station.mqtt.published_results == 5, 30, what="5 published results")
        broker.stop()
        wait_until(lambda: not station.mqtt.connected.is_set(), 10, what="MQTT disconnect")
        for i in range(8):
            images.write(folder / f"b{i:02d}.png", images.defective(40, 40, radius=12) if i % 2 else images.good())
        wait_until(lambda: station.status()["stored"] == 13, 30, what="13 stored while the broker is down")
        waiting = station.mqtt.unacknowledged()
        assert station.mqtt.published_results == 5 and waiting >= 8  # queued, not lost
        broker.start()
        wait_until(lambda: station.mqtt.published_results == 13, 30, what="queued messages delivered")
        wait_until(lambda: len({m["id"] for m in sub.on("result")}) == 13, 30, what="subscriber got all 13")
    finally:
        final = station.stop()
        sub.close()
    assert final["mqtt"]["unacknowledged"] == 0 and final["mqtt"]["refused"] == 0
    assert {m["id"] for m in sub.on("result")} == {r.id for r in store.query(station="t1")}
    assert len(sub.on("reject")) == final["counts"]["FAIL"] == 4


def test_image_disk_full_keeps_results_and_raises_an_alarm(tmp_path, fitted_inspector):
    blocked = tmp_path / "images_is_a_file"
    blocked.write_text("not a folder: every image write fails, as on a full disk")
    store = ResultsStore(f"sqlite:///{tmp_path}/results.db", images_dir=blocked)
    folder = tmp_path / "drop"
    folder.mkdir()
    images = ImageFactory(seed=3)
    for i in range(6):
        images.write(folder / f"p{i}.png", images.defective(64, 64, radius=14) if i < 3 else images.good())
    (folder / "p9.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    dead = tmp_path / "dead.jsonl"
    cfg = station_config(str(folder), max_frames=7, source={"done_dir": str(tmp_path / "done")},
                         webhook={"url": f"http://127.0.0.1:{free_port()}/down", "retries": 1, "backoff_s": 0.05,
                                  "dead_letter": str(dead)})
    station = Station(cfg, inspector=fitted_inspector, store=store).start()
    try:
        assert station.finished.wait(60)
    finally:
        final = station.stop()
    store.flush(10)
    assert not list(folder.glob("p*")) and len(list((tmp_path / "done").iterdir())) == 7  # moved once read
    rows = store.query(station="t1")
    assert len(rows) == final["stored"] == 7 and final["corrupt_frames"] == 1
    errors = [r for r in rows if r.verdict == "ERROR"]
    assert len(errors) == 1 and errors[0].file == "p9.jpg" and "corrupt" in errors[0].error
    fails = [r for r in rows if r.verdict == "FAIL"]
    assert len(fails) >= 3 and all(r.image_path is None for r in fails)
    assert sorted(json.loads(line)["payload"]["seq"] for line in dead.read_text().splitlines()) == list(range(1, 8))
    kinds = {a["kind"] for a in store.alarms()}
    assert "image_write_failed" in kinds and "part_rejected" in kinds
    store.close()


# ---------------------------------------------------------------- triggers
def test_external_triggers_over_http_call_and_mqtt_and_a_trigger_without_camera(broker, store, fitted_inspector):
    frames = jpeg_frames(4, seed=4)
    camera = MjpegCamera(lambda i: frames[i % 4], count=10_000, fps=20).start()
    sub = Subscriber(broker.port)
    cfg = station_config(camera.url, broker, trigger={"mode": "external", "timeout_s": 0.5})
    station = Station(cfg, inspector=fitted_inspector, store=store).start()
    try:
        wait_until(lambda: station.mqtt.connected.is_set() and station.status()["frames_captured"] > 3, 20,
                   what="camera and broker")
        time.sleep(0.5)
        assert station.status()["results"] == 0  # frames flow, nothing is inspected untriggered
        assert station.trigger()["accepted"]
        time.sleep(0.3)
        assert station.trigger("plc")["accepted"]
        sub.client.publish("inspect/t1/trigger", b"part", qos=1)
        wait_until(lambda: station.status()["results"] == 3, 20, what="3 triggered results")
        time.sleep(0.5)
        assert station.status()["results"] == 3  # one trigger, one inspection
        camera.kill()
        wait_until(lambda: station.status()["camera"]["state"] == "reconnecting", 10, what="camera lost")
        station.trigger()
        wait_until(lambda: station.status()["rejected_parts"] == 1, 10, what="the unanswered trigger rejected")
    finally:
        final = station.stop()
        camera.kill()
    rows = store.query(station="t1", newest_first=False)
    assert [r.verdict != "ERROR" for r in rows] == [True, True, True, False]
    assert "no camera frame" in rows[-1].error
    wait_until(lambda: any(m["verdict"] == "ERROR" for m in sub.on("reject")), 5, what="reject for the PLC")
    assert final["stored"] == 4
    sub.close()


def test_continuous_station_refuses_external_triggers(store, fitted_inspector, tmp_path):
    (tmp_path / "drop").mkdir()
    station = Station(station_config(str(tmp_path / "drop")), inspector=fitted_inspector, store=store).start()
    try:
        answer = station.trigger()
        assert not answer["accepted"] and "external" in answer["reason"]
    finally:
        station.stop()


def _belt_frames(parts: int, seed: int = 5) -> tuple[list[bytes], int]:
    """Belt camera frames: empty belt, then per part 2 moving frames, 4 at rest, 3 empty."""
    rng = np.random.default_rng(seed)
    images = ImageFactory(seed=seed)

    def belt(part=None, x=0):
        frame = np.clip(rng.normal(140, 2, (128, 128, 3)), 0, 255).astype(np.uint8)
        if part is not None:
            frame[24:104, x:x + 80] = part[24:104, 24:104]
        return encode_jpeg(frame)

    frames = [belt() for _ in range(6)]
    for _ in range(parts):
        part = images.good()
        frames += [belt(part, 0), belt(part, 20)] + [belt(part, 24)] * 4 + [belt() for _ in range(3)]
    return frames, parts


def test_part_present_inspects_each_part_once_from_a_stream(store, fitted_inspector):
    frames, parts = _belt_frames(4)
    camera = MjpegCamera(frames, fps=20).start()
    cfg = station_config(camera.url, trigger={"mode": "part-present", "reference_frames": 4})
    station = Station(cfg, inspector=fitted_inspector, store=store).start()
    try:
        wait_until(lambda: camera.done, 30, what="camera finished")
        time.sleep(0.5)
    finally:
        final = station.stop()
        camera.kill()
    assert final["triggered"] == final["stored"] == parts
    assert {r.file.split("#")[0] for r in store.query(station="t1")} == {"t1"}


def test_pushed_images_over_http_call_and_mqtt(broker, store, fitted_inspector):
    sub = Subscriber(broker.port)
    station = Station(station_config("push", broker), inspector=fitted_inspector, store=store).start()
    images = ImageFactory(seed=6)
    try:
        wait_until(station.mqtt.connected.is_set, 10, what="MQTT")
        assert station.push(encode_jpeg(images.good()), "cam-0001.jpg")["accepted"]
        assert station.push(b"\x89PNG broken", "cam-0002.png")["accepted"]
        sub.client.publish("inspect/t1/frame", encode_jpeg(images.defective(64, 64, 14)), qos=1)
        wait_until(lambda: station.status()["results"] == 3, 20, what="3 pushed parts")
    finally:
        final = station.stop()
        sub.close()
    by_file = {r.file: r.verdict for r in store.query(station="t1")}
    assert by_file["cam-0001.jpg"] == "PASS" and by_file["cam-0002.png"] == "ERROR"
    assert by_file["pushed image"] == "FAIL" and final["corrupt_frames"] == 1


def test_pushed_images_still_waiting_at_stop_are_inspected(store, fitted_inspector):
    station = Station(station_config("push", pipeline={"queue_size": 2}),
                      inspector=SlowInspector(fitted_inspector, 0.2), store=store).start()
    images = ImageFactory(seed=13)
    for i in range(8):
        assert station.push(encode_jpeg(images.good()), f"burst-{i}.jpg")["accepted"]
    final = station.stop()  # most of the burst is still waiting in the push queue
    assert final["stored"] == 8 and final["unprocessed_at_shutdown"] == 0
    assert sorted(r.file for r in store.query(station="t1")) == [f"burst-{i}.jpg" for i in range(8)]


class SlowInspector:
    """The fitted inspector behind a fixed extra delay: inspection that cannot keep up."""

    def __init__(self, inspector, delay_s: float):
        self.inspector, self.delay_s = inspector, delay_s
        self.mode, self.profile_version = inspector.mode, inspector.profile_version

    def predict_batch(self, images, names=None, **options):
        time.sleep(self.delay_s)
        return self.inspector.predict_batch(images, names, **options)


def test_free_running_frames_are_dropped_oldest_first_and_counted(store, fitted_inspector):
    camera = MjpegCamera(jpeg_frames(60, seed=7), fps=60).start()
    cfg = station_config(camera.url, pipeline={"queue_size": 3, "batch_size": 1})
    station = Station(cfg, inspector=SlowInspector(fitted_inspector, 0.1), store=store).start()
    try:
        wait_until(lambda: camera.done, 30, what="camera finished")
        time.sleep(0.3)
    finally:
        final = station.stop()
        camera.kill()
    assert final["dropped_frames"] > 10
    assert final["triggered"] == final["stored"] + final["dropped_frames"] == 60
    assert final["unprocessed_at_shutdown"] == 0
    seqs = [int(r.file.split("#")[1]) for r in store.query(station="t1", newest_first=False)]
    assert seqs == sorted(seqs) and seqs[-1] == 60  # the newest frames survive


def _get(url: str) -> str | None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return None


def test_rest_api_serves_station_metrics_triggers_and_pushed_frames(store, fitted_inspector):
    from fastapi.testclient import TestClient

    from inspect_app.api import create_app

    frames = jpeg_frames(4, seed=10)
    camera = MjpegCamera(lambda i: frames[i % 4], count=10_000, fps=20).start()
    external = Station(station_config(camera.url, trigger={"mode": "external"}), inspector=fitted_inspector,
                       store=store).start()
    pushed = Station(station_config("push", name="t2"), inspector=fitted_inspector, store=store).start()
    try:
        wait_until(lambda: external.status()["frames_captured"] > 2, 20, what="frames")
        with TestClient(create_app(store=store, station=external)) as client:
            assert client.post("/trigger").status_code == 202
            wait_until(lambda: external.status()["stored"] == 1, 20, what="the triggered result")
            text = client.get("/metrics").text
            assert 'inspect_line_triggers_total{kind="external-http"} 1.0' in text
            assert "inspect_line_trigger_to_verdict_seconds_count 1.0" in text
            assert client.get("/health").json()["station"]["trigger"] == "external"
        with TestClient(create_app(store=store, station=pushed)) as client:
            answer = client.post("/frames", files={"file": ("cam-7.jpg", frames[0], "image/jpeg")})
            assert answer.status_code == 202
            assert client.post("/trigger").status_code == 409  # a push station takes no external triggers
            wait_until(lambda: pushed.status()["stored"] == 1, 20, what="the pushed result")
    finally:
        external.stop()
        pushed.stop()
        camera.kill()
    assert [r.file for r in store.query(station="t2")] == ["cam-7.jpg"]


# ---------------------------------------------------------------- the CLI under SIGTERM
@pytest.mark.slow
def test_sigterm_mid_run_flushes_queues_and_loses_no_result(tmp_path, fitted_inspector, models_dir):
    fitted_inspector.save(models_dir)
    folder = tmp_path / "drop"
    folder.mkdir()
    images = ImageFactory(seed=8)
    n_files = 150  # far more than the station inspects before the signal: it arrives mid-run
    for i in range(n_files):
        images.write(folder / f"part{i:03d}.png", images.good())
    db = tmp_path / "cli.db"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INSPECT_APP_MODELS_DIR": str(models_dir)}
    api_port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "inspect-app"), "line", "--source", str(folder), "--product", "gradient",
                             "--store", f"sqlite:///{db}", "--station", "cli1", "--models-dir", str(models_dir),
                             "--api-port", str(api_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        store = None

        def some_stored():
            nonlocal store
            if not db.exists():
                return False
            store = store or ResultsStore(f"sqlite:///{db}")
            return store.count(station="cli1") >= 3

        # The API answers once the station runs (its store schema is in place): then read the store.
        wait_until(lambda: _get(f"http://127.0.0.1:{api_port}/health"), 120, interval=0.2, what="the station's API")
        wait_until(some_stored, 60, interval=0.1, what="the first stored results")
        metrics = _get(f"http://127.0.0.1:{api_port}/metrics")
        proc.send_signal(signal.SIGTERM)
        assert "inspect_line_results_stored_total" in metrics and "inspect_line_camera_state" in metrics
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    final = json.loads([line for line in out.splitlines() if line.startswith('{"final"')][-1])["final"]
    assert "SIGTERM" in err
    stored = store.query(station="cli1", limit=1000)
    assert final["state"] == "stopped" and final["unprocessed_at_shutdown"] == 0
    assert final["stored"] == final["results"] == final["triggered"] == len(stored)
    assert len({r.file for r in stored}) == len(stored)  # each file once
    assert 3 <= len(stored) < n_files
    store.close()


# ---------------------------------------------------------------- explanations
def test_fail_results_get_explanations_after_the_verdict(broker, store, fitted_inspector, tmp_path):
    from inspect_app.explain import ExplainerService

    folder = tmp_path / "drop"
    folder.mkdir()
    images = ImageFactory(seed=9)
    for i in range(6):
        images.write(folder / f"e{i}.png", images.defective(64, 64, radius=14) if i % 2 else images.good())
    sub = Subscriber(broker.port)
    explainer = ExplainerService(variant="template")
    station = Station(station_config(str(folder), broker, max_frames=6), inspector=fitted_inspector, store=store,
                      explainer=explainer).start()
    try:
        assert station.finished.wait(60)
    finally:
        final = station.stop()
        explainer.close()
    fails = store.query(station="t1", verdict="FAIL")
    assert len(fails) == final["counts"]["FAIL"] >= 3
    assert all(r.explanation and r.explanation_source == "template" for r in fails)
    assert all(r.explanation is None for r in store.query(station="t1", verdict="PASS"))
    wait_until(lambda: len(sub.on("explanation")) == len(fails), 10, what="explanation messages")
    results = {m["id"]: m for m in sub.on("result")}
    for expl in sub.on("explanation"):  # the verdict went out first; the sentence followed
        assert results[expl["id"]]["published_at"] <= expl["explained_at"]
    sub.close()


def test_video_file_replay_ends_the_run_with_every_frame_stored(tmp_path, store, fitted_inspector):
    import cv2

    path = tmp_path / "belt.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (128, 128))
    images = ImageFactory(seed=11)
    for _ in range(20):
        writer.write(cv2.cvtColor(images.good(), cv2.COLOR_RGB2BGR))
    writer.release()
    cfg = station_config(str(path), source={"fps": 100})
    assert cfg.source.resolve_kind() == "video"
    station = Station(cfg, inspector=fitted_inspector, store=store).start()
    try:
        assert station.finished.wait(60)  # the replay ended and everything was flushed
    finally:
        final = station.stop()
    assert final["frames_captured"] == final["stored"] == 20 and final["camera"]["reconnects"] == 0


def test_station_stores_into_postgresql(tmp_path, fitted_inspector, postgres_url):
    import sqlalchemy as sa

    folder = tmp_path / "drop"
    folder.mkdir()
    images = ImageFactory(seed=12)
    for i in range(5):
        images.write(folder / f"pg{i}.png", images.defective(64, 64, 14) if i == 4 else images.good())
    cfg = station_config(str(folder), max_frames=5, store={"url": postgres_url, "images_dir": str(tmp_path / "images")})
    station = Station(cfg, inspector=fitted_inspector).start()  # opens (and closes) its own store
    try:
        assert station.finished.wait(60)
    finally:
        final = station.stop()
    assert final["stored"] == 5
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT file, verdict FROM results ORDER BY id").all()
    finally:
        engine.dispose()
    assert [r[0] for r in rows] == [f"pg{i}.png" for i in range(5)] and rows[-1][1] == "FAIL"
