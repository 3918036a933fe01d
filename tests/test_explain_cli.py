"""``inspect-app explain`` and ``predict --explain``; one slow test runs the real embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspect_app.cli import app

from conftest import ImageFactory, paste_blob


@pytest.fixture(scope="module")
def product(fitted_inspector, tmp_path_factory):
    """(models dir, a defective image, a good image) for the session's fitted 'gradient' product."""
    root = tmp_path_factory.mktemp("explain_cli")
    fitted_inspector.save(root / "models")
    factory = ImageFactory(root, seed=7)
    bad = factory.write(root / "bad.png", paste_blob(factory.good(), 30, 30, radius=12))
    good = factory.write(root / "good.png", factory.good())
    return root / "models", bad, good


@pytest.fixture
def runner(monkeypatch) -> CliRunner:
    monkeypatch.delenv("INSPECT_APP_MODELS_DIR", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    return CliRunner()


def test_explain_template_variant(product, runner, tmp_path):
    models, bad, _ = product
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["explain", str(bad), "--product", "gradient", "--models-dir", str(models),
                                 "--variant", "template", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("FAIL: a defect") and "Remove the part." in result.stdout
    assert "top-left" in result.stdout  # the blob is in the top-left cell
    data = json.loads(out.read_text())
    assert data["explanation"] == result.stdout.strip() and data["explanation_source"] == "template"


def test_explain_missing_language_model_falls_back(product, runner, tmp_path):
    models, bad, _ = product
    result = runner.invoke(app, ["explain", str(bad), "--product", "gradient", "--models-dir", str(models),
                                 "--variant", "facts", "--language-model", str(tmp_path / "no-such-model")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("FAIL:")
    assert "fallback: language model unavailable" in result.stderr and "no-such-model" in result.stderr


def test_explain_bad_variant_and_missing_image_are_user_errors(product, runner, tmp_path):
    models, bad, _ = product
    result = runner.invoke(app, ["explain", str(bad), "--product", "gradient", "--models-dir", str(models),
                                 "--variant", "poetry"])
    assert result.exit_code == 2 and "unknown variant" in result.stderr
    result = runner.invoke(app, ["explain", str(tmp_path / "none.png"), "--product", "gradient",
                                 "--models-dir", str(models)])
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_predict_explain_adds_fields(product, runner, tmp_path, monkeypatch):
    models, bad, good = product
    from inspect_app.explain import generator

    def unavailable(*args, **kwargs):
        raise generator.LanguageModelError("model files removed for this test")

    monkeypatch.setattr(generator, "load_generator", unavailable)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in (bad, good):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["predict", str(folder), "--product", "gradient", "--models-dir", str(models),
                                 "--explain", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["file"]).name: r for r in json.loads(out.read_text())}
    assert rows["bad.png"]["explanation"].startswith("FAIL:") and rows["bad.png"]["explanation_source"] == "template"
    assert rows["good.png"]["explanation"].startswith("PASS: no defect found")
    assert rows["broken.png"]["explanation"].startswith("ERROR:")
    plain = tmp_path / "plain.json"
    runner.invoke(app, ["predict", str(folder), "--product", "gradient", "--models-dir", str(models),
                        "--json", str(plain)])
    assert all("explanation" not in r for r in json.loads(plain.read_text()))


@pytest.mark.slow
def test_real_embedded_model_explains_a_fail(product, runner, tmp_path):
    """The embedded SmolLM2 with the shipped adapter (the default variant) on a fixed FAIL: the
    adapter wrote the sentence and it passed validation; the deterministic fallback fails this test.
    Greedy decoding makes the case repeatable; validation makes the location the region's."""
    models, bad, _ = product
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["explain", str(bad), "--product", "gradient", "--models-dir", str(models),
                                 "--timeout", "50", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["explanation_source"] == "adapter", result.stderr  # stderr says why it fell back
    assert "fallback" not in result.stderr
    assert data["explanation"].startswith("FAIL: ") and "top-left" in data["explanation"]
    assert result.stdout.strip() == data["explanation"]
