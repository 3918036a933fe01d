"""Fault tests of the line station, small and bounded (the long loops are benchmarks/line_faults.py):
``kill -9`` at random points with a restart of the same command, the MQTT broker down and up,
the database down and up (a SQLite write lock held past the busy timeout; PostgreSQL cut by a
proxy), files that never finish or are not images, SIGTERM with explanations running, and two
stations with one name. Each checks frames in = results stored once = results published (by id)."""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path

import pytest
from line_support import station_config, wait_until
from sqlalchemy.exc import OperationalError

from inspect_app.explain import ExplainerService
from inspect_app.line import Station
from inspect_app.line.fault_testing import (
    ResultCollector,
    StationProcess,
    TcpProxy,
    hold_sqlite_lock,
    write_station_config,
)
from inspect_app.line.testing import Mosquitto
from inspect_app.store import ResultsStore, StoreError

from conftest import ImageFactory

needs_mosquitto = pytest.mark.skipif(not Mosquitto.available(),
                                     reason="mosquitto is not installed (.ci/run installs it)")


def drop_folder(root: Path, n: int, seed: int = 0, defective_every: int = 5) -> Path:
    folder = root / "drop"
    folder.mkdir(parents=True)
    images = ImageFactory(seed=seed)
    for i in range(n):
        image = images.defective(64, 64, radius=14) if i % defective_every == defective_every - 1 else images.good()
        images.write(folder / f"part{i:04d}.png", image)
    return folder


def assert_exactly_once(store: ResultsStore, station: str, n: int, collector: ResultCollector | None = None) -> None:
    rows = store.query(station=station, limit=100_000)
    keys = [r.frame_key for r in rows]
    assert len(rows) == n and len(set(keys)) == n and None not in keys  # nothing lost, nothing twice
    assert len({r.file for r in rows}) == n
    if collector is not None:
        wait_until(lambda: {r.id for r in rows} <= set(collector.received()), 20, what="every result id on MQTT")
        received = collector.received()
        assert None not in received and set(received) == {r.id for r in rows}


@needs_mosquitto
@pytest.mark.slow
def test_kill9_at_random_points_and_a_broker_outage_lose_nothing_and_store_nothing_twice(
        tmp_path, fitted_inspector, models_dir):
    fitted_inspector.save(models_dir)
    n = 60
    folder = drop_folder(tmp_path, n, seed=1)
    broker = Mosquitto(tmp_path / "mosquitto").start()
    url = f"sqlite:///{tmp_path / 'results.db'}"
    config = write_station_config(tmp_path / "station.yaml", name="f1", product="gradient", folder=folder,
                                  store_url=url, models_dir=models_dir, mqtt_port=broker.port,
                                  pipeline={"batch_size": 2})
    collector = ResultCollector(broker.port, "f1")
    store = ResultsStore(url)
    rng = random.Random(7)
    process = StationProcess(config, tmp_path / "station.log")
    try:
        for kill in range(2):
            process.start()
            target = store.count(station="f1") + rng.randint(3, 12)
            wait_until(lambda t=target: store.count(station="f1") >= t, 120, interval=0.02, what="results")
            if kill == 1:
                broker.restart(down_s=1.0)  # results published meanwhile wait in the outbox
            process.kill9()
        process.start()
        assert process.wait(180) == 0, (tmp_path / "station.log").read_text()[-3000:]  # --drain: done, exit 0
        assert_exactly_once(store, "f1", n, collector)
        assert not list(folder.iterdir()) and len(list((tmp_path / "done").iterdir())) == n
        log = (tmp_path / "station.log").read_text()
        assert log.count("station f1 running") == 3 and log.count('{"final"') == 1  # two runs died without a word
    finally:
        collector.close()
        store.close()
        broker.stop()


