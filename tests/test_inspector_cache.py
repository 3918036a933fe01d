"""``InspectorCache``: the one cache of loaded inspectors (REST API and station UI)."""

from __future__ import annotations

import shutil
import threading

import pytest

from inspect_app.errors import ProfileError
from inspect_app.inspector import Inspector
from inspect_app.inspector_cache import InspectorCache, MissingProfileError


@pytest.fixture
def counted_loads(monkeypatch) -> list[str]:
    """The products ``Inspector.load`` was called for, in order."""
    loads: list[str] = []
    real_load = Inspector.load.__func__

    def load(cls, product, *args, **kwargs):
        loads.append(product)
        return real_load(cls, product, *args, **kwargs)

    monkeypatch.setattr(Inspector, "load", classmethod(load))
    return loads


def test_loads_once_per_profile_version_and_reloads_a_saved_refit(fitted_inspector, models_dir, counted_loads):
    fitted_inspector.save(models_dir)
    cache = InspectorCache(models_dir)
    first, lock = cache.get("gradient")
    assert cache.get("gradient") == (first, lock) and counted_loads == ["gradient"]
    assert cache.products() == ["gradient"]
    fitted_inspector.save(models_dir)  # a refit or a threshold change saved by another process
    second, same_lock = cache.get("gradient")
    assert second is not first and same_lock is lock and counted_loads == ["gradient", "gradient"]


def test_missing_and_corrupt_profiles(fitted_inspector, models_dir):
    cache = InspectorCache(models_dir)
    with pytest.raises(MissingProfileError, match="fitted products: none") as missing:
        cache.get("gradient")
    assert isinstance(missing.value, LookupError) and isinstance(missing.value, ProfileError)
    fitted_inspector.save(models_dir)
    cache.get("gradient")
    shutil.rmtree(models_dir / "gradient")  # deleted on the Products page
    with pytest.raises(MissingProfileError):
        cache.get("gradient")
    (models_dir / "broken").mkdir()
    (models_dir / "broken" / "profile.json").write_text("{ not json")
    with pytest.raises(ProfileError):
        cache.get("broken")
    with pytest.raises(ProfileError, match="invalid product name"):
        cache.get("../etc")


def test_concurrent_requests_load_a_product_once(fitted_inspector, models_dir, counted_loads):
    fitted_inspector.save(models_dir)
    cache = InspectorCache(models_dir)
    start = threading.Barrier(4)
    got = []

    def request() -> None:
        start.wait()
        got.append(cache.get("gradient").inspector)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(got) == 4 and all(inspector is got[0] for inspector in got) and counted_loads == ["gradient"]


def test_least_recently_used_product_is_dropped_beyond_the_limit(fitted_inspector, models_dir, counted_loads):
    fitted_inspector.save(models_dir)
    shutil.copytree(models_dir / "gradient", models_dir / "other")
    cache = InspectorCache(models_dir, max_products=1)
    cache.get("gradient")
    cache.get("other")
    cache.get("gradient")
    assert counted_loads == ["gradient", "other", "gradient"]
