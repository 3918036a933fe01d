"""The store's side of exactly-once results and access control: one row per frame identity,
results whose MQTT message is unacknowledged, station leases (one live station per name), API
tokens (hashed, revocable, audited) and the image quota that evicts PASS images first."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from test_store import make_result

from inspect_app.store import API_ROLE_OF_USER, ResultsStore, RetentionPolicy, StoreError
from inspect_app.store.models import ApiTokenRow

from conftest import ImageFactory


@pytest.fixture
def store(tmp_path):
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}", images_dir=tmp_path / "images") as opened:
        yield opened


def test_a_frame_is_stored_once_per_station(store):
    first = store.add_result(make_result(file="a.png"), station="s1", frame_key="a.png:10:99")
    again = store.add_result(make_result(file="a.png"), station="s1", frame_key="a.png:10:99")
    other_station = store.add_result(make_result(file="a.png"), station="s2", frame_key="a.png:10:99")
    store.add_result(make_result(file="b.png"), station="s1")  # no key: API uploads stay as they are
    store.add_result(make_result(file="b.png"), station="s1")
    assert again == first != other_station
    assert store.count(station="s1") == 3 and store.find_frame("s1", "a.png:10:99") == first
    assert store.find_frame("s1", "missing") is None and store.get(first).frame_key == "a.png:10:99"


def test_results_waiting_for_publication_until_acknowledged(store):
    ids = [store.add_result(make_result(file=f"{i}.png"), station="s1", frame_key=str(i), publish_pending=True)
           for i in range(3)]
    store.add_result(make_result(), station="s1", frame_key="x")  # no MQTT: never pending
    assert [r.id for r in store.pending_publication("s1")] == ids
    store.mark_published(ids[:2])
    assert [r.id for r in store.pending_publication("s1")] == ids[2:]
    assert store.pending_publication("s2") == []


def test_a_live_station_name_is_refused_and_a_dead_one_taken_over(store, tmp_path):
    store.claim_station("line1", "run-a", stale_after_s=30)
    store.claim_station("line1", "run-a", stale_after_s=30)  # the holder itself may claim again
    with pytest.raises(StoreError, match="already running .*pid"):
        store.claim_station("line1", "run-b", stale_after_s=30)
    assert store.renew_station("line1", "run-a")
    time.sleep(0.3)
    store.claim_station("line1", "run-b", stale_after_s=0.2)  # run-a's heartbeat is too old
    assert not store.renew_station("line1", "run-a") and store.renew_station("line1", "run-b")
    # A holder whose process is gone is taken over at once, however fresh its heartbeat.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    from sqlalchemy import update

    from inspect_app.store.models import StationLeaseRow

    with store.database.transaction() as session:
        session.execute(update(StationLeaseRow).values(pid=int(dead.stdout)))
    store.claim_station("line1", "run-c", stale_after_s=30)
    store.release_station("line1", "run-c")
    store.claim_station("line1", "run-d", stale_after_s=30)


def test_tokens_are_hashed_revocable_and_audited(store):
    token = store.add_token("gateway", "station", by="cli")
    assert token.startswith("iat_") and len(token) > 40
    with store.database.session() as session:
        stored = session.query(ApiTokenRow).one()
    assert token not in (stored.token_hash, stored.name) and len(stored.token_hash) == 64
    client = store.verify_token(token)
    assert client is not None and (client.name, client.role) == ("gateway", "station")
    assert store.verify_token(token + "x") is None and store.verify_token("Bearer") is None
    with pytest.raises(StoreError, match="already exists"):
        store.add_token("gateway", "viewer")
    with pytest.raises(StoreError, match="unknown API role"):
        store.add_token("other", "root")
    store.revoke_token("gateway", by="cli")
    assert store.verify_token(token) is None and not store.tokens()[0].active
    with pytest.raises(StoreError, match="no active token"):
        store.revoke_token("gateway")
    assert [e["action"] for e in store.audit_log()] == ["token.revoke", "token.add"]


def test_ui_roles_map_to_api_roles(store):
    store.add_user("eve", "engineer", "pw")
    store.add_user("otto", "operator", None)
    assert API_ROLE_OF_USER == {"engineer": "admin", "operator": "viewer"}
    assert (store.api_role_of_user("eve"), store.api_role_of_user("otto"), store.api_role_of_user("x")) == (
        "admin", "viewer", None)


def test_image_quota_evicts_pass_images_first_and_counts_them(tmp_path):
    frame = ImageFactory(seed=3).good(64)
    with ResultsStore(f"sqlite:///{tmp_path / 'q.db'}", images_dir=tmp_path / "img",
                      retention=RetentionPolicy(1, max_files=8)) as store:
        fail = store.add_result(make_result("FAIL", score=0.9), image=frame)
        passes = [store.add_result(make_result(), image=frame) for _ in range(5)]
        store.flush(timeout=30)
        usage = store.image_usage()
        assert usage.files <= 8 and usage.evicted == {"PASS": 2, "FAIL": 0}
        assert store.get(fail).image_path is not None  # the oldest image, but a FAIL's
        assert [store.get(r).image_path is None for r in passes] == [True, True, False, False, False]