def test_files_that_never_finish_or_are_not_images_are_accounted_for(tmp_path, store, fitted_inspector, caplog):
    folder = drop_folder(tmp_path, 4, seed=2)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("shift notes")
    growing = folder / "growing.png"
    stop = threading.Event()

    def grow() -> None:
        with growing.open("ab") as fh:
            while not stop.is_set():
                fh.write(b"\0" * 64)
                fh.flush()
                time.sleep(0.05)

    writer = threading.Thread(target=grow)
    writer.start()
    cfg = station_config(str(folder), source={"incomplete_s": 1.0, "drain": True, "done_dir": str(tmp_path / "done")})
    caplog.set_level(logging.WARNING, "inspect_app.line.sources")
    station = Station(cfg, inspector=fitted_inspector, store=store).start()
    try:
        assert station.finished.wait(60)
    finally:
        final = station.stop()
        stop.set()
        writer.join()
    rows = {r.file: r for r in store.query(station="t1")}
    assert len(rows) == 6 and final["stored"] == final["results"] == 6
    assert rows["empty.png"].verdict == "ERROR" and "stayed empty for 1 s" in rows["empty.png"].error
    assert rows["growing.png"].verdict == "ERROR" and "kept changing for 1 s" in rows["growing.png"].error
    assert final["files"]["ignored"] == 1 and (folder / "notes.txt").exists()
    assert sum("notes.txt is not an image" in r.message for r in caplog.records) == 1  # logged once
    text = "".join(line.decode() for line in _metrics_lines(station))
    assert "inspect_line_files_ignored_total 1.0" in text


def _metrics_lines(station: Station) -> list[bytes]:
    from prometheus_client import generate_latest

    return generate_latest(station.metrics_registry).splitlines(keepends=True)


@pytest.fixture
def store(tmp_path):
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}", images_dir=tmp_path / "images") as opened:
        yield opened


@pytest.mark.slow
def test_sqlite_locked_past_the_busy_timeout_spools_and_replays_in_order(tmp_path, store, fitted_inspector):
    folder = tmp_path / "drop"
    folder.mkdir()
    images = ImageFactory(seed=3)
    cfg = station_config(str(folder), source={"drain": False})
    station = Station(cfg, inspector=fitted_inspector, store=store).start()
    try:
        images.write(folder / "a0.png", images.good())
        wait_until(lambda: station.status()["stored"] == 1, 30, what="the first result")
        lock = hold_sqlite_lock(tmp_path / "results.db", 12.0)  # > the store's 10 s busy timeout
        time.sleep(0.2)
        for i in range(1, 6):
            images.write(folder / f"a{i}.png", images.good())
        wait_until(lambda: station.status()["store"]["spooled"] >= 1, 30, what="spooling")  # a counter: no race
        lock.join()
        wait_until(lambda: station.status()["stored"] == 6, 40, what="the spool replayed")
        store_state = station.status()["store"]
        assert store_state["state"] == "ok" and store_state["spool_depth"] == 0 and 1 <= store_state["spooled"] <= 5
    finally:
        final = station.stop()
    rows = store.query(station="t1", newest_first=False)
    assert [r.file for r in rows] == [f"a{i}.png" for i in range(6)]  # replayed in order
    assert final["stored"] == final["results"] == 6 and final["store_failed"] == 0


