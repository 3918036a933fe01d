"""Results store on a real SQLite file (and PostgreSQL when $INSPECT_APP_TEST_POSTGRES_URL is set):
schema from the migrations, results and filters, images with retention, disk failures, users,
audit, settings, station status, the ``user`` command."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inspect_app.results import InspectionResult, Region
from inspect_app.store import ResultsStore, RetentionPolicy, StoreError

from conftest import ImageFactory

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def make_result(verdict: str = "PASS", product: str = "bracket", score: float = 0.2, file: str | None = "a.png",
                size: int = 64) -> InspectionResult:
    """A result as the Inspector produces it (map, regions), without running a model."""
    amap = np.full((size, size), score * 0.5, np.float32)
    regions = []
    if verdict == "FAIL":
        amap[10:20, 30:40] = score
        regions = [Region((30, 10, 40, 20), 0.02, (35.0, 15.0), "top", 1.0, "compact", "medium", score)]
    return InspectionResult(
        file=file, verdict=verdict, score=None if verdict == "ERROR" else score, raw_score=None if verdict == "ERROR"
        else score * 3, regions=regions, anomaly_map=None if verdict == "ERROR" else amap, image_size=(size, size),
        product=product, mode="image-image", profile_version="2026-02-01T10:00:00+00:00",
        timings_ms={"total": 12.5}, error="a.png: corrupt" if verdict == "ERROR" else None)


@pytest.fixture
def store(tmp_path: Path):
    with ResultsStore(f"sqlite:///{tmp_path / 'db' / 'results.db'}", images_dir=tmp_path / "images",
                      retention=RetentionPolicy(keep_every_nth_pass=3)) as opened:
        yield opened


def test_schema_from_migrations_matches_models_and_sqlite_uses_wal(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from inspect_app.store.models import Base

    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        version = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert diff == []
    assert journal == "wal"
    assert version == "0002_exactly_once_and_tokens"


def test_migrations_downgrade_to_nothing_and_upgrade_again(tmp_path):
    from alembic import command

    from inspect_app.store.database import alembic_config

    url = f"sqlite:///{tmp_path / 'r.db'}"
    with ResultsStore(url) as store:
        with store.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        with store.engine.connect() as connection:
            tables = {name for (name,) in
                      connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"alembic_version"}
    with ResultsStore(url) as store:  # opening upgrades again
        store.add_result(make_result())
        assert store.count() == 1


def test_result_round_trip_is_complete_and_utc(store):
    result = make_result("FAIL", score=0.9)
    result.explanation, result.explanation_source = "a dark spot at the top", "template"
    rid = store.add_result(result, station="line-2", lot="L42", time=T0)
    got = store.get(rid)
    assert got.time == T0 and got.time.tzinfo is not None
    assert (got.station, got.lot, got.product, got.verdict, got.file) == ("line-2", "L42", "bracket", "FAIL", "a.png")
    assert got.score == pytest.approx(0.9) and got.raw_score == pytest.approx(2.7) and got.threshold == 0.5
    assert got.profile_version == "2026-02-01T10:00:00+00:00" and got.mode == "image-image"
    assert got.regions == json.loads(json.dumps([result.regions[0].to_dict()])) and got.regions[0]["location"] == "top"
    assert (got.explanation, got.explanation_source) == ("a dark spot at the top", "template")
    store.set_explanation(rid, "language model text", "language-model")
    assert store.get(rid).explanation_source == "language-model"
    assert store.get(rid + 100) is None
    with pytest.raises(StoreError, match="no stored result"):
        store.set_explanation(rid + 100, "x", "template")
    d = got.to_dict()
    assert d["time"] == "2026-03-01T08:00:00+00:00" and d["id"] == rid

    naive_local = store.add_result(make_result(), time=datetime(2026, 3, 1, 9, 0))  # naive means UTC
    assert store.get(naive_local).time == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    now = datetime.now(UTC)
    assert abs(store.get(store.add_result(make_result())).time - now) < timedelta(seconds=5)


def test_query_filters_paging_and_count(store):
    cet = timezone(timedelta(hours=1))
    for i in range(30):
        verdict = "FAIL" if i % 5 == 0 else "PASS"
        store.add_result(make_result(verdict, product="cap" if i % 2 else "bottle", file=None), station=f"s{i % 3}",
                         lot="A" if i < 10 else "B", time=T0 + timedelta(minutes=i))
    assert store.count() == 30
    assert store.count(product="cap") == 15 and store.count(verdict="FAIL") == 6
    assert store.count(verdict=["fail", "pass"]) == 30
    assert store.count(lot="A", verdict="FAIL") == 2  # i = 0, 5
    assert store.count(station="s1", product="cap") == 5
    # since inclusive, until exclusive; an aware datetime in another zone means the same instant
    since, until = T0 + timedelta(minutes=10), (T0 + timedelta(minutes=20)).astimezone(cet)
    window = store.query(since=since, until=until, newest_first=False)
    assert [r.time for r in window] == [T0 + timedelta(minutes=i) for i in range(10, 20)]
    assert store.count(since=since, until=until) == 10
    newest = store.query(limit=7)
    assert [r.time.minute for r in newest] == list(range(29, 22, -1))
    page2 = store.query(limit=7, offset=7)
    assert [r.time.minute for r in page2] == list(range(22, 15, -1))
    assert [r.id for r in store.iter_results(batch_size=4, product="bottle")] == \
        [r.id for r in store.query(product="bottle", newest_first=False)]
    assert store.products() == ["bottle", "cap"]


def test_images_for_fail_and_every_nth_pass_and_none_for_error(store, tmp_path):
    frame = ImageFactory(seed=1).good(64)
    fail = store.add_result(make_result("FAIL", score=0.9), image=frame)
    passes = [store.add_result(make_result("PASS"), image=frame) for _ in range(6)]
    error = store.add_result(make_result("ERROR"), image=None)
    assert store.flush(timeout=30)
    got = store.get(fail)
    image, overlay = np.asarray(Image.open(got.image_path)), np.asarray(Image.open(got.overlay_path))
    assert np.array_equal(image, frame)  # lossless copy of the inspected frame
    assert overlay.shape == frame.shape and not np.array_equal(overlay, frame)
    assert Path(got.image_path).parent.parent.parent == (tmp_path / "images").resolve()
    kept = [store.get(r).image_path is not None for r in passes]
    assert kept == [True, False, False, True, False, False]  # keep_every_nth_pass=3
    assert store.get(error).image_path is None
    assert not list((tmp_path / "images").rglob("*.tmp"))


def test_images_from_the_result_file_when_no_array_is_given(store, tmp_path):
    path = ImageFactory(tmp_path, seed=2).write(tmp_path / "in" / "part.png", ImageFactory(seed=2).good(64))
    rid = store.add_result(make_result("FAIL", score=0.8, file=str(path)))
    missing = store.add_result(make_result("FAIL", score=0.8, file=str(tmp_path / "gone.png")))
    assert store.flush(timeout=30)
    assert Path(store.get(rid).overlay_path).is_file()
    assert store.get(missing).image_path is None
    assert [a["kind"] for a in store.alarms()] == ["image_write_failed"]


def test_retention_prunes_oldest_images_but_keeps_rows(tmp_path):
    frame = ImageFactory(seed=3).good(64)
    with ResultsStore(f"sqlite:///{tmp_path / 'r.db'}", retention=RetentionPolicy(0, max_files=6)) as store:
        ids = [store.add_result(make_result("FAIL", score=0.9), image=frame) for _ in range(5)]
        assert store.flush(timeout=30)
        stored = [store.get(r) for r in ids]
        assert [s.image_path is not None for s in stored] == [False, False, True, True, True]
        files = sorted(p.name for p in (tmp_path / "images").rglob("*.png"))
        assert len(files) == 6 and all(p.split("_")[0] in {str(i) for i in ids[2:]} for p in files)
        assert store.count() == 5
        assert store.add_result(make_result("PASS"), image=frame) and store.flush(timeout=30)
        assert len(list((tmp_path / "images").rglob("*.png"))) == 6  # keep_every_nth_pass=0: no PASS image
    # the byte budget is read back from the database by the next process
    pair = sum(Path(p).stat().st_size for p in (stored[2].image_path, stored[2].overlay_path))
    budget = RetentionPolicy(0, max_bytes=pair * 2 + pair // 2)
    with ResultsStore(f"sqlite:///{tmp_path / 'r.db'}", retention=budget) as store:
        rid = store.add_result(make_result("FAIL", score=0.9), image=frame)
        assert store.flush(timeout=30)
        with_images = [r.id for r in store.query(newest_first=False) if r.image_path]
        assert with_images == [ids[4], rid]


def test_disk_failure_keeps_the_row_and_raises_one_alarm(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the images folder should be")
    frame = ImageFactory(seed=4).good(64)
    with ResultsStore(f"sqlite:///{tmp_path / 'r.db'}", images_dir=blocker / "images") as store:
        ids = [store.add_result(make_result("FAIL", score=0.9), station="cam-1", image=frame) for _ in range(4)]
        assert store.flush(timeout=30)
        rows = [store.get(r) for r in ids]
        assert all(r is not None and r.verdict == "FAIL" and r.image_path is None and r.overlay_path is None
                   for r in rows)
        alarms = store.alarms()
        assert len(alarms) == 1 and alarms[0]["kind"] == "image_write_failed"
        assert "images not saved" in alarms[0]["message"] and "stored without them" in alarms[0]["message"]
        store.raise_alarm("camera_lost", "no frames for 5 s", station="cam-1")
        assert [a["kind"] for a in store.alarms()] == ["camera_lost", "image_write_failed"]
        assert store.alarms(since=datetime.now(UTC) + timedelta(seconds=5)) == []


def test_feedback_and_export(store):
    a = store.add_result(make_result("FAIL", product="cap", score=0.7), lot="L1")
    b = store.add_result(make_result("PASS", product="bottle"))
    store.add_feedback(a, "false_reject", "reflection, not a scratch", user="ann")
    store.add_feedback(b, "missed_defect", user="bob")
    store.add_feedback(a, "confirmed")
    assert [f["kind"] for f in store.get(a).feedback] == ["false_reject", "confirmed"]
    exported = store.feedback(product="cap")
    assert [(f["kind"], f["user"], f["lot"], f["verdict"]) for f in exported] == [
        ("false_reject", "ann", "L1", "FAIL"), ("confirmed", "", "L1", "FAIL")]
    assert exported[0]["note"] == "reflection, not a scratch" and exported[0]["time"].tzinfo is not None
    assert len(store.feedback()) == 3
    with pytest.raises(StoreError, match="unknown feedback kind"):
        store.add_feedback(a, "looks fine")
    with pytest.raises(StoreError, match="no stored result"):
        store.add_feedback(a + 1000, "confirmed")


def test_users_roles_passwords_and_audit(store):
    store.add_user("ann", "engineer", "s3cret!", by="admin")
    store.add_user("op1", "operator", None)
    with pytest.raises(StoreError, match="engineer needs a password"):
        store.add_user("eve", "engineer", None)
    with pytest.raises(StoreError, match="already exists"):
        store.add_user("ann", "operator", None)
    with pytest.raises(StoreError, match="unknown role"):
        store.add_user("max", "admin", "pw")
    with pytest.raises(StoreError, match="invalid user name"):
        store.add_user("no spaces", "operator", None)
    assert store.verify_user("ann", "s3cret!").role == "engineer"
    assert store.verify_user("ann", "wrong") is None and store.verify_user("ann", None) is None
    assert store.verify_user("op1", None).role == "operator" and store.verify_user("op1", "guess") is None
    assert store.verify_user("nobody", "x") is None
    assert [(u.name, u.role, u.has_password) for u in store.users()] == [("ann", "engineer", True),
                                                                         ("op1", "operator", False)]
    with store.engine.connect() as connection:
        hashes = [h for (h,) in connection.exec_driver_sql("SELECT password_hash FROM users")]
    assert hashes[0].startswith("$argon2") and "s3cret!" not in hashes[0]
    store.audit("ann", "profile.delete", {"product": "cap"})
    store.audit("op1", "inspect", "uploaded 3 images")
    log = store.audit_log()
    assert [(e["user"], e["action"]) for e in log] == [("op1", "inspect"), ("ann", "profile.delete"),
                                                       ("", "user.add"), ("admin", "user.add")]
    assert log[0]["detail"] == "uploaded 3 images" and log[1]["detail"] == {"product": "cap"}
    assert len(store.audit_log(limit=2)) == 2


def test_settings_and_station_status(store):
    assert store.get_settings("cap") == {}
    store.set_settings("cap", {"explanations": True, "language": "de"}, user="ann")
    store.set_settings("cap", {"explanations": False, "language": "de"}, user="ann")
    assert store.get_settings("cap") == {"explanations": False, "language": "de"}
    entry = store.audit_log(limit=1)[0]
    assert entry["action"] == "settings.update" and entry["detail"]["before"]["explanations"] is True
    store.update_station_status("cam-1", {"fps": 12.5, "camera": "connected"})
    store.update_station_status("cam-2", {"fps": 0, "camera": "reconnecting"})
    store.update_station_status("cam-1", {"fps": 19.0, "camera": "connected"})
    status = store.station_status()
    assert [(s["station"], s["fps"]) for s in status] == [("cam-1", 19.0), ("cam-2", 0)]
    assert status[0]["updated_at"].tzinfo is not None
    assert store.station_status("cam-2")[0]["camera"] == "reconnecting"


def test_concurrent_writers_and_reopen_keep_every_row(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    stores = [ResultsStore(url), ResultsStore(url)]  # two "processes" on one file
    errors = []

    def write(store, n):
        try:
            for _ in range(n):
                store.add_result(make_result(file=None))
        except Exception as exc:  # pragma: no cover - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(stores[i % 2], 50)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    for s in stores:
        s.close()
    with ResultsStore(url) as again:  # migrations are idempotent
        assert again.count() == 200
        assert len({r.id for r in again.query(limit=500)}) == 200
    with pytest.raises(StoreError, match="closed"):
        stores[0].count()


def test_add_result_is_fast(store):
    frame = ImageFactory(seed=5).good(128)
    times = []
    for i in range(200):
        t0 = time.perf_counter()
        store.add_result(make_result("FAIL" if i % 10 == 0 else "PASS", size=128), image=frame)
        times.append(time.perf_counter() - t0)
    store.flush(timeout=60)
    median, p99 = statistics.median(times) * 1000, sorted(times)[197] * 1000
    print(f"add_result on SQLite (WAL), 200 rows, images in the background: median {median:.2f} ms, "
          f"p99 {p99:.2f} ms (shared CPU: noisy)")
    assert median < 50


def test_real_inspector_result_is_stored_with_overlay(fitted_inspector, tmp_path):
    frame = ImageFactory(seed=7).defective(40, 40, radius=10)
    result = fitted_inspector.predict(frame)
    with ResultsStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        rid = store.add_result(result, lot="L7", image=frame)
        store.flush(timeout=30)
        got = store.get(rid)
    assert got.verdict == result.verdict and got.score == pytest.approx(result.score)
    assert got.product == "gradient" and got.profile_version == fitted_inspector.profile_version
    assert len(got.regions) == len(result.regions)
    if result.verdict == "FAIL":
        assert Path(got.overlay_path).is_file() and Path(got.image_path).is_file()


def test_bad_urls_give_clear_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        ResultsStore(f"sqlite:///{blocker / 'sub' / 'r.db'}")
    with pytest.raises(StoreError, match="in-memory"):
        ResultsStore("sqlite://")
    with pytest.raises(StoreError, match="cannot open the results store") as refused:
        ResultsStore("postgresql+psycopg://nobody:secretpw@127.0.0.1:1/none?connect_timeout=2")
    assert "secretpw" not in str(refused.value) and "127.0.0.1" in str(refused.value)
    with pytest.raises(StoreError, match="cannot open the results store"):
        ResultsStore("results.db")


def test_default_url_from_environment(tmp_path, monkeypatch):
    from inspect_app.store import default_store_url

    monkeypatch.delenv("INSPECT_APP_STORE_URL", raising=False)
    assert default_store_url() == "sqlite:///data/store/results.db"
    monkeypatch.setenv("INSPECT_APP_STORE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    with ResultsStore() as store:
        assert store.images_dir == tmp_path / "images"
    assert (tmp_path / "env.db").is_file()


def test_user_command(tmp_path):
    from inspect_app.cli import app

    url = f"sqlite:///{tmp_path / 'r.db'}"
    runner = CliRunner()
    res = runner.invoke(app, ["user", "add", "ann", "--role", "engineer", "--store", url], input="pw1\npw1\n")
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["user", "add", "op", "--role", "operator", "--password-stdin", "--store", url],
                        input="\n")
    assert res.exit_code == 0 and "no password" in res.output
    res = runner.invoke(app, ["user", "add", "bob", "--role", "engineer", "--password-stdin", "--store", url],
                        input="\n")
    assert res.exit_code == 2 and "engineer needs a password" in res.output
    res = runner.invoke(app, ["user", "add", "ann", "--role", "operator", "--password-stdin", "--store", url],
                        input="\n")
    assert res.exit_code == 2 and "already exists" in res.output
    res = runner.invoke(app, ["user", "add", "x", "--role", "boss", "--store", url])
    assert res.exit_code == 2 and "unknown role" in res.output
    res = runner.invoke(app, ["user", "list", "--store", url])
    assert res.exit_code == 0 and "ann" in res.output and "engineer" in res.output and "op" in res.output
    with ResultsStore(url) as store:
        assert store.verify_user("ann", "pw1") is not None and store.verify_user("op", None) is not None
        assert store.audit_log()[0]["user"] == "cli"


def test_postgresql_store(postgres_url, tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from inspect_app.store.models import Base

    frame = ImageFactory(seed=8).good(64)
    with ResultsStore(postgres_url, images_dir=tmp_path / "images") as store:
        assert store.dialect == "postgresql"
        with store.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        rid = store.add_result(make_result("FAIL", score=0.9), station="pg", lot="L1", image=frame, time=T0)
        for i in range(5):
            store.add_result(make_result(file=None), time=T0 + timedelta(minutes=i + 1))
        store.flush(timeout=30)
        got = store.get(rid)
        assert got.time == T0 and got.regions[0]["bbox"] == [30, 10, 40, 20] and Path(got.image_path).is_file()
        assert store.count(verdict="PASS", since=T0 + timedelta(minutes=2)) == 4
        assert [r.id for r in store.query(limit=2, offset=5)] == [rid]
        store.add_feedback(rid, "false_reject", "glare", user="ann")
        assert store.feedback()[0]["note"] == "glare"
        store.add_user("ann", "engineer", "pw")
        assert store.verify_user("ann", "pw") and not store.verify_user("ann", "nope")
        store.set_settings("cap", {"language": "fr"}, user="ann")
        assert store.get_settings("cap") == {"language": "fr"}
        store.update_station_status("pg", {"fps": 1})
        store.update_station_status("pg", {"fps": 2})
        assert store.station_status()[0]["fps"] == 2
        store.raise_alarm("test", "hello", station="pg")
        assert store.alarms()[0]["message"] == "hello"
    with ResultsStore(postgres_url) as again:
        assert again.count() == 6


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request, tmp_path):
    """A fresh database of each backend (PostgreSQL only when $INSPECT_APP_TEST_POSTGRES_URL is set)."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'r.db'}"


