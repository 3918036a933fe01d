"""Who may call the REST API: anonymous requests refused everywhere but /health, roles per route,
tokens that take effect (and stop) without a restart, a station token bound to its own name, the
rate limit, the /metrics allow-list, and the ``inspect-app token`` command."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from test_api import png_bytes
from typer.testing import CliRunner

from inspect_app.api import create_app
from inspect_app.api.auth import TOKEN_CACHE_S, RateLimits
from inspect_app.cli import app as cli_app
from inspect_app.store import ResultsStore

from conftest import ImageFactory

ROUTES = [("post", "/inspect?product=gradient"), ("get", "/results"), ("get", "/results/1"), ("get", "/metrics"),
          ("post", "/trigger"), ("post", "/frames")]


@pytest.fixture
def store(tmp_path):
    with ResultsStore(f"sqlite:///{tmp_path / 'results.db'}", images_dir=tmp_path / "images") as opened:
        yield opened


@pytest.fixture(scope="module")
def saved_models(fitted_inspector, tmp_path_factory):
    root = tmp_path_factory.mktemp("auth_models")
    fitted_inspector.save(root)
    return root


def call(client: TestClient, method: str, path: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "get":
        return client.get(path, headers=headers)
    upload = {"file": ("p.png", png_bytes(ImageFactory(seed=1).good()), "image/png")}
    return client.post(path, headers=headers, files=None if path == "/trigger" else upload)


def test_anonymous_and_wrong_tokens_are_refused_everywhere_but_health(saved_models, store):
    with TestClient(create_app(saved_models, store)) as client:
        for method, path in ROUTES:
            for token in (None, "iat_made-up", "not-even-a-token"):
                response = call(client, method, path, token)
                assert response.status_code == 401, (method, path, token, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/health").status_code == 200
        assert client.get("/docs").status_code == client.get("/openapi.json").status_code == 404
        assert store.count() == 0


def test_roles_decide_what_a_token_may_do(saved_models, store):
    tokens = {role: store.add_token(role, role) for role in ("station", "viewer", "admin")}
    with TestClient(create_app(saved_models, store)) as client:
        allowed = {role: {path: call(client, method, path, token).status_code != 403 for method, path in ROUTES}
                   for role, token in tokens.items()}
    assert allowed["viewer"] == {"/inspect?product=gradient": False, "/results": True, "/results/1": True,
                                 "/metrics": True, "/trigger": False, "/frames": False}
    assert allowed["station"] == {"/inspect?product=gradient": True, "/results": False, "/results/1": False,
                                  "/metrics": False, "/trigger": True, "/frames": True}
    assert all(allowed["admin"].values())
    assert sorted(r.station for r in store.query()) == ["api", "station"]  # a station token: its own name


def test_a_station_token_stores_under_its_own_name_only(saved_models, store):
    token = store.add_token("cam-7", "station")
    with TestClient(create_app(saved_models, store), headers={"Authorization": f"Bearer {token}"}) as client:
        assert call(client, "post", "/inspect?product=gradient&station=cam-9", token).status_code == 403
        response = call(client, "post", "/inspect?product=gradient", token)
    assert response.status_code == 200 and response.json()["station"] == "cam-7"


def test_new_and_revoked_tokens_count_without_a_restart(saved_models, store):
    with TestClient(create_app(saved_models, store)) as client:
        token = store.add_token("dash", "viewer")  # after the app started
        assert call(client, "get", "/results", token).status_code == 200
        store.revoke_token("dash")
        time.sleep(TOKEN_CACHE_S + 0.1)
        assert call(client, "get", "/results", token).status_code == 401


def test_rate_limit_per_client_and_the_metrics_allow_list(saved_models, store):
    viewer, other = store.add_token("v", "viewer"), store.add_token("w", "viewer")
    station = store.add_token("s", "station")
    app = create_app(saved_models, store, rate_limits=RateLimits(per_s=1, burst=3, station_per_s=100),
                     metrics_addresses=["testclient"])
    with TestClient(app) as client:
        codes = [call(client, "get", "/results", viewer).status_code for _ in range(5)]
        assert codes[:3] == [200] * 3 and codes[-1] == 429
        assert call(client, "get", "/results", other).status_code == 200  # another client has its own bucket
        assert all(call(client, "post", "/trigger", station).status_code == 404 for _ in range(20))  # never 429
        assert client.get("/metrics").status_code == 200  # the allowed scraper address, no token
        text = client.get("/metrics").text
    assert 'inspect_api_refused_total{reason="rate_limited"}' in text
    assert "inspect_store_images_quota_bytes" in text and 'inspect_store_images_evicted_total{verdict="PASS"}' in text


def test_token_command_prints_the_token_alone_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    added = runner.invoke(cli_app, ["token", "add", "gateway", "--role", "station", "--store", url])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert token.startswith("iat_") and "\n" not in token
    listing = runner.invoke(cli_app, ["token", "list", "--store", url])
    assert "gateway" in listing.stdout and "station" in listing.stdout and token not in listing.stdout
    assert runner.invoke(cli_app, ["token", "add", "x", "--role", "root", "--store", url]).exit_code != 0
    assert runner.invoke(cli_app, ["token", "revoke", "gateway", "--store", url]).exit_code == 0
    with ResultsStore(url) as store:
        assert store.verify_token(token) is None
