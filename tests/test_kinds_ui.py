"""Teaching a defect kind from a stored result on the UI's History page (engineers only, audited)."""

from __future__ import annotations

import pytest
from test_ui import ENGINEER, PASSWORD, open_app

from conftest import ImageFactory, paste_blob

SIZE = 96


@pytest.fixture
def fused_station(tmp_path, models_dir, monkeypatch):
    import streamlit as st

    from inspect_app.config import BackboneConfig, ImageTextConfig, InspectorConfig
    from inspect_app.inspector import Inspector
    from inspect_app.store import ResultsStore

    monkeypatch.setenv("INSPECT_APP_CACHE_DIR", str(tmp_path / "cache"))
    config = InspectorConfig(mode="fused", backbone=BackboneConfig(image_size=SIZE),
                             image_text=ImageTextConfig(steps=40, synthetic_per_image=2, max_synthetic=24))
    factory = ImageFactory(seed=11)
    inspector = Inspector(config, product="widget")
    inspector.fit(factory.goods(12, SIZE))
    inspector.save(models_dir)
    url = f"sqlite:///{tmp_path / 'store' / 'results.db'}"
    for key, value in {"INSPECT_APP_MODELS_DIR": str(models_dir), "INSPECT_APP_STORE_URL": url,
                       "INSPECT_APP_UI_EXPLAINER_VARIANT": "template",
                       "INSPECT_APP_UI_REPORTS_DIR": str(tmp_path / "reports"),
                       "INSPECT_APP_UI_OPERATOR_NO_LOGIN": "1"}.items():
        monkeypatch.setenv(key, value)
    store = ResultsStore(url)
    store.add_user(ENGINEER, "engineer", PASSWORD)
    image = paste_blob(factory.good(SIZE), 40, 50, radius=14, value=5)
    result = inspector.predict(image)
    assert result.verdict == "FAIL"
    store.add_result(result, station="line1", image=image)
    assert store.flush(30)
    yield store, models_dir
    store.close()
    st.cache_resource.clear()


def test_an_engineer_teaches_a_new_kind_from_a_stored_result(fused_station):
    from inspect_app.inspector import Inspector

    store, models_dir = fused_station
    at = open_app("history")
    at.selectbox(key="kind_choice").set_value("(type a new kind)").run()
    at.text_input(key="kind_new").set_value("burr").run()
    at.button(key="kind_teach").click().run()
    assert any("engineer sign-in" in w.value for w in at.warning)  # operators cannot teach kinds
    assert "burr" not in Inspector.load("widget", models_dir).kinds

    at = open_app("history", login=True)
    at.selectbox(key="kind_choice").set_value("(type a new kind)").run()
    at.text_input(key="kind_new").set_value("burr").run()
    at.button(key="kind_teach").click().run()
    assert not at.exception, at.exception
    assert any("learnt 'burr'" in s.value for s in at.success)
    book = Inspector.load("widget", models_dir).post_processor.kind_book
    assert book is not None and book.find("burr").n_examples == 1
    entry = store.audit_log()[0]
    assert entry["action"] == "kinds.add" and entry["detail"]["kind"] == "burr"
