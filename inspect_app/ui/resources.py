"""What the UI process holds once, shared by every browser session: the config, the results
store, the loaded product inspectors (an ``InspectorCache``: a model loads once per process and
profile version, not on every rerun) and the explanation services."""

from __future__ import annotations

from typing import Any

import streamlit as st

from inspect_app.errors import ProfileError
from inspect_app.explain import Explainer
from inspect_app.inspector import Inspector
from inspect_app.inspector_cache import InspectorCache, LoadedInspector
from inspect_app.store import ResultsStore
from inspect_app.ui.config import UIConfig
from inspect_app.ui.jobs import JobBoard, StageCostBook

DEFAULT_SETTINGS: dict[str, Any] = {"explanations": True, "language": "en", "sinks": {}}
STAGE_COSTS_FILE = "_ui_stage_costs.json"  # in the profiles folder ("_" names are never products)
LANGUAGES = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español", "it": "Italiano"}


def config() -> UIConfig:
    """Read per run (cheap) so tests and a restarted command can change the environment."""
    return UIConfig.from_env()


@st.cache_resource(show_spinner=False)
def _store(url: str | None) -> ResultsStore:
    return ResultsStore(url)


def store(cfg: UIConfig) -> ResultsStore:
    """The results store (opened once per process and URL); raises ``StoreError`` when it cannot open."""
    return _store(cfg.store_url)


@st.cache_resource(show_spinner=False)
def _inspectors(models_dir: str) -> InspectorCache:
    return InspectorCache(models_dir)


def inspector(cfg: UIConfig, product: str) -> LoadedInspector:
    """The product's Inspector (shared by every browser session, reloaded when its profile on disk
    changes) and the lock to predict under. Raises ``ProfileError``."""
    with st.spinner("Loading the product profile…"):  # shows only when loading takes a while
        return _inspectors(str(cfg.models_dir)).get(product)


def torch_inspector(cfg: UIConfig, product: str) -> Inspector:
    """The product's torch Inspector, for what only a profile can do (learning good parts, kinds);
    ``ProfileError`` when the product is served from an exported model."""
    loaded = inspector(cfg, product).inspector
    if not isinstance(loaded, Inspector):
        raise ProfileError(f"product {product!r} is served from an exported model: learn and teach kinds on the "
                           "fitted profile, then export it again")
    return loaded


def products(cfg: UIConfig) -> list[str]:
    return _inspectors(str(cfg.models_dir)).products()


@st.cache_resource(show_spinner=False)
def _explainer(models_dir: str, language: str, variant: str | None) -> Explainer:
    from inspect_app.explain import ExplainerService

    return ExplainerService(models_dir=models_dir, language=language, variant=variant)


def explainer(cfg: UIConfig, language: str) -> Explainer:
    """The shared ExplainerService for a language (its language model loads lazily in its own
    worker thread, so the first FAIL's verdict never waits for it)."""
    return _explainer(str(cfg.models_dir), language, cfg.explainer_variant)


def product_settings(cfg: UIConfig, product: str | None) -> dict[str, Any]:
    """The product's saved UI/line settings over the defaults (defaults when the store is down)."""
    settings = dict(DEFAULT_SETTINGS)
    if product:
        try:
            settings.update(store(cfg).get_settings(product))
        except Exception:  # settings are a convenience: inspection works without the store
            pass
    return settings


@st.cache_resource(show_spinner=False)
def _jobs() -> JobBoard:
    return JobBoard()


def jobs() -> JobBoard:
    """The process's background jobs (fits, reports): they outlive a page visit and a reload."""
    return _jobs()


def stage_costs(cfg: UIConfig) -> StageCostBook:
    """Measured stage costs of fits and reports on this station (weights of the progress bar)."""
    return StageCostBook(cfg.models_dir / STAGE_COSTS_FILE)
