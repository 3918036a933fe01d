"""Line runner parts that need no broker: config, queue overload rules, triggers, sources, sinks, metrics."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from inspect_app.data.images import load_image
from inspect_app.errors import InspectAppError
from inspect_app.line.config import SourceConfig, TriggerConfig, load_station_config, parse_station_config
from inspect_app.line.metrics import CameraState, StationMetrics
from inspect_app.line.queues import InspectQueue, Job
from inspect_app.line.sinks import CsvSink, WebhookSink
from inspect_app.line.sources import CameraLink, FolderSource, Frame, OpenCVSource, PushSource
from inspect_app.line.testing import MjpegCamera, SnapshotCamera, encode_jpeg, free_port
from inspect_app.line.triggers import ContinuousTrigger, ExternalTrigger, PartPresentTrigger
from inspect_app.product_settings import CsvConfig, MqttConfig, WebhookConfig
from inspect_app.results import Verdict

from conftest import ImageFactory

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- config
def test_source_strings_pick_the_kind(tmp_path):
    (tmp_path / "drop").mkdir()
    kinds = {"0": "device", "2": "device", "rtsp://10.0.0.5/stream1": "stream", "http://cam/video.mjpg": "stream",
             "https://cam/snap.jpg": "stream", "push": "push", str(tmp_path / "drop"): "folder",
             str(tmp_path / "belt.mp4"): "video"}
    for uri, kind in kinds.items():
        assert SourceConfig(uri=uri).resolve_kind() == kind, uri
    assert SourceConfig(uri="0", kind="video").resolve_kind() == "video"


def test_example_station_file_loads_and_bad_keys_are_clear_errors(tmp_path):
    cfg = load_station_config(ROOT / "data" / "station.example.yaml")
    assert cfg.product == "bottle" and cfg.trigger.mode == "part-present" and cfg.mqtt.port == 1883
    bad = tmp_path / "bad.yaml"
    bad.write_text("product: bottle\ntrigger: {mode: sometimes}\nsourse: {uri: 0}\n")
    with pytest.raises(InspectAppError) as err:
        load_station_config(bad)
    assert "trigger.mode" in str(err.value) and "sourse" in str(err.value)
    with pytest.raises(InspectAppError, match="no such file"):
        load_station_config(tmp_path / "missing.yaml")
    with pytest.raises(InspectAppError, match="name"):
        parse_station_config({"product": "p", "name": "line 1/a"})
    assert MqttConfig.from_address("10.1.2.3:1884").port == 1884
    with pytest.raises(InspectAppError, match="HOST:PORT"):
        MqttConfig.from_address("broker:mqtt")


# ---------------------------------------------------------------- queue overload rules
def _job(seq: int, droppable: bool) -> Job:
    return Job(seq, Frame(None, time.time()), "continuous" if droppable else "external", time.time(), droppable,
               f"run:test#{seq}")


def test_free_running_frames_drop_oldest_first_and_triggered_parts_wait_then_are_refused():
    q = InspectQueue(3)
    for i in range(3):
        assert q.put(_job(i, True), 0) == (True, None)
    accepted, dropped = q.put(_job(3, True), 0)
    assert accepted and dropped.seq == 0  # the oldest free-running frame made room
    accepted, dropped = q.put(_job(4, False), 1.0)  # a triggered part pushes out a free-running frame
    assert accepted and dropped.seq == 1
    assert [j.seq for j in q.get_batch(10, 0)] == [2, 3, 4]

    q = InspectQueue(2)
    q.put(_job(10, False), 0)
    q.put(_job(11, False), 0)
    assert q.put(_job(12, True), 0) == (False, None)  # a free-running frame never displaces a part
    start = time.monotonic()
    assert q.put(_job(13, False), 0.3) == (False, None)  # waited (backpressure), then refused
    assert time.monotonic() - start >= 0.25
    threading.Timer(0.2, lambda: q.get_batch(1, 0)).start()
    assert q.put(_job(14, False), 2.0) == (True, None)  # room appeared while it waited
    assert [j.seq for j in q.get_batch(8, 0)] == [11, 14]


# ---------------------------------------------------------------- triggers
def test_continuous_trigger_limits_the_rate():
    trig = ContinuousTrigger(fps=5)
    fired = [trig.on_frame(Frame(None, t)) is not None for t in np.arange(0, 1.0, 0.05)]  # 20 fps for 1 s
    assert sum(fired) == 5


def test_external_trigger_takes_the_next_frame_and_expires_without_one():
    trig = ExternalTrigger(timeout_s=0.5)
    assert trig.on_frame(Frame(None, time.time())) is None
    trig.fire(at=100.0)
    assert trig.on_frame(Frame(None, 99.0)) is None  # captured before the signal
    decision = trig.on_frame(Frame(None, 100.2))
    assert decision.kind == "external" and decision.triggered_at == 100.0 and not decision.droppable
    trig.fire(at=200.0)
    assert trig.expired(200.3) == [] and trig.expired(200.6) == [200.0]


def _belt(rng: np.random.Generator, part_at: tuple[int, int] | None, size: int = 96) -> np.ndarray:
    """An empty grey belt with sensor noise, optionally with a dark square part on it."""
    img = np.clip(rng.normal(150, 3, (size, size, 3)), 0, 255).astype(np.uint8)
    if part_at is not None:
        x, y = part_at
        img[y:y + 30, x:x + 30] = 40
    return img


def test_part_present_fires_once_per_part_that_comes_to_rest():
    rng = np.random.default_rng(0)
    trig = PartPresentTrigger(TriggerConfig(mode="part-present", reference_frames=3, still_frames=2, empty_frames=2))
    # (frames of empty belt, then a part that slides in and stops, then leaves) x 3, and a part
    # that passes without stopping (not inspected, counted as unsettled).
    script = [None] * 5
    for _ in range(3):
        script += [(0, 30), (20, 30), (40, 30)] + [(40, 30)] * 4 + [None] * 3
    script += [(0, 30), (30, 30), (60, 30)] + [None] * 3
    t = 0.0
    fired = []
    for pos in script:
        t += 0.05
        decision = trig.on_frame(Frame(_belt(rng, pos), t))
        if decision is not None:
            fired.append(round(decision.triggered_at, 2))
    assert len(fired) == 3
    assert trig.unsettled == 1


# ---------------------------------------------------------------- sources
def test_watched_folder_reads_each_file_once_and_only_when_fully_written(tmp_path):
    images = ImageFactory(seed=3)
    (tmp_path / "old.png").write_bytes(encode_jpeg(images.good()))  # already there: inspected first
    src = FolderSource(tmp_path, settle_s=0.4, poll_s=0.02)
    src.open()
    data = encode_jpeg(images.good())
    chunks = np.array_split(np.frombuffer(data, np.uint8), 10)

    def slow_writer():  # camera software writing a file in pieces over ~1 s
        with (tmp_path / "new.jpg").open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk.tobytes())
                fh.flush()
                time.sleep(0.1)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    frames = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and len(frames) < 2:
        frame = src.read()
        if frame is not None:
            frames.append(frame)
    writer.join()
    assert [f.name for f in frames] == ["old.png", "new.jpg"]
    assert all(f.error is None and f.part for f in frames)
    assert frames[1].image.shape == (128, 128, 3)
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:  # nothing is read twice
        assert src.read() is None
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    deadline = time.monotonic() + 2.0
    bad = None
    while bad is None and time.monotonic() < deadline:
        bad = src.read()
    assert bad.name == "bad.jpg" and bad.image is None and "bad.jpg" in bad.error


@pytest.mark.parametrize("content_length", [True, False], ids=["with-length", "without-length"])
def test_mjpeg_stream_reads_frames_and_flags_a_corrupt_one(content_length):
    """OpenCV reads the HTTP MJPEG stream; the JPEGs are decoded by ``load_image``, so a truncated
    frame is reported corrupt (FFmpeg's decoder would conceal it with the previous frame)."""
    images = ImageFactory(seed=4)
    frames = [encode_jpeg(images.good()) for _ in range(6)]
    frames[2] = frames[2][: len(frames[2]) // 3]
    camera = MjpegCamera(frames, fps=100, content_length=content_length).start()
    try:
        src = OpenCVSource(camera.url, "stream", timeout_s=2)
        src.open()
        got = [src.read() for _ in range(5)]
        assert [f.error is None for f in got] == [True, True, False, True, True]
        assert got[0].image.shape == (128, 128, 3)
        assert np.array_equal(got[1].image, load_image(frames[1]))  # the very frame that was sent
        src.close()
    finally:
        camera.kill()


def test_snapshot_url_is_fetched_once_per_frame():
    images = ImageFactory(seed=7)
    frames = [encode_jpeg(images.good()) for _ in range(3)]
    camera = SnapshotCamera(frames).start()
    try:
        src = OpenCVSource(camera.url, "stream", timeout_s=2)
        src.open()
        got = [src.read() for _ in range(4)]
        src.close()
    finally:
        camera.stop()
    assert camera.requests == 4 and all(f.error is None for f in got)
    assert got[0].image.shape == (128, 128, 3)
    assert not np.array_equal(got[0].image, got[1].image) and np.array_equal(got[0].image, got[3].image)


def test_camera_link_reconnects_with_backoff_and_records_the_gap():
    images = ImageFactory(seed=5)
    frames = [encode_jpeg(images.good()) for _ in range(400)]
    camera = MjpegCamera(frames, fps=50).start()
    stop = threading.Event()
    cfg = SourceConfig(uri=camera.url, reconnect_initial_s=0.1, reconnect_max_s=0.4, read_timeout_s=2)
    states = []
    link = CameraLink(OpenCVSource(camera.url, "stream", timeout_s=2), cfg, stop, on_state=states.append)
    got = 0
    restarted = False
    for frame in link.frames():
        got += frame is not None
        if got == 10 and not restarted:
            camera.kill()
            threading.Timer(1.0, camera.restart).start()
            restarted = True
            got += 1
        if got >= 25:
            stop.set()
    camera.kill()
    assert states[:3] == [CameraState.CONNECTED, CameraState.RECONNECTING, CameraState.CONNECTED]
    assert states[-1] == CameraState.DISCONNECTED
    assert link.reconnects == 1 and len(link.gaps) == 1 and 0.8 <= link.gaps[0] <= 4.0


def test_push_source_refuses_when_full():
    src = PushSource(maxsize=1, poll_s=0.01)
    data = encode_jpeg(ImageFactory(seed=6).good())
    assert src.push(data, "a.jpg") and not src.push(data, "b.jpg", timeout=0.1)
    frame = src.read()
    assert frame.name == "a.jpg" and frame.part and frame.image is not None


# ---------------------------------------------------------------- sinks
class _FlakyReceiver:
    """An HTTP endpoint that answers 503 to the first ``failures`` POSTs, then 200."""

    def __init__(self, failures: int):
        self.failures, self.received, self.attempts = failures, [], 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= receiver.failures:
                    self.send_response(503)
                else:
                    receiver.received.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_webhook_retries_then_dead_letters(tmp_path):
    metrics = StationMetrics("s", "p")
    receiver = _FlakyReceiver(failures=2)
    try:
        sink = WebhookSink(WebhookConfig(url=receiver.url, retries=3, backoff_s=0.05,
                                         dead_letter=tmp_path / "dead.jsonl"), metrics)
        sink.submit({"verdict": "FAIL", "seq": 1})
        sink.submit({"verdict": "PASS", "seq": 2})
        assert sink.close(timeout=5) == 0
        assert [m["seq"] for m in receiver.received] == [1, 2] and receiver.attempts == 4
        assert not (tmp_path / "dead.jsonl").exists()
    finally:
        receiver.close()
    dead = tmp_path / "dead.jsonl"
    sink = WebhookSink(WebhookConfig(url=f"http://127.0.0.1:{free_port()}/nobody", retries=1, backoff_s=0.05,
                                     verdicts=["FAIL"], dead_letter=dead), metrics)
    sink.submit({"verdict": "FAIL", "seq": 7})
    sink.submit({"verdict": "PASS", "seq": 8})  # not subscribed: not sent, not dead-lettered
    sink.close(timeout=5)
    lines = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [d["payload"]["seq"] for d in lines] == [7] and "Error" in lines[0]["error"]


def test_csv_sink_appends_rows_under_one_header(tmp_path):
    path = tmp_path / "out" / "results.csv"
    sink = CsvSink(CsvConfig(path=path))
    sink.write({"seq": 1, "verdict": "PASS", "score": 0.1, "regions": []})
    CsvSink(CsvConfig(path=path)).write({"seq": 2, "verdict": "FAIL", "score": 0.9, "regions": [{}, {}]})
    lines = path.read_text().splitlines()
    assert lines[0].startswith("time,station,seq") and len(lines) == 3
    assert lines[2].split(",")[2] == "2" and ",FAIL,0.9," in lines[2] and ",2," in lines[2]


def test_malloc_controls_work_on_glibc_and_are_harmless_elsewhere():
    """The station's memory controls: a real arena cap and heap trim where glibc is the C
    library (Linux here), a quiet False elsewhere; never an exception."""
    import platform

    from inspect_app.line.memory import cap_malloc_arenas, release_free_memory

    blocks = [bytearray(1 << 16) for _ in range(2000)]  # ~130 MB of heap, then freed
    del blocks
    trimmed = release_free_memory()
    capped = cap_malloc_arenas()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert capped is True and trimmed is True
    else:
        assert capped is False and trimmed is False


# ---------------------------------------------------------------- metrics: the station's only counters
def test_station_counts_are_read_back_from_the_prometheus_metrics():
    from prometheus_client import generate_latest

    metrics = StationMetrics("s", "p")
    metrics.triggers.labels("continuous").inc(5)
    metrics.triggers.labels("push").inc()
    metrics.frames_dropped.inc(2)
    metrics.parts_rejected.labels("no camera frame").inc()
    metrics.results.labels(Verdict.PASS).inc(3)
    metrics.results.labels(Verdict.ERROR).inc()
    metrics.results_stored.inc(3)
    metrics.sink_errors.labels("store").inc()
    metrics.explanations_pending.inc(2)
    metrics.explanations_pending.dec()
    metrics.mqtt_published.labels("result").inc(4)
    metrics.mqtt_published.labels("status").inc()
    counts = metrics.snapshot()
    assert (counts.triggered, counts.dropped, counts.rejected, counts.admitted) == (6, 2, 1, 5)
    assert counts.results == 4 and counts.verdicts == {Verdict.PASS: 3, Verdict.FAIL: 0, Verdict.ERROR: 1}
    assert (counts.stored, counts.store_failed, counts.explaining, counts.captured) == (3, 1, 1, 0)
    assert metrics.mqtt_counts() == (5, 4, 0)
    text = generate_latest(metrics.registry).decode()
    assert 'inspect_line_results_total{verdict="PASS"} 3.0' in text and "inspect_line_explanations_pending 1.0" in text


def test_the_line_imports_without_torch():
    """The line loads the Inspector (and torch) only when a station starts; its modules, the CLI
    command module and the sink settings import without it."""
    import subprocess
    import sys

    code = ("import sys, inspect_app.line, inspect_app.line.commands, inspect_app.product_settings; "
            "print(sorted(m for m in ('torch', 'inspect_app.inspector', 'inspect_app.api') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
