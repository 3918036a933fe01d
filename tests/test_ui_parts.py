"""The station UI's work without a page: session cookies and the wall-screen rule, the weighted
progress of background jobs, upload checks in an operator's words, and learning false rejects
(preview, approve, undo) on a real store and profile."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import ImageFactory


# ---------------------------------------------------------------- sessions
def test_session_cookie_survives_a_reload_until_idle_or_too_old_and_refuses_forgery():
    from inspect_app.ui.sessions import CurrentUser, SessionCookies

    cookies = SessionCookies("station-secret", idle_s=60, max_age_s=3600)
    user = CurrentUser("erin", "engineer", True, time.time())
    token = cookies.issue(user)
    assert cookies.read(token) == user
    assert cookies.read(token, now=time.time() + 120) is None  # idle longer than the timeout
    assert SessionCookies("another-station", 60, 3600).read(token) is None  # signed with another key
    assert cookies.read(token[:-2] + ("AA" if not token.endswith("AA") else "BB")) is None
    assert cookies.read(None) is None and cookies.read("garbage") is None
    old = CurrentUser("erin", "engineer", True, time.time() - 7200)
    assert cookies.read(cookies.issue(old)) is None  # signed in more than max_age_s ago, even if active


def test_station_secret_is_made_once_and_private(tmp_path):
    from inspect_app.ui.sessions import SECRET_FILE, station_secret

    first = station_secret(tmp_path)
    assert station_secret(tmp_path) == first and len(first) == 64
    assert (tmp_path / SECRET_FILE).stat().st_mode & 0o077 == 0
    assert station_secret(tmp_path, "from-the-environment") == "from-the-environment"

def test_a_profiles_folder_that_cannot_be_written_still_gives_a_key(tmp_path, monkeypatch):
    from inspect_app.ui import sessions

    def refuse(*args, **kwargs):
        raise PermissionError("read-only profiles folder")

    monkeypatch.setattr(sessions.os, "open", refuse)
    key = sessions.station_secret(tmp_path / "read-only")
    assert key == sessions.station_secret(tmp_path / "read-only") and len(key) == 64  # this process's key


def test_wall_screen_needs_the_viewer_token_unless_on_this_pc():
    from inspect_app.ui.sessions import kiosk_allowed

    assert kiosk_allowed(None, None, None) and kiosk_allowed(None, "", "127.0.0.1")  # loopback
    assert not kiosk_allowed(None, "guess", "10.1.2.3")
    assert not kiosk_allowed("s3cret", "guess", "10.1.2.3")
    assert kiosk_allowed("s3cret", "s3cret", "10.1.2.3")


# ---------------------------------------------------------------- progress
def test_progress_weights_stages_by_measured_cost_moves_through_silent_tails_and_learns(tmp_path):
    import threading

    from inspect_app.ui.jobs import BackgroundJob, StageCost, StageCostBook

    book = StageCostBook(tmp_path / "costs.json")
    book.record("fit:x", [("encoding", StageCost(0.1, 0.1)), ("training", StageCost(0.8, 0.0))])
    steps = [threading.Event() for _ in range(4)]
    seen = []

    def work(progress):
        progress(10, 10, "encoding")  # the encoding counter is full; its silent tail follows
        steps[0].wait(5)
        progress(0, 10, "training")
        steps[1].wait(5)
        progress(5, 10, "training")
        steps[2].wait(5)
        return "fitted"

    job = BackgroundJob("p", work, kind="fit:x", size=10, costs=book)
    time.sleep(0.3)
    seen.append(job.fraction)  # counter part of encoding (0.1 of 1.0) plus some tail time, capped
    assert 0.1 <= seen[-1] <= 0.1 + 0.1 * 0.95 + 1e-9
    steps[0].set()
    time.sleep(0.2)
    seen.append(job.fraction)
    assert seen[-1] == pytest.approx(0.2, abs=0.05)  # encoding done: 20 % of the expected cost, not 100 %
    steps[1].set()
    time.sleep(0.2)
    seen.append(job.fraction)
    assert seen[-1] == pytest.approx(0.2 + 0.8 * 0.5, abs=0.05)
    assert job.eta_s is None or job.eta_s > 0
    steps[2].set()
    assert job.wait(5) and job.result == "fitted" and job.fraction == 1.0
    assert seen == sorted(seen)  # never moves back
    plan = dict(book.plan("fit:x"))
    assert set(plan) == {"encoding", "training"}
    assert plan["training"].counting_s < 0.8  # blended with this (much faster) run's measurement


def test_job_board_keeps_one_running_job_per_key():
    import threading

    from inspect_app.errors import InspectAppError
    from inspect_app.ui.jobs import JobBoard

    board, release = JobBoard(), threading.Event()
    job = board.start("fit:a", "a", lambda progress: release.wait(5))
    with pytest.raises(InspectAppError, match="still running"):
        board.start("fit:a", "a", lambda progress: None)
    assert board.items("fit:") == [("fit:a", job)] and board.get("fit:a") is job
    release.set()
    job.wait(5)
    board.start("fit:a", "a", lambda progress: None).wait(5)  # a finished job may be replaced
    board.pop("fit:a")
    assert board.get("fit:a") is None


# ---------------------------------------------------------------- uploads
def _png_header_claiming(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return bytes(data)


def test_an_oversized_image_is_refused_with_the_fix_in_plain_words():
    from inspect_app.ui.uploads import Upload, check_image

    checked = check_image(Upload("huge.png", _png_header_claiming(30000, 30000)), 10 << 20)
    assert checked.image is None and "Resize it" in checked.error and "bomb" not in checked.error


def test_refused_and_same_named_uploads_are_errors_that_can_be_told_apart(fitted_inspector):
    from inspect_app.ui.inspection import inspect_uploads
    from inspect_app.ui.uploads import Upload

    images = ImageFactory(seed=4)

    def png(image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        return buffer.getvalue()

    parts = inspect_uploads(fitted_inspector, [Upload("000.png", png(images.good())), Upload("000.png", png(
        images.defective(64, 64, 12))), Upload("000.png", b"not an image")], 10 << 20)
    assert [p.label for p in parts] == ["000.png (#1 of 3)", "000.png (#2 of 3)", "000.png (#3 of 3)"]
    assert [p.result.verdict for p in parts] == ["PASS", "FAIL", "ERROR"]
    assert parts[2].result.error and parts[2].result.product == "gradient"


# ---------------------------------------------------------------- learning from feedback
@pytest.fixture
def marked_false_reject(tmp_path, models_dir, fitted_inspector):
    """The 'gradient' product saved, and three stored FAILs of it, the first marked 'good'."""
    from inspect_app.store import ResultsStore

    fitted_inspector.save(models_dir)
    store = ResultsStore(f"sqlite:///{tmp_path / 'store' / 'results.db'}")
    images = ImageFactory(seed=11)
    ids = [store.add_result(fitted_inspector.predict(image), station="line1", image=image)
           for image in (images.defective(40, 40, 9), images.defective(20, 50, 12), images.defective(64, 64, 14))]
    assert store.flush(30)
    store.add_feedback(ids[0], "false_reject", "glare", user="olga")
    yield store, ids
    store.close()


def test_learning_previews_what_it_stops_catching_then_approves_versioned_and_undoes(marked_false_reject,
                                                                                    models_dir):
    from inspect_app.inspector import Inspector
    from inspect_app.ui.learning import (
        approve,
        build_candidate,
        earlier_versions,
        learned_ids,
        pending_false_rejects,
        restore,
    )

    store, ids = marked_false_reject
    before = Inspector.load("gradient", models_dir)
    pending = pending_false_rejects(store, "gradient", learned_ids(before))
    assert [r.id for r in pending] == [ids[0]]
    candidate = build_candidate(models_dir, "gradient", pending, store)
    assert candidate.learnt == [ids[0]] and sorted(r.result_id for r in candidate.rescored) == sorted(ids[1:])
    assert candidate.threshold_after > candidate.threshold_before  # a defective part learnt as good raises it
    assert all(r.score_before > 0.5 for r in candidate.rescored)
    assert Inspector.load("gradient", models_dir).profile_version == before.profile_version  # nothing saved yet

    time.sleep(1.1)  # profile versions are times: the new one must differ
    version = approve(candidate, models_dir)
    after = Inspector.load("gradient", models_dir)
    assert after.profile_version == version != before.profile_version
    assert after.calibration.raw_threshold == pytest.approx(candidate.threshold_after)
    assert learned_ids(after) == {ids[0]} and not pending_false_rejects(store, "gradient", learned_ids(after))
    kept = earlier_versions(models_dir, "gradient")
    assert len(kept) == 1
    restore(models_dir, "gradient", kept[0])
    undone = Inspector.load("gradient", models_dir)
    assert undone.profile_version == before.profile_version
    assert undone.calibration.raw_threshold == pytest.approx(before.calibration.raw_threshold)
    assert not earlier_versions(models_dir, "gradient")


def test_a_fused_fit_is_not_shown_done_when_its_good_images_are_encoded():
    """The issue's case: a fused fit's bar was full at "encoding good images 209/209"."""
    import threading

    from inspect_app.ui.jobs import BackgroundJob, StageCostBook

    release = threading.Event()

    def work(progress):
        progress(209, 209, "encoding good images")
        release.wait(5)

    job = BackgroundJob("bottle", work, kind="fit:fused", size=209, costs=StageCostBook(None))
    time.sleep(0.2)
    assert job.fraction < 0.05 and job.stage_done == job.stage_total == 209
    release.set()
    job.wait(5)