def test_every_part_shares_the_one_database_and_closes_with_it(store):
    rid = store.add_result(make_result())
    parts = [store.results, store.images, store.stations, store.accounts, store.audit_trail, store.settings]
    assert {id(part._db) for part in parts} == {id(store.database)}
    store.close()
    calls = [lambda: store.get(rid), lambda: store.add_feedback(rid, "confirmed"), lambda: store.alarms(),
             lambda: store.update_station_status("cam-1", {}), lambda: store.users(), lambda: store.audit_log(),
             lambda: store.get_settings("cap"), lambda: store.set_settings("cap", {}, "ann")]
    for call in calls:
        with pytest.raises(StoreError, match="closed"):
            call()
    store.close()  # closing twice is harmless


def test_a_part_works_on_its_own_database(tmp_path):
    from inspect_app.store.audit import AuditTrail, ProductSettings
    from inspect_app.store.database import Database

    database = Database(f"sqlite:///{tmp_path / 'r.db'}")
    ProductSettings(database).set_settings("cap", {"language": "de"}, user="ann")
    assert [e["action"] for e in AuditTrail(database).audit_log()] == ["settings.update"]
    database.close()


def test_repeated_alarms_are_folded_into_the_next_one(store, monkeypatch):
    from inspect_app.store import stations

    monkeypatch.setattr(stations, "ALARM_DEDUP_WINDOW_S", 0.5)
    for _ in range(3):
        store.raise_alarm("camera_lost", "no frames", station="cam-1")
    store.raise_alarm("camera_lost", "no frames", station="cam-2")  # another station: its own window
    store.raise_alarm("store_failed", "disk full", station="cam-1")  # another kind: its own window
    assert sorted((a["station"], a["kind"]) for a in store.alarms()) == [
        ("cam-1", "camera_lost"), ("cam-1", "store_failed"), ("cam-2", "camera_lost")]
    time.sleep(0.6)
    store.raise_alarm("camera_lost", "no frames again", station="cam-1")
    newest = store.alarms(limit=1)[0]
    assert newest["message"] == "no frames again (2 similar alarm(s) in the previous 0.5 s not recorded separately)"
    assert len(store.alarms()) == 4


