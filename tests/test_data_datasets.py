"""Where the real data sets are found (``inspect_app.data.datasets``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspect_app.data.datasets import DATASETS_ENV, MARKER_CATEGORY, elpv_cells, shared_datasets


@pytest.fixture
def beside_checkout(tmp_path, monkeypatch) -> Path:
    """A ``shared/datasets`` folder beside the working folder (``tmp/checkout``)."""
    (tmp_path / "shared" / "datasets" / MARKER_CATEGORY).mkdir(parents=True)
    (tmp_path / "checkout").mkdir()
    monkeypatch.chdir(tmp_path / "checkout")
    return tmp_path / "shared" / "datasets"


def test_a_shared_folder_beside_the_working_folder(beside_checkout, monkeypatch):
    monkeypatch.delenv(DATASETS_ENV, raising=False)
    assert shared_datasets() == beside_checkout


def test_the_environment_variable_decides_when_set(beside_checkout, tmp_path, monkeypatch):
    (tmp_path / "mine" / MARKER_CATEGORY).mkdir(parents=True)
    monkeypatch.setenv(DATASETS_ENV, str(tmp_path / "mine"))
    assert shared_datasets() == tmp_path / "mine"
    monkeypatch.setenv(DATASETS_ENV, str(tmp_path / "elsewhere"))
    assert shared_datasets() is None  # an explicit setting is never replaced by another folder
    (tmp_path / "no_bottle").mkdir()
    monkeypatch.setenv(DATASETS_ENV, str(tmp_path / "no_bottle"))
    assert shared_datasets() is None


def test_elpv_cells_are_the_wheels_mono_cells():
    good, bad = elpv_cells()
    assert len(good) > 100 and len(bad) > 50
    assert all(p.is_file() for p in good[:3] + bad[:3]) and not set(good) & set(bad)
