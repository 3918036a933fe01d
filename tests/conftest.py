"""Shared fixtures: synthetic good/defective images, a fitted tiny inspector, an isolated models
folder, and the shared datasets path (tests that need it skip when it is absent)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

# Tests never wait on a hub download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Inspector tests use 128 px images and model input: at 64 px the default stage-5 level is a
# 4x4 grid whose receptive field spans the whole image, so a pasted defect lights up the whole
# map and cannot be located. Tests that need no localisation (CLI) use 64 px.
SIZE = 128


def good_image(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A "good part": a colour gradient with a smooth random texture and mild sensor noise.

    The texture makes good images differ from each other the way real ones do, so the
    calibrated threshold has a realistic spread and a pasted defect stays local.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    base = 60 + 120 * x / size + 40 * y / size + rng.uniform(-5, 5)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 2)
    image = base[..., None] * np.array([1.0, 0.9, 0.8]) + 25 * (texture / texture.std())[..., None]
    image += rng.normal(0, 3, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def paste_blob(image: np.ndarray, cx: int, cy: int, radius: int = 8, value: int = 10) -> np.ndarray:
    """A copy of ``image`` with a dark disc (the "defect") centred at (cx, cy)."""
    out = image.copy()
    y, x = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    out[(x - cx) ** 2 + (y - cy) ** 2 <= radius * radius] = value
    return out


class ImageFactory:
    """Synthetic good images (reproducible per seed), defective variants, and folders of them."""

    def __init__(self, root: Path | None = None, seed: int = 0):
        self.root = root
        self.rng = np.random.default_rng(seed)

    def good(self, size: int = SIZE) -> np.ndarray:
        return good_image(self.rng, size)

    def goods(self, n: int, size: int = SIZE) -> list[np.ndarray]:
        return [self.good(size) for _ in range(n)]

    def defective(self, cx: int, cy: int, radius: int = 8, size: int = SIZE) -> np.ndarray:
        return paste_blob(self.good(size), cx, cy, radius)

    def dark_spot(self, i: int) -> np.ndarray:
        """A large dark disc, further right with ``i``: one of the two defect kinds of ``teach_two_kinds``."""
        return paste_blob(self.good(), 40 + 12 * i, 50, radius=12, value=5)

    def scratch(self, i: int) -> np.ndarray:
        """A bright line, further down with ``i``: the other kind of ``teach_two_kinds``."""
        return cv2.line(self.good(), (20, 30 + 10 * i), (110, 40 + 10 * i), (250, 250, 250), 3)

    def write(self, path: Path, image: np.ndarray) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        return path

    def folder(self, name: str, n: int, size: int = SIZE, ext: str = "png") -> Path:
        """``root/name`` holding ``n`` good images good_000.<ext>, good_001.<ext>, ..."""
        assert self.root is not None
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            self.write(folder / f"good_{i:03d}.{ext}", self.good(size))
        return folder


def teach_two_kinds(inspector, factory: ImageFactory) -> None:
    """Teach "dark spot" and "scratch", three labelled parts each (regions from the map, as from
    the UI's history)."""
    from inspect_app.kinds.learning import LabelledPart, add_kind

    for name, make in (("dark spot", factory.dark_spot), ("scratch", factory.scratch)):
        add_kind(inspector, name, [LabelledPart(make(i), f"{name}_{i}.png") for i in range(3)])


def tiny_config(image_size: int = SIZE, **overrides):
    """The image-image inspector on small inputs: the foundation path, fast enough for unit tests."""
    from inspect_app.config import BackboneConfig, InspectorConfig

    return InspectorConfig(mode="image-image", backbone=BackboneConfig(image_size=image_size, choose_input=False),
                           **overrides)


@pytest.fixture
def images(tmp_path: Path) -> ImageFactory:
    return ImageFactory(tmp_path / "images")


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty profiles folder; the environment variable is cleared so nothing leaks in."""
    monkeypatch.delenv("INSPECT_APP_MODELS_DIR", raising=False)
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


@pytest.fixture(scope="session")
def fitted_inspector():
    """An Inspector fitted once per session on 12 synthetic good images (held-out calibration).

    Tests must not change it; they save it, or predict with it.
    """
    from inspect_app.inspector import Inspector

    inspector = Inspector(tiny_config(), product="gradient")
    inspector.fit(ImageFactory(seed=100).goods(12))
    return inspector


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The shared real datasets (``inspect_app.data.datasets.shared_datasets``); skip when absent."""
    from inspect_app.data.datasets import DATASETS_ENV, shared_datasets

    path = shared_datasets()
    if path is None:
        pytest.skip(f"shared datasets not found: set {DATASETS_ENV} or place them in ../shared/datasets")
    return path


@pytest.fixture
def postgres_url():
    """A fresh schema in the PostgreSQL database of $INSPECT_APP_TEST_POSTGRES_URL, dropped after."""
    url = os.environ.get("INSPECT_APP_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("INSPECT_APP_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL and sets it)")
    import sqlalchemy as sa

    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
