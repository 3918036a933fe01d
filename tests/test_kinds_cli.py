"""``inspect-app kinds add/list/remove``, ``fit --kinds`` and the one-line errors around them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inspect_app.cli import app
from inspect_app.edge.sessions import fastest_installed

from conftest import ImageFactory, paste_blob

SIZE = 96


@pytest.fixture(scope="module")
def fused_cli(tmp_path_factory):
    """A small fused product (few decoder steps, fitted in Python) and a kinds folder with masks."""
    from inspect_app.config import BackboneConfig, ImageTextConfig, InspectorConfig
    from inspect_app.inspector import Inspector

    root = tmp_path_factory.mktemp("kinds_cli")
    factory = ImageFactory(root, seed=3)
    kinds = root / "kinds" / "Dark Spot"
    kinds.mkdir(parents=True)
    for i in range(3):
        image = paste_blob(factory.good(SIZE), 30 + 10 * i, 40, radius=10, value=5)
        factory.write(kinds / f"spot_{i}.png", image)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[30:50, 20 + 10 * i:40 + 10 * i] = 255
        Image.fromarray(mask).save(kinds / f"spot_{i}_mask.png")
    models = root / "models"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INSPECT_APP_CACHE_DIR", str(root / "cache"))
        config = InspectorConfig(mode="fused", backbone=BackboneConfig(image_size=SIZE),
                                 image_text=ImageTextConfig(steps=40, synthetic_per_image=2, max_synthetic=24))
        inspector = Inspector(config, product="widget")
        inspector.fit(factory.goods(12, SIZE))
        inspector.save(models)
        yield root, models


def test_fit_with_kinds_checks_the_folder_first_and_needs_no_image_text_part(fused_cli):
    root, models = fused_cli
    runner = CliRunner()
    good = ImageFactory(root, seed=4).folder("good", 8, size=64)
    empty = root / "no_kinds"
    empty.mkdir()
    bad = runner.invoke(app, ["fit", str(good), "--product", "plain", "--image-size", "64", "--mode", "image-image",
                              "--kinds", str(empty), "--models-dir", str(models)])
    assert bad.exit_code == 2 and "no kind subfolders" in bad.stderr
    assert not (models / "plain").exists()  # refused before any fit
    named = runner.invoke(app, ["fit", str(good), "--product", "plain", "--image-size", "64", "--mode", "image-image",
                                "--kinds", str(root / "kinds"), "--models-dir", str(models)])
    assert named.exit_code == 0, named.stderr
    from inspect_app.inspector import Inspector

    plain = Inspector.load("plain", models)
    assert plain.mode == "image-image" and plain.model is not None and plain.model.image_text is None
    assert plain.post_processor is not None and plain.post_processor.kind_book is not None
    assert plain.post_processor.kind_book.find("dark spot") is not None  # the folder's kind, taught after the fit


def test_kinds_folder_is_taught_with_its_masks(fused_cli):
    from inspect_app.inspector import Inspector
    from inspect_app.kinds.commands import check_folder, teach_parts

    root, models = fused_cli
    inspector = Inspector.load("widget", models)
    teach_parts(inspector, check_folder(root / "kinds"))
    book = inspector.post_processor.kind_book
    spot = book.find("dark spot")
    assert spot is not None and spot.n_examples == 3 and spot.sources[0] == "spot_0.png"
    assert book.find("crack") is not None and book.find("crack").n_examples == 0  # the built-in list stays


def test_kinds_add_list_remove(fused_cli):
    root, models = fused_cli
    runner = CliRunner()
    image = root / "kinds" / "Dark Spot" / "spot_1.png"
    added = runner.invoke(app, ["kinds", "add", str(image), "--product", "widget", "--kind", "burr",
                                "--models-dir", str(models)])
    assert added.exit_code == 0, added.output
    assert "learnt from 1 image(s)" in added.output and "no refit" in added.output
    listed = runner.invoke(app, ["kinds", "list", "--product", "widget", "--models-dir", str(models)])
    assert listed.exit_code == 0 and "burr" in listed.output and "bar comes from" in listed.output
    removed = runner.invoke(app, ["kinds", "remove", "--product", "widget", "--kind", "burr",
                                  "--models-dir", str(models)])
    assert removed.exit_code == 0 and "burr" not in removed.output.split("removed", 1)[1]
    again = runner.invoke(app, ["kinds", "remove", "--product", "widget", "--kind", "burr",
                                "--models-dir", str(models)])
    assert again.exit_code == 2 and "no kind 'burr'" in again.stderr


def test_kinds_add_errors_are_one_line(fused_cli, tmp_path: Path):
    root, models = fused_cli
    runner = CliRunner()
    image = str(root / "kinds" / "Dark Spot" / "spot_1.png")
    missing = runner.invoke(app, ["kinds", "add", str(tmp_path / "nope.png"), "--product", "widget",
                                  "--kind", "burr", "--models-dir", str(models)])
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    masks = runner.invoke(app, ["kinds", "add", image, image, "--mask", image, "--product", "widget",
                                "--kind", "burr", "--models-dir", str(models)])
    assert masks.exit_code == 2 and "one --mask per image" in masks.stderr
    no_profile = runner.invoke(app, ["kinds", "list", "--product", "other", "--models-dir", str(models)])
    assert no_profile.exit_code == 2 and "no profile" in no_profile.stderr


def test_fit_with_kinds_in_a_mode_without_a_memory_bank_is_refused_before_the_fit(fused_cli):
    root, models = fused_cli
    good = ImageFactory(root, seed=6).folder("good_texty", 4, size=64)
    result = CliRunner().invoke(app, ["fit", str(good), "--product", "texty", "--image-size", "64", "--mode",
                                      "image-text", "--kinds", str(root / "kinds"), "--models-dir", str(models)])
    assert result.exit_code == 2 and "--mode image-image" in result.stderr
    assert not (models / "texty").exists()


def test_eval_kind_shots_in_the_default_mode_reports_the_kind_figures(tmp_path: Path):
    """Kinds need only the memory bank: ``eval --kind-shots`` on an image-image fit teaches masked
    parts and reports the three kind figures (masks mark the blobs, so regions can be judged)."""
    factory = ImageFactory(tmp_path, seed=5)
    category = tmp_path / "widget"
    factory.folder("widget/train/good", 8, size=64)
    factory.folder("widget/test/good", 2, size=64)
    for i in range(3):
        factory.write(category / "test" / "dent" / f"{i}.png", paste_blob(factory.good(64), 20 + 8 * i, 30, radius=8))
        mask = np.zeros((64, 64), np.uint8)
        mask[22:38, 12 + 8 * i:28 + 8 * i] = 255
        (category / "ground_truth" / "dent").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(category / "ground_truth" / "dent" / f"{i}_mask.png")
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["eval", str(category), "--mode", "image-image", "--image-size", "64",
                                      "--kind-shots", "1", "--json", str(out)])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["mode"] == "image-image" and summary["kind_shots"] == 1
    assert summary["runtime"] == fastest_installed()  # the default: the exported graph, which names kinds too
    for key in ("defect_type_accuracy", "wrong_kind_rate", "kind_coverage"):
        assert isinstance(summary[key], float) and 0 <= summary[key] <= 1, key
