"""A running station picks up a new profile version (here a moved threshold, as Settings or an
approved false reject writes it) without a restart or a lost frame, and keeps its version when the
changed profile cannot be loaded."""

from __future__ import annotations

import pytest
from line_support import station_config, wait_until

from inspect_app.inspector import Inspector
from inspect_app.line import Station
from inspect_app.line.testing import encode_jpeg
from inspect_app.profile import PROFILE_FILE
from inspect_app.store import ResultsStore

from conftest import ImageFactory


@pytest.fixture
def store(tmp_path):
    s = ResultsStore(f"sqlite:///{tmp_path}/results.db", images_dir=tmp_path / "images")
    yield s
    s.close()


def _push_until(station: Station, store: ResultsStore, images: ImageFactory, condition, what: str) -> None:
    """Push good parts one at a time until ``condition(rows)`` holds for the stored results."""
    sent = len(store.query(station="t1", limit=10_000))

    def step():
        nonlocal sent
        assert station.push(encode_jpeg(images.good()), f"part-{sent}.jpg")["accepted"]
        sent += 1
        wait_until(lambda: len(store.query(station="t1", limit=10_000)) == sent, 30, what="the part stored")
        return condition(store.query(station="t1", limit=10_000))

    wait_until(step, 60, interval=0.0, what=what)


def test_station_swaps_in_a_new_profile_version_without_losing_a_part(tmp_path, store, fitted_inspector, models_dir):
    fitted_inspector.save(models_dir)
    first = fitted_inspector.profile_version
    cfg = station_config("push", models_dir=str(models_dir), pipeline={"profile_check_s": 0.1})
    station = Station(cfg, store=store).start()
    images = ImageFactory(seed=21)
    try:
        _push_until(station, store, images, lambda rows: len(rows) >= 3, "three parts judged")
        assert station.status()["profile_version"] == first
        changed = Inspector.load("gradient", models_dir)
        changed.set_target_frr(0.05)
        changed.save(models_dir)
        second = changed.profile_version
        assert second != first
        _push_until(station, store, images, lambda rows: any(r.profile_version == second for r in rows),
                    "a result judged by the new version")
        for _ in range(3):  # and it stays on it
            _push_until(station, store, images, lambda rows: True, "one more part")
    finally:
        final = station.stop()
    rows = sorted(store.query(station="t1", limit=10_000), key=lambda r: r.id)
    versions = [r.profile_version for r in rows]
    assert final["stored"] == len(rows) == len({r.file for r in rows})  # none lost, none twice
    switch = versions.index(second)
    assert set(versions[:switch]) == {first} and set(versions[switch:]) == {second}
    assert final["profile_version"] == second
    assert station.metrics.profile_reloads._value.get() == 1


def test_a_profile_that_cannot_be_loaded_raises_an_alarm_and_the_old_version_keeps_judging(
        tmp_path, store, fitted_inspector, models_dir):
    fitted_inspector.save(models_dir)
    first = fitted_inspector.profile_version
    cfg = station_config("push", models_dir=str(models_dir), pipeline={"profile_check_s": 0.1})
    station = Station(cfg, store=store).start()
    images = ImageFactory(seed=22)
    try:
        _push_until(station, store, images, lambda rows: len(rows) >= 2, "two parts judged")
        (models_dir / "gradient" / PROFILE_FILE).write_bytes(b"half-written profile")
        _push_until(station, store, images,
                    lambda rows: any(a["kind"] == "profile_reload_failed" for a in store.alarms()),
                    "the reload alarm")
        _push_until(station, store, images, lambda rows: len(rows) >= 8, "more parts judged")
    finally:
        final = station.stop()
    rows = store.query(station="t1", limit=10_000)
    assert final["stored"] == len(rows) >= 8 and {r.profile_version for r in rows} == {first}
    assert {r.verdict for r in rows} <= {"PASS", "FAIL"}
