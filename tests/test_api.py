"""REST API on a real SQLite store with the fitted tiny inspector: inspect uploads, bad uploads
(4xx, never 500), results with filters, health, Prometheus metrics, triggers, and the
``inspect-app api`` command served by uvicorn."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from line_support import bearer
from PIL import Image
from prometheus_client import CollectorRegistry, Counter

from inspect_app.api import create_app
from inspect_app.line import Station, StationConfig
from inspect_app.line.testing import free_port
from inspect_app.store import ResultsStore

from conftest import ImageFactory


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def saved_models(fitted_inspector, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("api_models")
    fitted_inspector.save(root)
    return root


@pytest.fixture
def store(tmp_path):
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}", images_dir=tmp_path / "images") as opened:
        yield opened


@pytest.fixture
def client(saved_models, store):
    with TestClient(create_app(saved_models, store), headers=bearer(store)) as test_client:
        yield test_client


def inspect(client, data: bytes, name: str = "part.png", **params):
    return client.post("/inspect", params={"product": "gradient", **params}, files={"file": (name, data, "image/png")})


def test_inspect_stores_and_returns_the_inspectors_result(client, store, fitted_inspector):
    factory = ImageFactory(seed=11)
    good, bad = factory.good(), factory.defective(64, 64, radius=12)
    expected = fitted_inspector.predict([good, bad])
    r_good = inspect(client, png_bytes(good), "good.png", lot="L1")
    r_bad = inspect(client, png_bytes(bad), "bad.png", lot="L1", station="cam-3")
    assert r_good.status_code == 200 and r_bad.status_code == 200
    good_json, bad_json = r_good.json(), r_bad.json()
    for got, want in ((good_json, expected[0]), (bad_json, expected[1])):
        assert got["verdict"] == want.verdict and got["score"] == pytest.approx(want.score, abs=1e-5)
        assert got["stored"] is True and got["product"] == "gradient"
    assert bad_json["verdict"] == "FAIL" and bad_json["regions"]
    assert bad_json["explanation_source"] == "template" and bad_json["explanation"]
    assert bad_json["file"] == "bad.png" and bad_json["station"] == "cam-3"

    stored = store.get(bad_json["id"])
    assert (stored.verdict, stored.lot, stored.station, stored.file) == ("FAIL", "L1", "cam-3", "bad.png")
    assert stored.explanation == bad_json["explanation"]
    assert store.flush(timeout=30) and Path(store.get(bad_json["id"]).overlay_path).is_file()

    listing = client.get("/results", params={"product": "gradient"}).json()
    assert listing["total"] == 2 and [r["id"] for r in listing["results"]] == [bad_json["id"], good_json["id"]]
    fails = client.get("/results", params={"verdict": "fail"}).json()
    assert [r["id"] for r in fails["results"]] == [bad_json["id"]] and fails["total"] == 1
    assert client.get("/results", params={"station": "api"}).json()["results"][0]["id"] == good_json["id"]
    page = client.get("/results", params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 2 and [r["id"] for r in page["results"]] == [good_json["id"]]
    since = client.get("/results", params={"since": "2100-01-01T00:00:00Z"}).json()
    assert since["total"] == 0 and since["results"] == []
    one = client.get(f"/results/{bad_json['id']}").json()
    assert one["verdict"] == "FAIL" and one["time"].endswith("+00:00")


def test_bad_uploads_get_clear_4xx_and_store_nothing(saved_models, store):
    good = png_bytes(ImageFactory(seed=12).good())
    with TestClient(create_app(saved_models, store, max_upload_bytes=len(good) + 100), headers=bearer(store)) as client:
        cases = {
            "text": (inspect(client, b"serial,verdict\n1,ok\n", "notes.csv"), 400, "not a recognised image format"),
            "empty": (inspect(client, b"", "empty.png"), 400, "empty"),
            "corrupt": (inspect(client, good[: len(good) // 2], "cut.png"), 400, "corrupt or truncated"),
            "too large body": (inspect(client, good + b"\0" * 100_000, "big.png"), 413, "exceeds the limit"),
            "too large file": (inspect(client, good + b"\0" * 200, "big2.png"), 413, "exceeds the limit"),
            "tiny": (inspect(client, png_bytes(np.zeros((4, 4, 3), np.uint8)), "tiny.png"), 400, "too small"),
            "unknown product": (client.post("/inspect", params={"product": "nosuch"},
                                            files={"file": ("a.png", good, "image/png")}),
                                404, "fitted products: gradient"),
            "bad product name": (client.post("/inspect", params={"product": "../etc"},
                                             files={"file": ("a.png", good, "image/png")}),
                                 400, "invalid product name"),
        }
        for label, (response, status, words) in cases.items():
            assert response.status_code == status, (label, response.text)
            assert words in response.json()["detail"], (label, response.json())
        missing = client.post("/inspect", params={"product": "gradient"})
        assert missing.status_code == 422
        assert client.get("/results", params={"verdict": "MAYBE"}).status_code == 400
        assert client.get("/results", params={"since": "yesterday"}).status_code == 422
        assert client.get("/results/999").status_code == 404
        assert inspect(client, good).status_code == 200  # just under the limit still works
        metrics = client.get("/metrics").text
    assert store.count() == 1
    assert 'inspect_api_rejected_uploads_total{reason="not_an_image"} 3.0' in metrics
    assert 'inspect_api_rejected_uploads_total{reason="too_large"} 2.0' in metrics


def test_corrupt_profile_is_a_409(tmp_path, saved_models, store):
    import shutil

    root = tmp_path / "models"
    shutil.copytree(saved_models / "gradient", root / "gradient")
    (root / "gradient" / "profile.json").write_text("{ not json")
    with TestClient(create_app(root, store), headers=bearer(store)) as client:
        response = inspect(client, png_bytes(ImageFactory(seed=13).good()))
    assert response.status_code == 409 and "cannot be used" in response.json()["detail"]


def test_health_metrics_openapi(client):
    health = client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["products"] == ["gradient"] and body["store"] == {"ok": True,
                                                                                             "dialect": "sqlite"}
    assert body["version"] and "station" not in body
    inspect(client, png_bytes(ImageFactory(seed=14).good()))
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'inspect_api_requests_total{method="POST",route="/inspect",status="200"} 1.0' in text
    assert 'inspect_api_inspections_total{product="gradient",verdict="PASS"} 1.0' in text
    assert 'inspect_api_inspection_seconds_count{product="gradient"} 1.0' in text
    assert 'inspect_api_request_seconds_bucket{le="+Inf",route="/health"} 1.0' in text
    assert client.get("/openapi.json").status_code == client.get("/docs").status_code == 404  # off by default


def test_docs_when_enabled(saved_models, store):
    with TestClient(create_app(saved_models, store, docs=True)) as client:
        spec = client.get("/openapi.json").json()
        assert {"/inspect", "/results", "/results/{rid}", "/health", "/metrics", "/trigger"} <= set(spec["paths"])
        assert client.get("/docs").status_code == 200


class FakeStation:
    """What the API needs of a line station (``inspect_app.api.station.ServedStation``): trigger(),
    push(), status() and metrics_registry, answering ``{"accepted": bool, "reason": ...}``."""

    def __init__(self):
        self.running = True
        self.pushed: list[tuple[str, int]] = []
        self.metrics_registry = CollectorRegistry()
        self.triggers = Counter("inspect_line_external_triggers", "Triggers", ["source"],
                                registry=self.metrics_registry)

    def trigger(self) -> dict:
        if not self.running:
            return {"accepted": False, "trigger": None, "reason": "station is stopped"}
        self.triggers.labels("http").inc()
        return {"accepted": True, "trigger": 1, "reason": None}

    def push(self, data: bytes, name: str | None = None) -> dict:
        self.pushed.append((name, len(data)))
        return {"accepted": True, "part": None, "reason": None}

    def status(self) -> dict:
        return {"station": "cam-1", "fps": 10.0, "camera": "connected"}


def test_trigger_frames_and_station_metrics(saved_models, store):
    with TestClient(create_app(saved_models, store), headers=bearer(store)) as client:
        for path in ("/trigger", "/frames"):
            response = client.post(path, files={"file": ("a.png", b"x", "image/png")} if path == "/frames" else None)
            assert response.status_code == 404 and "no station is attached" in response.json()["detail"]
    station = FakeStation()
    with TestClient(create_app(saved_models, store, station), headers=bearer(store)) as client:
        response = client.post("/trigger")
        assert response.status_code == 202 and response.json() == {"accepted": True, "trigger": 1, "reason": None}
        text = client.get("/metrics").text
        assert 'inspect_line_external_triggers_total{source="http"} 1.0' in text
        assert "inspect_api_requests_total" in text
        assert client.get("/health").json()["station"]["camera"] == "connected"
        response = client.post("/frames", files={"file": ("p1.jpg", b"jpeg bytes", "image/jpeg")})
        assert response.status_code == 202 and station.pushed == [("p1.jpg", 10)]
        assert client.post("/frames", files={"file": ("p2.jpg", b"", "image/jpeg")}).status_code == 400
        station.running = False
        response = client.post("/trigger")
        assert response.status_code == 409 and response.json()["detail"] == "the station refused: station is stopped"
    station.push = lambda data, name=None: 1 / 0  # a bug in the station: JSON 500, not a bare page
    with TestClient(create_app(saved_models, store, station), raise_server_exceptions=False,
                    headers=bearer(store)) as client:
        response = client.post("/frames", files={"file": ("p3.jpg", b"jpeg", "image/jpeg")})
        assert response.status_code == 500 and response.json()["detail"].startswith("internal error: ZeroDivisionError")
    registry = CollectorRegistry()
    Counter("inspect_line_frames_captured", "Frames", registry=registry).inc(7)
    with TestClient(create_app(saved_models, store, metrics_registry=registry), headers=bearer(store)) as client:
        assert "inspect_line_frames_captured_total 7.0" in client.get("/metrics").text


def test_with_a_real_push_station(saved_models, store, fitted_inspector, tmp_path):
    config = StationConfig.model_validate({"name": "api-test", "product": "gradient", "models_dir": str(saved_models),
                                           "source": {"uri": "push"}, "explain": {"enabled": False},
                                           "store": {"spool": str(tmp_path / "spool.db")}})
    station = Station(config, inspector=fitted_inspector, store=store).start()
    try:
        with TestClient(create_app(saved_models, store, station), headers=bearer(store)) as client:
            factory = ImageFactory(seed=17)
            for i in range(3):
                response = client.post("/frames", files={"file": (f"part{i}.png", png_bytes(factory.good()),
                                                                  "image/png")})
                assert response.status_code == 202, response.text
            deadline = time.monotonic() + 60
            while store.count(station="api-test") < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert store.count(station="api-test") == 3
            refused = client.post("/trigger")  # a push station has no external trigger
            assert refused.status_code == 409 and "not 'external'" in refused.json()["detail"]
            assert "inspect_line_results_stored_total 3.0" in client.get("/metrics").text
            assert client.get("/health").json()["station"]
    finally:
        station.stop(timeout=30)


def test_explanations_follow_settings_and_explainer(saved_models, store):
    from inspect_app.explain import Explanation

    class ImmediateExplainer:
        def __init__(self):
            self.calls = 0

        def submit(self, result) -> Future:
            self.calls += 1
            future: Future = Future()
            future.set_result(Explanation("language model sentence", "language-model", None, None, 0.1))
            return future

    bad = png_bytes(ImageFactory(seed=15).defective(64, 64, radius=12))
    explainer = ImmediateExplainer()
    with TestClient(create_app(saved_models, store, explainer=explainer), headers=bearer(store)) as client:
        first = inspect(client, bad).json()
        assert first["explanation_source"] == "template"  # the response never waits for the model
        assert store.get(first["id"]).explanation == "language model sentence"
        assert explainer.calls == 1
        store.set_settings("gradient", {"explanations": False}, user="ann")
        second = inspect(client, bad).json()
        assert second["verdict"] == "FAIL" and "explanation" not in second and explainer.calls == 1
        assert store.get(second["id"]).explanation is None


def test_inspector_cache_reloads_a_refitted_profile(saved_models, tmp_path):
    import shutil

    from inspect_app.inspector_cache import InspectorCache

    root = tmp_path / "models"
    shutil.copytree(saved_models / "gradient", root / "gradient")
    cache = InspectorCache(root)
    first, lock = cache.get("gradient")
    assert cache.get("gradient")[0] is first
    profile = root / "gradient" / "profile.json"
    os.utime(profile, (profile.stat().st_atime, profile.stat().st_mtime + 10))
    second, same_lock = cache.get("gradient")
    assert second is not first and same_lock is lock


@pytest.mark.slow
def test_api_command_serves_with_uvicorn(saved_models, tmp_path):
    port = free_port()
    url = f"sqlite:///{tmp_path / 'served.db'}"
    with ResultsStore(url) as store:
        headers = bearer(store, "station")
    cmd = [sys.executable, "-c", "from inspect_app.cli import main; main()", "api", "--port", str(port),
           "--models-dir", str(saved_models), "--store", url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the API did not start within 90 s"
                time.sleep(0.3)
        assert health.json()["products"] == ["gradient"]
        upload = {"file": ("p.png", png_bytes(ImageFactory(seed=16).good()), "image/png")}
        anonymous = httpx.post(f"http://127.0.0.1:{port}/inspect", params={"product": "gradient"}, files=upload)
        assert anonymous.status_code == 401
        response = httpx.post(f"http://127.0.0.1:{port}/inspect", params={"product": "gradient"},
                              files=upload, timeout=60, headers=headers)
        assert response.status_code == 200 and response.json()["stored"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with ResultsStore(url) as store:
        assert store.count() == 1
