"""What the UI process holds once, shared by every browser session: the config, the results
store, the loaded product inspectors (``st.cache_resource``: a model loads once per process and
profile version, not on every rerun) and the explanation services."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import streamlit as st

from inspect_app.errors import ProfileError
from inspect_app.profile import PROFILE_FILE, check_product_name, list_profiles
from inspect_app.ui.config import UIConfig

DEFAULT_SETTINGS = {"explanations": True, "language": "en", "sinks": {}}
LANGUAGES = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español", "it": "Italiano"}


def config() -> UIConfig:
    """Read per run (cheap) so tests and a restarted command can change the environment."""
    return UIConfig.from_env()


@st.cache_resource(show_spinner=False)
def _store(url: str | None):
    from inspect_app.store import ResultsStore

    return ResultsStore(url)


def store(cfg: UIConfig):
    """The results store (opened once per process and URL); raises ``StoreError`` when it cannot open."""
    return _store(cfg.store_url)


def profile_version(models_dir: Path, product: str) -> str:
    """A stamp that changes whenever the profile on disk changes (refit, threshold change)."""
    path = Path(models_dir) / check_product_name(product) / PROFILE_FILE
    try:
        stat = path.stat()
    except OSError:
        raise ProfileError(f"no profile for product {product!r} in {models_dir}") from None
    try:
        created = json.loads(path.read_text()).get("created_at", "")
    except (OSError, ValueError, AttributeError):
        created = "unreadable"  # Inspector.load reports the problem itself
    return f"{created}#{stat.st_mtime_ns}"


@st.cache_resource(show_spinner="Loading the product profile…", max_entries=16)
def _inspector(models_dir: str, product: str, version: str):
    from inspect_app.inspector import Inspector

    return Inspector.load(product, models_dir)


def inspector(cfg: UIConfig, product: str):
    """The product's Inspector, loaded once per profile version. Raises ``ProfileError``."""
    return _inspector(str(cfg.models_dir), product, profile_version(cfg.models_dir, product))


@st.cache_resource(show_spinner=False)
def _inspector_lock(models_dir: str, product: str) -> threading.Lock:
    return threading.Lock()


def inspector_lock(cfg: UIConfig, product: str) -> threading.Lock:
    """One inference at a time per product across browser sessions, as the REST API does: the
    sessions share one loaded Inspector, and the CPU is the limit anyway."""
    return _inspector_lock(str(cfg.models_dir), product)


def forget_inspectors() -> None:
    """Drop loaded profiles (after a save or delete) so the next use reads the disk again."""
    _inspector.clear()


def products(cfg: UIConfig) -> list[str]:
    return list_profiles(cfg.models_dir)


@st.cache_resource(show_spinner=False)
def _explainer(models_dir: str, language: str, variant: str | None):
    from inspect_app.explain import ExplainerService

    return ExplainerService(models_dir=models_dir, language=language, variant=variant)


def explainer(cfg: UIConfig, language: str):
    """The shared ExplainerService for a language (its language model loads lazily in its own
    worker thread, so the first FAIL's verdict never waits for it)."""
    return _explainer(str(cfg.models_dir), language, cfg.explainer_variant)


def product_settings(cfg: UIConfig, product: str | None) -> dict:
    """The product's saved UI/line settings over the defaults (defaults when the store is down)."""
    settings = dict(DEFAULT_SETTINGS)
    if product:
        try:
            settings.update(store(cfg).get_settings(product))
        except Exception:  # settings are a convenience: inspection works without the store
            pass
    return settings
