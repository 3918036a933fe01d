"""Station UI pages driven by Streamlit's AppTest: each page's main flow, asserting on what is
rendered (verdicts, table rows, messages) and on what was stored (results, feedback, audit log,
profiles on disk). Uploads go through the real ``st.file_uploader`` (AppTest can set files)."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ImageFactory

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = Path(__file__).resolve().parents[1] / "inspect_app" / "ui" / "app.py"
ENGINEER, PASSWORD = "erin", "correct horse battery"


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def markdown_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def verdicts(at: AppTest) -> list[str]:
    """The big verdict banners on the page, in order."""
    out = []
    for m in at.markdown:
        for verdict in ("PASS", "FAIL", "ERROR"):
            if f'class="verdict verdict-{verdict.lower()}"' in m.value:
                out.append(verdict)
    return out


def run_until(at: AppTest, done, timeout: float = 60.0, pause: float = 0.3) -> AppTest:
    """Rerun the app (as the fragments' polling would) until ``done(at)`` or the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        if done(at):
            return at
        time.sleep(pause)
    raise AssertionError(f"condition not reached within {timeout} s; errors: {[e.value for e in at.error]}")


@pytest.fixture
def station(tmp_path, models_dir, monkeypatch, fitted_inspector):
    """A models folder holding the fitted 'gradient' product, a fresh SQLite store with an engineer,
    and the UI environment pointing at them (template explanations: no language model loads)."""
    import streamlit as st

    from inspect_app.store import ResultsStore

    fitted_inspector.save(models_dir)
    url = f"sqlite:///{tmp_path / 'store' / 'results.db'}"
    monkeypatch.setenv("INSPECT_APP_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("INSPECT_APP_STORE_URL", url)
    monkeypatch.setenv("INSPECT_APP_UI_EXPLAINER_VARIANT", "template")
    monkeypatch.setenv("INSPECT_APP_UI_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("INSPECT_APP_UI_OPERATOR_NO_LOGIN", "1")
    store = ResultsStore(url)
    store.add_user(ENGINEER, "engineer", PASSWORD)
    yield type("Station", (), {"models": models_dir, "store": store, "url": url, "tmp": tmp_path,
                               "images": ImageFactory(seed=7), "good": models_dir / "_good_images"})
    store.close()
    st.cache_resource.clear()


def open_app(page: str | None = "inspect_page", login: bool = False) -> AppTest:
    """The app signed in (or not), on ``page`` (None: the default page, the run screen)."""
    at = AppTest.from_file(str(APP), default_timeout=90).run()
    if login:
        at.text_input(key="auth_name").set_value(ENGINEER)
        at.text_input(key="auth_password").set_value(PASSWORD)
        at.button(key="FormSubmitter:auth_login-Sign in").click().run()
        assert f"Signed in as **{ENGINEER}** (engineer)" in [m.value for m in at.sidebar.markdown]
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


# ---------------------------------------------------------------- Inspect
def test_inspect_shows_verdicts_refuses_bad_files_and_loads_the_model_once(station, monkeypatch):
    from inspect_app.inspector import Inspector

    loads = []
    real_load = Inspector.load.__func__
    monkeypatch.setattr(Inspector, "load", classmethod(lambda cls, *a, **k: loads.append(a) or real_load(cls, *a, **k)))
    monkeypatch.setenv("INSPECT_APP_UI_MAX_UPLOAD_MB", "0.2")
    img = station.images
    big = png(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8))
    assert len(big) > 0.2 * 1024 * 1024
    at = open_app()
    at.file_uploader(key="inspect_files").set_value([
        ("scratched.png", png(img.defective(64, 64, 12)), "image/png"), ("fine.png", png(img.good()), "image/png"),
        ("notes.txt", b"not an image", "text/plain"), ("huge.png", big, "image/png")]).run()
    assert not at.exception, at.exception
    assert verdicts(at) == ["FAIL", "PASS", "ERROR", "ERROR"]  # refused files get an ERROR banner too
    assert "4 images:** PASS 1 · FAIL 1 · ERROR 2" in markdown_text(at)
    errors = [e.value for e in at.error]
    assert any("notes.txt" in e and "not a recognised image format" in e for e in errors)
    assert any("huge.png" in e and "over the upload limit" in e for e in errors)
    info = [i.value for i in at.info]
    assert any(t.startswith("FAIL:") for t in info) and any(t.startswith("PASS:") for t in info)
    stored = station.store.query(station="ui")
    assert sorted(r.verdict for r in stored) == ["ERROR", "ERROR", "FAIL", "PASS"]  # History shows refused files
    assert {r.file: r.error for r in stored if r.verdict == "ERROR"}.keys() == {"notes.txt", "huge.png"}
    assert all(r.explanation for r in stored)
    at.toggle(key="inspect_boxes").set_value(False).run()  # a rerun: nothing is inspected or loaded again
    assert verdicts(at) == ["FAIL", "PASS", "ERROR", "ERROR"] and len(station.store.query()) == 4
    assert len(loads) == 1


def test_inspect_explanation_fills_in_after_the_verdict(station, monkeypatch):
    from inspect_app.explain import Explanation
    from inspect_app.ui import resources

    class SlowExplainer:
        """Stands in for the language model: resolves each FAIL a second later, off the script thread."""

        def submit(self, result) -> Future:
            future: Future = Future()
            text = f"{result.verdict}: a dark spot, written later."
            threading.Timer(1.0, future.set_result, args=(Explanation(text, "language-model", seconds=1.0),)).start()
            return future

    monkeypatch.setattr(resources, "explainer", lambda cfg, language: SlowExplainer())
    at = open_app()
    spot = png(station.images.defective(40, 80, 12))
    at.file_uploader(key="inspect_files").set_value(("spot.png", spot, "image/png"))
    at.run()
    assert verdicts(at) == ["FAIL"]
    assert "Explanation is being written…" in [c.value for c in at.caption]
    assert not [i.value for i in at.info]
    run_until(at, lambda a: [i.value for i in a.info], timeout=10)
    assert [i.value for i in at.info] == ["FAIL: a dark spot, written later."]
    assert station.store.query()[0].explanation == "FAIL: a dark spot, written later."


def test_inspect_reports_missing_products_corrupt_profiles_and_login(station, monkeypatch):
    monkeypatch.setenv("INSPECT_APP_UI_OPERATOR_NO_LOGIN", "0")
    at = open_app()
    assert any("Sign in (sidebar)" in i.value for i in at.info) and not at.file_uploader
    monkeypatch.setenv("INSPECT_APP_UI_OPERATOR_NO_LOGIN", "1")
    (station.models / "broken").mkdir()
    (station.models / "broken" / "profile.json").write_text("{ not json")
    at.run()
    at.selectbox(key="inspect_product").set_value("broken").run()
    assert any("cannot be used" in e.value and "corrupt" in e.value for e in at.error)
    assert not at.exception
    for name in ("broken", "gradient"):
        for path in (station.models / name).iterdir():
            path.unlink()
        (station.models / name).rmdir()
    at.run()
    assert any("No product profiles" in i.value for i in at.info)


def test_inspect_webcam_and_line_camera_snapshots_with_the_store_down(station, monkeypatch, tmp_path):
    camera_folder = tmp_path / "camera"
    station.images.write(camera_folder / "part_0001.png", station.images.good())
    monkeypatch.setenv("INSPECT_APP_UI_LINE_CAMERA", str(camera_folder))
    monkeypatch.setenv("INSPECT_APP_STORE_URL", "nosuchdb://nowhere")
    at = open_app()
    at.toggle(key="inspect_use_webcam").set_value(True).run()
    buffer = io.BytesIO()
    Image.fromarray(station.images.defective(60, 70, 14)).save(buffer, format="JPEG", quality=95)
    at.camera_input(key="inspect_camera").set_value(("image.jpg", buffer.getvalue(), "image/jpeg")).run()
    assert not at.exception, at.exception
    assert verdicts(at) == ["FAIL"]
    assert any("results store cannot be opened" in e.value for e in at.error)
    assert any("not stored" in c.value for c in at.caption)
    at.button(key="inspect_grab").click().run()
    assert verdicts(at) == ["FAIL", "PASS"]
    assert [name in markdown_text(at) for name in ("webcam snapshot ·", "part_0001.png ·")] == [True, True]


# ---------------------------------------------------------------- Products
def test_products_wizard_fits_in_background_shows_calibration_saves_and_deletes(station):
    img = station.images
    with pytest.raises(ValueError, match="Known pages"):  # operators are not shown the page at all
        open_app("products")

    at = open_app("products", login=True)
    at.selectbox(key="products_mode").set_value("image-image")  # the fastest fit: this tests the wizard
    at.text_input(key="products_name").set_value("bracket").run()
    at.button(key="products_fit").click().run()
    assert any("has no good images" in e.value for e in at.error)  # an empty product

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(3):
            zf.writestr(f"batch/z{i}.png", png(img.good()))
        zf.writestr("../../escaped.png", png(img.good()))  # path traversal: flattened into the folder
        zf.writestr("readme.txt", "ignored")
    uploads = [(f"g{i}.png", png(g), "image/png") for i, g in enumerate(img.goods(8))]
    uploads += [("more.zip", archive.getvalue(), "application/zip"), ("oops.txt", b"text", "text/plain")]
    at.file_uploader(key="products_files").set_value(uploads)
    at.button(key="products_fit").click().run()
    assert any("oops.txt" in w.value for w in at.warning)
    saved = sorted(p.name for p in (station.good / "bracket").iterdir())
    assert len(saved) == 12 and "escaped.png" in saved and not (station.tmp / "escaped.png").exists()
    run_until(at, lambda a: not a.get("progress") and a.metric, timeout=120)
    assert not at.exception, at.exception
    assert any("Fitted bracket on 12 good images" in s.value for s in at.success)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Good scores calibrating"] == "12" and metrics["Expected false-reject rate"].endswith("%")
    assert len(at.get("image")) == 1, "the calibration histogram is shown"

    at.file_uploader(key="products_samples").set_value(("dent.png", png(img.defective(90, 40, 14)), "image/png"))
    at.run()
    assert verdicts(at) == ["FAIL"]
    at.button(key="products_save").click().run()
    assert any("Saved profile bracket" in s.value for s in at.success)
    table = at.dataframe[0].value
    assert list(table["product"]) == ["bracket", "gradient"] and list(table["status"]) == ["ok", "ok"]
    actions = [a["action"] for a in station.store.audit_log()]
    assert actions[:3] == ["product.save", "product.fit", "login"]
    at.selectbox(key="products_show_name").set_value("bracket").run()
    assert len(at.get("image")) == 1 and "expected false-reject rate" in at.get("image")[0].proto.imgs[0].caption
    (station.models / "broken").mkdir()
    (station.models / "broken" / "profile.json").write_text("[]")
    at.run()
    status = at.dataframe[0].value.set_index("product").loc["broken", "status"]
    assert status.startswith("unusable profile") and "corrupt" in status and "refit" in status
    (station.models / "broken" / "profile.json").unlink()
    (station.models / "broken").rmdir()

    at.selectbox(key="products_delete_name").set_value("bracket")
    at.checkbox(key="products_delete_sure").check().run()
    at.button(key="products_delete").click().run()
    assert list(at.dataframe[0].value["product"]) == ["gradient"]
    assert not (station.models / "bracket").exists() and (station.good / "bracket").is_dir()
    assert station.store.audit_log()[0]["detail"] == {"product": "bracket"}


# ---------------------------------------------------------------- History
def test_history_filters_feedback_export_and_adds_false_rejects_to_good_images(station, fitted_inspector):
    img = station.images
    for lot, image in [("L1", img.good()), ("L1", img.defective(64, 64, 12)), ("L2", img.defective(30, 30, 10))]:
        station.store.add_result(fitted_inspector.predict(image), station="line1", lot=lot, image=image)
    assert station.store.flush(30)
    at = open_app("history")
    table = at.dataframe[0].value
    assert len(table) == 3 and verdicts(at) == ["FAIL"]  # the newest opens first
    at.session_state["history_table"] = {"selection": {"rows": [2], "columns": [], "cells": []}}  # a row click
    at.run()
    assert verdicts(at) == ["PASS"] and [h.value for h in at.header][0] == f"Result {table['id'].iloc[2]}"
    at.session_state["history_table"] = {"selection": {"rows": [], "columns": [], "cells": []}}
    at.multiselect(key="history_verdicts").set_value(["FAIL"])
    at.text_input(key="history_lot").set_value("L1").run()
    table = at.dataframe[0].value
    assert list(table["verdict"]) == ["FAIL"] and list(table["lot"]) == ["L1"]
    rid = int(table["id"].iloc[0])
    assert verdicts(at) == ["FAIL"] and len(at.get("image")) == 2  # overlay and image of the opened result

    assert at.radio(key="history_kind").value is None  # no verdict on the verdict is preselected
    at.button(key="FormSubmitter:history_feedback-Save feedback").click().run()
    assert any("Choose what is wrong or right" in e.value for e in at.error) and not station.store.get(rid).feedback
    at.radio(key="history_kind").set_value("false_reject")
    at.text_input(key="history_note").set_value("glare, part is fine")
    at.button(key="FormSubmitter:history_feedback-Save feedback").click().run()
    assert any(f"Feedback saved for result {rid}" in s.value for s in at.success)
    feedback = station.store.get(rid).feedback
    assert [(f["kind"], f["note"], f["user"]) for f in feedback] == [("false_reject", "glare, part is fine",
                                                                      "operator (no login)")]
    assert "false_reject" in at.dataframe[0].value["feedback"].iloc[0]
    export = at.get("download_button")
    assert len(export) == 2

    assert not [b for b in at.button if b.key in ("history_add_good", "learning_preview")]  # engineer controls
    at = open_app("history", login=True)
    at.multiselect(key="history_verdicts").set_value(["FAIL"])
    at.text_input(key="history_lot").set_value("L1").run()
    at.button(key="history_add_good").click().run()
    copied = list((station.good / "gradient").iterdir())
    assert len(copied) == 1 and np.array_equal(np.asarray(Image.open(copied[0]).convert("RGB")),
                                               np.asarray(Image.open(station.store.get(rid).image_path).convert("RGB")))
    assert station.store.audit_log()[0]["action"] == "good_images.add"


# ---------------------------------------------------------------- Run screen
def test_run_screen_follows_a_line_station_with_counters_strip_and_offline_banner(station, fitted_inspector):
    from datetime import UTC, datetime, timedelta

    img = station.images
    now = datetime.now(UTC)
    for i, image in enumerate([img.good(), img.defective(64, 64, 12), img.good(), img.good()]):
        result = fitted_inspector.predict(image)
        rid = station.store.add_result(result, station="line1", lot="L7", image=image,
                                       time=now - timedelta(seconds=10 - i))
        if result.verdict == "FAIL":
            station.store.set_explanation(rid, "FAIL: dark spot at the centre.", "template")
    old = station.store.add_result(fitted_inspector.predict(img.good()), station="line1",
                                   time=now - timedelta(days=2))  # an earlier shift: not counted
    assert station.store.flush(30)
    station.store.update_station_status("line1", {"station": "line1", "product": "gradient", "state": "running",
                                                  "camera": {"state": "connected"}, "fps": 4.2})
    at = open_app(None)
    assert not at.exception, at.exception
    assert at.selectbox(key="run_station").value == "line1"
    assert verdicts(at) == ["PASS"]  # the newest part
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["PASS ●"], metrics["FAIL ■"], metrics["ERROR ▲"], metrics["Yield"]) == ("3", "1", "0", "75.0%")
    assert "station-online" in markdown_text(at) and "lot L7: 3 / 1 / 0" in " ".join(c.value for c in at.caption)
    import html
    import re
    from urllib.parse import parse_qs

    strip = next(m.value for m in at.markdown if "run-strip" in m.value)  # one link per part, oldest first
    links = {int(parse_qs(html.unescape(query))["open"][0]): css
             for css, query in re.findall(r'class="strip-mark ([^"]+)" target="_self" href="\?([^"]+)"', strip)}
    fail_id = next(r.id for r in station.store.query(station="line1") if r.verdict == "FAIL")
    assert len(links) == 5 and list(links)[0] == old and list(links)[-1] != old
    assert links[fail_id] == "strip-fail" and links[old] == "strip-pass"
    at.query_params["open"] = str(fail_id)  # the strip's link to the FAIL: it opens
    at.run()
    assert verdicts(at) == ["FAIL"] and [i.value for i in at.info] == ["FAIL: dark spot at the centre."]
    at.button(key=f"run_false_reject_{fail_id}").click().run()  # the operator says the part is good
    assert [f["kind"] for f in station.store.get(fail_id).feedback] == ["false_reject"]
    at.button(key="run_back").click().run()
    assert verdicts(at) == ["PASS"] and "open" not in at.query_params
    at.query_params["open"] = "999999"  # a stale link (a part no longer stored): the live part, no error
    at.run()
    assert not at.exception and verdicts(at) == ["PASS"] and not [b for b in at.button if b.key == "run_back"]

    with station.store.engine.begin() as conn:  # the heartbeat stops: 5 minutes old
        from sqlalchemy import text
        conn.execute(text("UPDATE station_status SET updated_at = :t"), {"t": now - timedelta(minutes=5)})
    at.run()
    page = markdown_text(at)
    assert "station-offline" in page and "OFFLINE" in page and "no heartbeat for 3" in page
    assert "LAST PART BEFORE THE STATION STOPPED" in page


def test_run_screen_shows_manual_inspections_of_this_pc(station):
    at = open_app(None)
    assert at.selectbox(key="run_station").value == "ui"
    assert any("No part inspected yet" in i.value for i in at.info)
    at.file_uploader(key="run_files").set_value(("dent.png", png(station.images.defective(40, 40, 12)), "image/png"))
    at.run()
    assert not at.exception, at.exception
    assert verdicts(at) == ["FAIL"]
    assert {m.label: m.value for m in at.metric}["FAIL ■"] == "1"


def test_run_screen_shifts_follow_the_plant_time_zone():
    from datetime import UTC, datetime

    import pytest as _pytest

    from inspect_app.errors import InspectAppError
    from inspect_app.ui.runboard import PlantShifts

    shifts = PlantShifts("America/New_York", ("06:00", "14:00", "22:00"))
    label, start = shifts.current(datetime(2026, 7, 1, 3, 30, tzinfo=UTC))  # 23:30 the day before in New York
    assert start == datetime(2026, 7, 1, 2, 0, tzinfo=UTC) and label.startswith("shift 3 since Tue 22:00")
    label, start = shifts.current(datetime(2026, 7, 1, 11, 0, tzinfo=UTC))  # 07:00 local
    assert start == datetime(2026, 7, 1, 10, 0, tzinfo=UTC) and label.startswith("shift 1")
    with _pytest.raises(InspectAppError, match="time zone"):
        PlantShifts("Mars/Olympus", ("06:00",)).validate()
    with _pytest.raises(InspectAppError, match="25:00"):
        PlantShifts("UTC", ("25:00",)).validate()


def test_station_condition_online_degraded_offline():
    from datetime import UTC, datetime, timedelta

    from inspect_app.ui.runboard import StationHealth, station_condition

    now = datetime.now(UTC)
    ok = {"state": "running", "camera": {"state": "connected"}, "updated_at": now - timedelta(seconds=1)}
    assert station_condition(ok, now).health == StationHealth.ONLINE
    flaky = {**ok, "camera": {"state": "reconnecting"}}
    assert station_condition(flaky, now).health == StationHealth.DEGRADED
    assert "camera reconnecting" in station_condition(flaky, now).text
    assert station_condition({**ok, "updated_at": now - timedelta(seconds=90)}, now).health == StationHealth.OFFLINE
    assert station_condition({**ok, "state": "stopped"}, now).health == StationHealth.OFFLINE
    assert station_condition(None, now).health == StationHealth.OFFLINE



def test_defect_trend_groups_parts_oldest_first_and_draws_one_point_per_group():
    from datetime import UTC, datetime, timedelta
    from xml.etree import ElementTree

    from inspect_app.results import Verdict
    from inspect_app.store.records import StoredResult
    from inspect_app.ui.runboard import defect_trend, trend_svg

    start = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    parts = [StoredResult(i, start + timedelta(seconds=i), "s1", "p", None, None, None,
                          Verdict.FAIL if i >= 20 and i % 2 else Verdict.PASS, 0.1, 0.5, 0.1, [], None, None, None,
                          None, None) for i in range(35)]
    trend = defect_trend(list(reversed(parts)), per_point=10)  # the store gives newest first
    assert [p.defect_rate_pct for p in trend] == [0.0, 0.0, 50.0]  # the last 5 parts make no full group
    assert [p.time for p in trend] == [parts[9].time, parts[19].time, parts[29].time]
    svg = ElementTree.fromstring(trend_svg(trend, "08:00:09", "08:00:29"))
    ns = {"svg": "http://www.w3.org/2000/svg"}
    points = svg.find("svg:polyline", ns).get("points").split()
    assert len(points) == 3 and float(points[0].split(",")[1]) > float(points[2].split(",")[1])  # up is worse
    labels = [t.text for t in svg.findall("svg:text", ns)]
    assert labels == ["50 %", "0 %", "08:00:09", "08:00:29"] and "now 50 %" in svg.find("svg:title", ns).text


# ---------------------------------------------------------------- Settings
def test_settings_preview_then_save_threshold_explanations_and_sinks(station):
    from inspect_app.inspector import Inspector

    with pytest.raises(ValueError, match="Known pages"):
        open_app("settings_page")
    before = Inspector.load("gradient", station.models)
    at = open_app("settings_page", login=True)
    at.select_slider(key="settings_target_frr").set_value(0.1).run()
    preview = at.dataframe[0].value
    assert list(preview[""]) == ["now", "proposed"]
    # what a lower threshold catches, not only what it costs: stored parts and marked missed defects
    assert {"stored parts rejected", "marked missed defects caught", "marked good parts rejected"} <= set(preview)
    assert preview["held-out good parts rejected"].iloc[0].endswith("%)")
    proposed = float(preview["raw threshold"].iloc[1])
    assert proposed < before.calibration.raw_threshold
    assert Inspector.load("gradient", station.models).calibration.target_frr == 0.01  # nothing saved yet

    at.button(key="settings_save_threshold").click().run()
    assert any("Saved: gradient now rejects above" in s.value for s in at.success)
    after = Inspector.load("gradient", station.models)
    assert after.calibration.target_frr == 0.1
    assert after.calibration.raw_threshold == pytest.approx(proposed, rel=1e-3)
    assert after.calibration.normal_scores == before.calibration.normal_scores
    assert after.profile_version != before.profile_version
    entry = station.store.audit_log()[0]
    assert entry["action"] == "threshold.change" and entry["user"] == ENGINEER
    assert entry["detail"]["after"]["target_frr"] == 0.1

    at.toggle(key="settings_explain").set_value(False)
    at.selectbox(key="settings_language").set_value("de")
    at.button(key="settings_save_explain").click().run()
    assert station.store.get_settings("gradient") == {"explanations": False, "language": "de"}
    at.text_area(key="settings_sinks").set_value("mqtt: {port: 99999}")
    at.button(key="settings_save_sinks").click().run()
    assert any("sinks" in e.value and "port" in e.value for e in at.error)
    at.text_area(key="settings_sinks").set_value("csv: {path: results.csv}\nwebhook: {url: 'http://127.0.0.1:9/x'}")
    at.button(key="settings_save_sinks").click().run()
    sinks = station.store.get_settings("gradient")["sinks"]
    assert sinks["csv"] == {"path": "results.csv"} and sinks["webhook"]["url"] == "http://127.0.0.1:9/x"
    assert station.store.get_settings("gradient")["explanations"] is False
    assert [a["action"] for a in station.store.audit_log()[:2]] == ["settings.update", "settings.update"]

    at.text_input(key="settings_shift_starts").set_value("07:00, 25:00")
    at.button(key="settings_save_plant").click().run()
    assert any("25:00" in e.value for e in at.error)
    at.selectbox(key="settings_timezone").set_value("Europe/Berlin")
    at.text_input(key="settings_shift_starts").set_value("06:00, 18:00")
    at.button(key="settings_save_plant").click().run()
    assert station.store.get_settings("_plant") == {"timezone": "Europe/Berlin", "shift_starts": ["06:00", "18:00"]}


def test_a_sign_in_ends_after_idle_time(station, monkeypatch):
    at = open_app(None, login=True)
    monkeypatch.setenv("INSPECT_APP_UI_SESSION_IDLE_MIN", "0.005")  # 0.3 s
    time.sleep(0.5)
    at.run()
    assert not any("Signed in as" in m.value for m in at.sidebar.markdown)
    assert any("Signed out after" in i.value for i in at.sidebar.info)
    assert station.store.audit_log()[0]["action"] == "logout.idle"


# ---------------------------------------------------------------- Reports
def test_reports_page_builds_a_report_from_stored_results(station, fitted_inspector):
    img = station.images
    for image in [img.good(), img.good(), img.defective(64, 64, 12)]:
        station.store.add_result(fitted_inspector.predict(image), station="line1", lot="L9", image=image)
    assert station.store.flush(30)
    at = open_app("reports")
    at.checkbox(key="reports_explain").uncheck()
    at.button(key="reports_build").click().run()
    assert not at.exception, at.exception
    run_until(at, lambda a: a.success or a.error, timeout=120, pause=0.5)
    assert not [e.value for e in at.error]
    assert any("3 parts, PASS 2, FAIL 1" in s.value for s in at.success)
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Report (HTML)" in labels and "Results (CSV)" in labels
    assert station.store.audit_log()[0]["action"] == "report.build"


# ---------------------------------------------------------------- the work behind the pages
def test_zip_guards_refuse_bombs_and_oversized_members():
    from inspect_app.errors import InspectAppError
    from inspect_app.ui.uploads import read_zip_images, safe_file_name

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.png", b"\0" * 20_000_000)
    with pytest.raises(InspectAppError, match="zip bomb"):
        read_zip_images(bomb.getvalue(), 50_000_000, 100_000_000)
    with pytest.raises(InspectAppError, match="over the upload limit"):
        read_zip_images(bomb.getvalue(), 1_000_000, 100_000_000)
    with pytest.raises(InspectAppError, match="not a readable zip"):
        read_zip_images(b"PK\x03\x04 truncated", 1000, 1000)
    assert safe_file_name("../../etc/passwd") == "passwd"
    assert safe_file_name("C:\\x\\..\\a b.png") == "a_b.png"


def test_ui_command_serves_streamlit_headless_without_usage_stats():
    from typer.testing import CliRunner

    from inspect_app.cli import app
    from inspect_app.ui.commands import streamlit_command

    command = streamlit_command(8599, "127.0.0.1", 25)
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    assert command[2:5] == ["streamlit", "run", str(APP)]
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8599"
    assert flags["--runner.postScriptGC"] == "false"  # a full collection after every once-a-second rerun
    result = CliRunner().invoke(app, ["ui", "--help"])
    assert result.exit_code == 0 and "--operator-login" in result.output
    bad = CliRunner().invoke(app, ["ui", "--store", "nosuchdb://x"], env={"INSPECT_APP_UI_MAX_UPLOAD_MB": "1"})
    assert bad.exit_code == 2 and "nosuchdb" in bad.output


def cli_until_exec(cli_args: list[str]) -> str:
    """What ``inspect-app CLI_ARGS`` prints, in a child process, up to the program it would
    execute: a line "POLICY <scheduling policy> ARGV <its argv>" (a child process: a process
    cannot raise its own CPU priority back)."""
    import subprocess
    import sys

    probe = ("import os, sys\nfrom typer.testing import CliRunner\nfrom inspect_app.cli import app\n"
             "def stop(path, argv, *env):\n"
             "    print('POLICY', os.sched_getscheduler(0), 'ARGV', *argv)\n    sys.exit(0)\n"
             "os.execv = os.execve = stop\n"
             f"print(CliRunner().invoke(app, {cli_args!r}).output)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "POLICY" in done.stdout, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize(("option", "policy"), [([], "SCHED_IDLE"), (["--cpu-priority", "normal"], "SCHED_OTHER")])
def test_ui_server_runs_at_idle_cpu_priority_unless_asked(tmp_path, option, policy):
    """Beside a line station the UI takes only CPU time the station leaves; the policy is set
    before Streamlit is executed, so all its threads have it."""
    import os
    import sys

    printed = cli_until_exec(["ui", "--store", f"sqlite:///{tmp_path}/r.db", *option])
    assert f"POLICY {getattr(os, policy)} ARGV {sys.executable} -m streamlit run" in printed, printed


def test_wall_screen_opens_the_kiosk_run_screen_in_a_browser_at_idle_priority(tmp_path):
    import os

    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    printed = cli_until_exec(["wall-screen", "--browser", str(browser)])
    assert f"POLICY {os.SCHED_IDLE} ARGV {browser} --kiosk" in printed, printed
    assert printed.rstrip().split("ARGV")[1].split()[-1] == "http://127.0.0.1:8501/?kiosk"

    from typer.testing import CliRunner

    from inspect_app.cli import app

    missing = CliRunner().invoke(app, ["wall-screen", "--browser", str(tmp_path / "no-such-browser")])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_shared_inspector_predicts_under_the_product_lock(fitted_inspector):
    """Browser sessions share one loaded Inspector: an inspection waits while another holds the
    product's lock, then completes."""
    from inspect_app.ui.inspection import inspect_uploads
    from inspect_app.ui.uploads import Upload

    buf = io.BytesIO()
    Image.fromarray(ImageFactory(seed=3).good()).save(buf, format="PNG")
    lock = threading.Lock()
    out = {}
    with lock:
        worker = threading.Thread(target=lambda: out.update(parts=inspect_uploads(
            fitted_inspector, [Upload("part.png", buf.getvalue())], 10 << 20, lock=lock)))
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive() and "parts" not in out  # waiting for the lock
    worker.join(timeout=30)
    assert out["parts"][0].result.verdict in ("PASS", "FAIL")