def test_verdicts_are_typed_and_unknown_ones_refused(store):
    from inspect_app.results import Verdict

    rid = store.add_result(make_result("FAIL", score=0.9))
    store.add_feedback(rid, "confirmed")
    assert store.get(rid).verdict is Verdict.FAIL and store.feedback()[0]["verdict"] is Verdict.FAIL
    assert store.count(verdict=Verdict.FAIL) == store.count(verdict=[Verdict.FAIL, "pass"]) == 1
    assert json.loads(json.dumps(store.get(rid).to_dict()))["verdict"] == "FAIL"
    with pytest.raises(StoreError, match="unknown verdict 'MAYBE'"):
        store.count(verdict="MAYBE")


def test_concurrent_writers_of_the_same_new_station_and_settings_rows(any_url):
    """Two stores (two processes) creating the same station and settings rows at once: an upsert
    each, never a duplicate-key error."""
    stores = [ResultsStore(any_url), ResultsStore(any_url)]
    start, errors = threading.Barrier(2), []

    def write(store, who):
        try:
            for i in range(25):
                start.wait(timeout=30)
                store.update_station_status(f"cam-{i}", {"writer": who})
                store.set_settings(f"product-{i}", {"writer": who}, user=who)
        except Exception as exc:  # pragma: no cover - reported by the assert below
            errors.append(exc)
            start.abort()  # the other writer stops waiting too

    threads = [threading.Thread(target=write, args=(s, f"w{n}")) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert not errors and not any(t.is_alive() for t in threads)
        assert len(stores[0].station_status()) == 25
        assert all(stores[1].get_settings(f"product-{i}")["writer"] in ("w0", "w1") for i in range(25))
        assert len(stores[0].audit_log(limit=100)) == 50
    finally:
        for s in stores:
            s.close()


def test_three_processes_opening_a_new_database_at_once(any_url):
    """Schema creation is serialised: each process either creates the schema or finds it at head."""
    script = ("import sys, time; from inspect_app.store import ResultsStore\n"
              "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all three open at the same instant\n"
              "with ResultsStore(sys.argv[1]) as store: print(store.count())")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    start_at = str(time.time() + 2.0)  # after the imports
    procs = [subprocess.Popen([sys.executable, "-c", script, any_url, start_at], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outcomes]
    assert [out.strip() for out, _ in outcomes] == ["0", "0", "0"]


def test_store_imports_and_writes_images_without_torch(tmp_path):
    """The line, the API and the store must not need torch: opening a store and writing a FAIL's
    frame and overlay (``visualize``) loads none."""
    script = f"""
import sys
import numpy as np
from inspect_app.results import InspectionResult, Region
from inspect_app.store import ResultsStore
amap = np.zeros((32, 32), np.float32); amap[4:8, 4:8] = 0.9
result = InspectionResult(file="a.png", verdict="FAIL", score=0.9, anomaly_map=amap, product="cap",
                          regions=[Region((4, 4, 8, 8), 0.02, (6.0, 6.0), "top", 1.0, "compact", "small", 0.9)])
with ResultsStore("sqlite:///{tmp_path / 'r.db'}") as store:
    rid = store.add_result(result, image=np.zeros((32, 32, 3), np.uint8))
    assert store.flush(30)
    assert store.get(rid).overlay_path, store.alarms()
assert "torch" not in sys.modules, "torch was imported"
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
