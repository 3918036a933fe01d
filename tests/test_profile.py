"""Profiles on disk: atomic writes, and every kind of bad profile refused with a ProfileError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from inspect_app import PROFILE_FORMAT
from inspect_app.errors import ProfileError
from inspect_app.inspector import Inspector
from inspect_app.profile import (
    MODEL_FILE,
    PROFILE_FILE,
    check_product_name,
    delete_profile,
    list_profiles,
    load_profile,
    models_dir,
    save_profile,
)


def _meta(**extra) -> dict:
    return {"format": PROFILE_FORMAT, "package_version": "test", **extra}


def _tensors(value: float = 1.0) -> dict:
    return {"image_image.memory_bank": torch.full((4, 3), value)}


def _leftovers(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.name.startswith(".")]


def test_round_trip(tmp_path: Path):
    folder = save_profile(tmp_path / "widget", _meta(note="hello"), _tensors(2.5))
    assert folder == tmp_path / "widget"
    meta, tensors = load_profile(folder)
    assert meta["note"] == "hello" and meta["format"] == PROFILE_FORMAT
    assert torch.equal(tensors["image_image.memory_bank"], torch.full((4, 3), 2.5))
    assert _leftovers(tmp_path) == []


def test_overwrite_replaces_old_profile_and_cleans_up(tmp_path: Path):
    save_profile(tmp_path / "widget", _meta(version=1), _tensors(1.0))
    save_profile(tmp_path / "widget", _meta(version=2), _tensors(2.0))
    meta, tensors = load_profile(tmp_path / "widget")
    assert meta["version"] == 2 and float(tensors["image_image.memory_bank"][0, 0]) == 2.0
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_old_profile_and_leaves_no_temp_folder(tmp_path: Path, monkeypatch, exc):
    save_profile(tmp_path / "widget", _meta(version=1), _tensors(1.0))
    before = {p.name: p.read_bytes() for p in (tmp_path / "widget").iterdir()}

    def failing_save(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"partial")  # a half-written file, then the failure
        raise exc

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    with pytest.raises(type(exc)):
        save_profile(tmp_path / "widget", _meta(version=2), _tensors(2.0))
    after = {p.name: p.read_bytes() for p in (tmp_path / "widget").iterdir()}
    assert after == before
    assert load_profile(tmp_path / "widget")[0]["version"] == 1
    assert _leftovers(tmp_path) == []


def test_missing_profile(tmp_path: Path):
    with pytest.raises(ProfileError, match="no profile for product 'ghost'.*inspect-app fit"):
        load_profile(tmp_path / "ghost")


@pytest.mark.parametrize("fmt", [PROFILE_FORMAT + 1, 0, None, "1"])
def test_wrong_format_refused(tmp_path: Path, fmt):
    folder = save_profile(tmp_path / "widget", _meta(), _tensors())
    meta = json.loads((folder / PROFILE_FILE).read_text())
    meta["format"] = fmt
    (folder / PROFILE_FILE).write_text(json.dumps(meta))
    with pytest.raises(ProfileError, match="format.*refit"):
        load_profile(folder)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b""])
def test_corrupt_json_refused(tmp_path: Path, content: bytes):
    folder = save_profile(tmp_path / "widget", _meta(), _tensors())
    (folder / PROFILE_FILE).write_bytes(content)
    with pytest.raises(ProfileError, match="corrupt"):
        load_profile(folder)


@pytest.mark.parametrize("content", ["[1, 2]", "null", "\"text\""])
def test_json_that_is_not_an_object_refused(tmp_path: Path, content: str):
    folder = save_profile(tmp_path / "widget", _meta(), _tensors())
    (folder / PROFILE_FILE).write_text(content)
    with pytest.raises(ProfileError):
        load_profile(folder)


def test_missing_safetensors_refused(tmp_path: Path):
    folder = save_profile(tmp_path / "widget", _meta(), _tensors())
    (folder / MODEL_FILE).unlink()
    with pytest.raises(ProfileError, match="missing model.safetensors"):
        load_profile(folder)


def test_corrupt_safetensors_refused(tmp_path: Path):
    folder = save_profile(tmp_path / "widget", _meta(), _tensors())
    (folder / MODEL_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(ProfileError, match="corrupt"):
        load_profile(folder)


@pytest.mark.parametrize("name", ["../x", "", "a/b", "a\\b", ".hidden", "-dash", "x" * 65, "adapters", "a b"])
def test_invalid_product_names_refused(name: str):
    with pytest.raises(ProfileError, match="invalid product name"):
        check_product_name(name)


@pytest.mark.parametrize("name", ["bottle", "Part_01.v2", "a", "x" * 64, "9-line"])
def test_valid_product_names(name: str):
    assert check_product_name(name) == name


def test_models_dir_resolution(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("INSPECT_APP_MODELS_DIR", raising=False)
    assert models_dir() == Path("models")
    monkeypatch.setenv("INSPECT_APP_MODELS_DIR", str(tmp_path / "env"))
    assert models_dir() == tmp_path / "env"
    assert models_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_list_and_delete(tmp_path: Path):
    assert list_profiles(tmp_path / "nothing-here") == []
    save_profile(tmp_path / "b", _meta(), _tensors())
    save_profile(tmp_path / "a", _meta(), _tensors())
    (tmp_path / "not-a-profile").mkdir()
    assert list_profiles(tmp_path) == ["a", "b"]
    delete_profile("a", tmp_path)
    assert list_profiles(tmp_path) == ["b"]
    with pytest.raises(ProfileError, match="no profile"):
        delete_profile("a", tmp_path)
    with pytest.raises(ProfileError, match="invalid product name"):
        delete_profile("../b", tmp_path)
    assert (tmp_path / "b").is_dir()


# ---------------------------------------------------------------- through the Inspector


def _tamper(folder: Path, **changes) -> None:
    meta = json.loads((folder / PROFILE_FILE).read_text())
    meta.update(changes)
    (folder / PROFILE_FILE).write_text(json.dumps(meta))


def test_inspector_refuses_other_backbone_fingerprint(fitted_inspector, models_dir: Path):
    folder = fitted_inspector.save(models_dir)
    Inspector.load("gradient", models_dir)  # loads as saved
    _tamper(folder, backbone_fingerprint="efficientnet-lite0:0000000000000000:imagenet")
    with pytest.raises(ProfileError, match="encoder.*refit"):
        Inspector.load("gradient", models_dir)


def test_inspector_refuses_mismatched_memory_bank(fitted_inspector, models_dir: Path):
    folder = fitted_inspector.save(models_dir)
    state = safetensors.torch.load_file(str(folder / MODEL_FILE))
    state["image_image.memory_bank"] = torch.zeros(10, 7)
    safetensors.torch.save_file(state, str(folder / MODEL_FILE))
    with pytest.raises(ProfileError, match="refit"):
        Inspector.load("gradient", models_dir)


def test_inspector_refuses_profile_without_config(fitted_inspector, models_dir: Path):
    folder = fitted_inspector.save(models_dir)
    meta = json.loads((folder / PROFILE_FILE).read_text())
    del meta["config"]
    (folder / PROFILE_FILE).write_text(json.dumps(meta))
    with pytest.raises(ProfileError, match="incomplete or corrupt"):
        Inspector.load("gradient", models_dir)


def test_inspector_load_refuses_bad_product_name(models_dir: Path):
    with pytest.raises(ProfileError, match="invalid product name"):
        Inspector.load("../etc", models_dir)


# ---------------------------------------------------------------- format 5: round trip, old formats, refit


def test_profile_round_trip_keeps_model_post_processing_and_training_images(tmp_path: Path, models_dir: Path):
    """Everything fitted comes back: the model's state dict, the post-processor, and where the
    training images are (absolute path and SHA-256), so a later refit can read them again."""
    import hashlib

    from conftest import ImageFactory, tiny_config

    folder = ImageFactory(tmp_path, seed=11).folder("goods", 12)
    inspector = Inspector(tiny_config(), product="widget")
    inspector.fit(folder)
    saved = inspector.save(models_dir)
    assert sorted(p.name for p in saved.iterdir()) == [MODEL_FILE, PROFILE_FILE]
    loaded = Inspector.load("widget", models_dir)
    for name, value in inspector.model.fitted_state().items():
        assert torch.equal(value, loaded.model.fitted_state()[name]), name
    assert loaded.post_processor.to_dict() == inspector.post_processor.to_dict()
    records = loaded.meta["training"]["images"]
    assert len(records) == 12
    for record in records:
        path = Path(record["path"])
        assert path.is_absolute() and path.parent == folder.resolve()
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_format_4_profile_refused_with_the_refit_command(fitted_inspector, models_dir: Path):
    folder = fitted_inspector.save(models_dir)
    _tamper(folder, format=4)
    with pytest.raises(ProfileError, match=r"format 4.*inspect-app refit gradient"):
        Inspector.load("gradient", models_dir)


def test_refit_uses_recorded_images_and_reports_changed_ones(tmp_path: Path, models_dir: Path):
    from inspect_app.refit import plan_refit, refit

    from conftest import ImageFactory, tiny_config

    folder = ImageFactory(tmp_path, seed=12).folder("goods", 12)
    inspector = Inspector(tiny_config(), product="widget")
    inspector.fit(folder)
    profile_folder = inspector.save(models_dir)
    _tamper(profile_folder, format=4)  # an upgrade left it behind
    first = sorted(folder.iterdir())[0]
    first.write_bytes(next(iter(sorted(folder.iterdir())[1:])).read_bytes())  # its content changed
    plan = plan_refit("widget", models_dir)
    assert plan.source == "the recorded training images" and len(plan.images) == 12
    assert plan.changed == [first.name] and plan.missing == []
    report, path = refit(plan, models_dir)
    assert report.n_images == 12 and path == profile_folder
    assert Inspector.load("widget", models_dir).predict(ImageFactory(seed=13).good()).verdict == "PASS"


def test_refit_of_a_profile_without_recorded_paths_needs_a_folder(tmp_path: Path, models_dir: Path):
    from inspect_app.errors import NotEnoughImagesError
    from inspect_app.refit import plan_refit, refit_all_plans

    from conftest import ImageFactory, tiny_config

    folder = ImageFactory(tmp_path, seed=14).folder("goods", 10)
    inspector = Inspector(tiny_config(), product="widget")
    inspector.fit(folder)
    profile_folder = inspector.save(models_dir)
    meta = json.loads((profile_folder / PROFILE_FILE).read_text())
    for record in meta["training"]["images"]:  # what a format-4 profile recorded: name and hash only
        del record["path"]
    meta["format"] = 4
    (profile_folder / PROFILE_FILE).write_text(json.dumps(meta))
    with pytest.raises(NotEnoughImagesError, match="inspect-app refit widget --images FOLDER"):
        plan_refit("widget", models_dir)
    assert isinstance(refit_all_plans(models_dir)[0], NotEnoughImagesError)
    plan = plan_refit("widget", models_dir, images=folder)
    assert len(plan.images) == 10 and plan.changed == [] and plan.config == inspector.config
