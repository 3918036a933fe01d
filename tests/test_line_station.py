"""The station end to end with real parts and no broker: a local HTTP MJPEG camera, watched
folders, pushed images, a video replay, a real SQLite (and PostgreSQL) results store and the
fitted tiny inspector. Faults: image disk full, corrupt files, overload, SIGTERM. The MQTT side
is in test_line_mqtt.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from line_support import bearer, jpeg_frames, station_config, wait_until

from inspect_app.line import Station
from inspect_app.line.testing import MjpegCamera, encode_jpeg, free_port
from inspect_app.store import ResultsStore

from conftest import ImageFactory

VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def store(tmp_path):
    s = ResultsStore(f"sqlite:///{tmp_path}/results.db", images_dir=tmp_path / "images")
    yield s
    s.close()


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


def _get(url: str, headers: dict[str, str] | None = None) -> str | None:
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as resp:
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
        with TestClient(create_app(store=store, station=external), headers=bearer(store)) as client:
            assert client.post("/trigger").status_code == 202
            wait_until(lambda: external.status()["stored"] == 1, 20, what="the triggered result")
            text = client.get("/metrics").text
            assert 'inspect_line_external_triggers_total{source="http"} 1.0' in text
            assert "inspect_line_trigger_to_verdict_seconds_count 1.0" in text
            assert client.get("/health").json()["station"]["trigger"] == "external"
        with TestClient(create_app(store=store, station=pushed), headers=bearer(store, "station")) as client:
            answer = client.post("/frames", files={"file": ("cam-7.jpg", frames[0], "image/jpeg")})
            assert answer.status_code == 202
            assert client.post("/trigger").status_code == 409  # a push station takes no external triggers
            wait_until(lambda: pushed.status()["stored"] == 1, 20, what="the pushed result")
    finally:
        external.stop()
        pushed.stop()
        camera.kill()
    assert [r.file for r in store.query(station="t2")] == ["cam-7.jpg"]


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
    with ResultsStore(f"sqlite:///{db}") as prepared:
        viewer = bearer(prepared, "viewer")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INSPECT_APP_MODELS_DIR": str(models_dir)}
    api_port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "inspect-app"), "line", "--source", str(folder), "--product", "gradient",
                             "--store", f"sqlite:///{db}", "--station", "cli1", "--models-dir", str(models_dir),
                             "--api-port", str(api_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, cwd=tmp_path)
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
        assert _get(f"http://127.0.0.1:{api_port}/metrics") is None  # 401 without a token
        metrics = _get(f"http://127.0.0.1:{api_port}/metrics", viewer)
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