@needs_mosquitto
def test_postgresql_down_and_up_loses_nothing_and_publishes_final_ids(tmp_path, fitted_inspector, postgres_url):
    from line_support import bearer  # noqa: F401  (keeps the import path of the shared helpers obvious)
    from sqlalchemy.engine import make_url

    real = make_url(postgres_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    broker = Mosquitto(tmp_path / "mosquitto").start()
    collector = ResultCollector(broker.port, "t1")
    folder = tmp_path / "drop"
    folder.mkdir()
    images = ImageFactory(seed=4)
    store = ResultsStore(url, images_dir=tmp_path / "images")
    station = Station(station_config(str(folder), broker), inspector=fitted_inspector, store=store).start()
    try:
        for i in range(3):
            images.write(folder / f"p{i}.png", images.good())
        wait_until(lambda: station.status()["stored"] == 3, 30, what="results before the outage")
        proxy.cut()
        for i in range(3, 9):
            images.write(folder / f"p{i}.png", images.defective(64, 64, 14) if i % 2 else images.good())
        wait_until(lambda: station.status()["store"]["spool_depth"] >= 1, 30, what="spooling")
        time.sleep(1.0)
        proxy.restore()
        wait_until(lambda: station.status()["stored"] == 9, 60, what="the spool replayed")
    finally:
        final = station.stop()
    try:
        assert final["store"]["spooled"] >= 1 and final["store_failed"] == 0
        assert_exactly_once(store, "t1", 9, collector)
    finally:
        store.close()
        collector.close()
        broker.stop()
        proxy.close()


class FlakyStore:
    """A real store whose writes fail while ``down`` is set (a database that went away)."""

    def __init__(self, store: ResultsStore):
        self._store = store
        self.down = threading.Event()

    def __getattr__(self, name: str):
        attr = getattr(self._store, name)
        if name in ("add_result", "find_frame") and callable(attr):
            def guarded(*args, **kwargs):
                if self.down.is_set():
                    raise OperationalError("INSERT", {}, Exception("server closed the connection"))
                return attr(*args, **kwargs)
            return guarded
        return attr


def test_health_is_degraded_while_results_are_spooled(tmp_path, store, fitted_inspector):
    from fastapi.testclient import TestClient
    from line_support import bearer

    from inspect_app.api import create_app

    flaky = FlakyStore(store)
    folder = tmp_path / "drop"
    folder.mkdir()
    images = ImageFactory(seed=5)
    station = Station(station_config(str(folder)), inspector=fitted_inspector, store=flaky).start()
    try:
        with TestClient(create_app(store=store, station=station), headers=bearer(store, "viewer")) as client:
            flaky.down.set()
            images.write(folder / "x0.png", images.good())
            wait_until(lambda: station.status()["store"]["spool_depth"] == 1, 30, what="the spooled result")
            health = client.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "degraded"
            assert "inspect_line_results_spooled_total 1.0" in client.get("/metrics").text
            flaky.down.clear()
            wait_until(lambda: station.status()["stored"] == 1, 30, what="the replay")
            assert client.get("/health").json()["status"] == "ok"
    finally:
        station.stop()


class SlowGenerator:
    """A language model that needs far longer than a shutdown may take."""

    source = "language-model"

    def generate_batch(self, results: list, max_seconds: float | None = None) -> list[str]:
        time.sleep(min(max_seconds or 30.0, 30.0))
        return ["A dark spot." for _ in results]


def test_stop_cuts_running_explanations_within_the_shutdown_limit(tmp_path, store, fitted_inspector):
    folder = drop_folder(tmp_path, 8, seed=6, defective_every=2)
    explainer = ExplainerService(variant="facts", timeout_s=30, generator_factory=SlowGenerator)
    cfg = station_config(str(folder), explain={"enabled": True}, pipeline={"shutdown_timeout_s": 4})
    station = Station(cfg, inspector=fitted_inspector, store=store, explainer=explainer).start()
    try:
        wait_until(lambda: station.status()["results"] == 8, 30, what="every result")
        start = time.monotonic()
        final = station.stop()
        assert time.monotonic() - start < 5.0
    finally:
        explainer.close()
    fails = store.query(station="t1", verdict="FAIL")
    assert len(fails) == final["counts"]["FAIL"] >= 3 and final["stored"] == 8
    assert final["explanations"]["cut_at_shutdown"] == len(fails)
    assert all(r.explanation and r.explanation_source == "template" for r in fails)  # recorded as such


def test_a_live_station_name_is_refused_and_freed_at_stop(tmp_path, store, fitted_inspector):
    (tmp_path / "drop").mkdir()
    first = Station(station_config(str(tmp_path / "drop")), inspector=fitted_inspector, store=store).start()
    try:
        second = Station(station_config(str(tmp_path / "drop")), inspector=fitted_inspector, store=store)
        with pytest.raises(StoreError, match="station 't1' is already running"):
            second.start()
    finally:
        first.stop()
    third = Station(station_config(str(tmp_path / "drop")), inspector=fitted_inspector, store=store).start()
    third.stop()
