"""Accuracy floors of the product's default configuration on real parts (skipped without the shared datasets).

Each test fits ``InspectorConfig()`` (whatever mode is the default: the floors follow it) on a
category's good training images, inspects its test images, and checks image AUROC, pixel AUROC
and, at the threshold calibrated from good images alone, the false-reject rate on good parts and
the detection rate on defective ones. Floors sit a little below the figures these very fits gave
on 2026-12-06 (image-image default with its chosen input and leave-one-out calibration, issue
25), so that a real regression fails while float-level differences between machines do not.

To stay near three minutes on two cores, bottle and cookie run in full, and magnetic tile on a
fixed subset: 120 of its 762 good training images (drawn with seed 0), and 40 good plus 20 of
each of its five defect folders among its test images (seed 1; 140 of 582). The subset's figures
are its own: its 120 leave-one-out good scores put the conformal threshold at their second
largest, so it detects 12 % of defects where the full category detects more (RESULTS.md). The
full run over every shared category is a benchmark: ``benchmarks/run_all.py --only matrix``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest

from inspect_app.config import InspectorConfig
from inspect_app.data import mvtec
from inspect_app.data.mvtec import MVTecCategory
from inspect_app.inspector import Inspector
from inspect_app.metrics.evaluate import Quality, measure

pytestmark = [pytest.mark.dataset, pytest.mark.slow]

TILE_TRAIN, TILE_TEST_GOOD, TILE_TEST_PER_DEFECT = 120, 40, 20


@dataclass(frozen=True)
class Floors:
    image_auroc: float
    pixel_auroc: float
    max_frr: float
    min_detection: float


def _category(datasets_dir: Path, relative: str) -> MVTecCategory:
    path = datasets_dir / relative
    if not (path / "train" / "good").is_dir():
        pytest.skip(f"{path} not present")
    return MVTecCategory(path)


def _fit_and_measure(name: str, train: list[Path], samples: list[mvtec.TestSample]) -> Quality:
    inspector = Inspector(InspectorConfig(), product=name)
    inspector.fit(train)
    results = inspector.predict_batch([s.path for s in samples])
    return measure(samples, results, with_kinds=inspector.mode != "image-image")


def _check(quality: Quality, floors: Floors) -> None:
    figures = {k: v for k, v in asdict(quality).items() if k != "detection_by_type"}
    print(figures)  # the measured figures in the test log, passing or not
    assert quality.image_auroc >= floors.image_auroc, figures
    assert quality.pixel_auroc >= floors.pixel_auroc, figures
    assert quality.frr <= floors.max_frr, figures
    assert quality.detection_rate >= floors.min_detection, figures


def _seeded_subset(items: list, n: int, rng: np.random.Generator) -> list:
    return [items[i] for i in sorted(rng.choice(len(items), size=min(n, len(items)), replace=False))]


def test_bottle_default_mode(datasets_dir: Path):
    category = _category(datasets_dir, "mvtec_ad/bottle")
    samples = category.test_samples()
    quality = _fit_and_measure("bottle", category.train_images(), samples)
    assert (quality.n_test_good, quality.n_test_defective) == (20, 63)
    # measured: 1.000 / 0.9827, no good bottle rejected, every defect detected
    _check(quality, Floors(image_auroc=0.99, pixel_auroc=0.975, max_frr=2 / 20, min_detection=0.95))


def test_cookie_default_mode(datasets_dir: Path):
    category = _category(datasets_dir, "lookout_cookies/cookie")
    samples = category.test_samples()
    quality = _fit_and_measure("cookie", category.train_images(), samples)
    assert (quality.n_test_good, quality.n_test_defective) == (14, 32)
    # measured: 1.000 / 0.9790, no good cookie rejected, 31 of 32 defects detected
    _check(quality, Floors(image_auroc=0.98, pixel_auroc=0.965, max_frr=1 / 14, min_detection=0.90))


def test_magnetic_tile_subset_default_mode(datasets_dir: Path):
    category = _category(datasets_dir, "magnetic_tile/tile")
    train = _seeded_subset(category.train_images(), TILE_TRAIN, np.random.default_rng(0))
    samples, rng = category.test_samples(), np.random.default_rng(1)
    chosen = _seeded_subset([s for s in samples if not s.is_defective], TILE_TEST_GOOD, rng)
    for defect_type in sorted({s.defect_type for s in samples if s.is_defective}):
        chosen += _seeded_subset([s for s in samples if s.defect_type == defect_type], TILE_TEST_PER_DEFECT, rng)
    quality = _fit_and_measure("tile", train, chosen)
    assert (quality.n_test_good, quality.n_test_defective) == (TILE_TEST_GOOD, 5 * TILE_TEST_PER_DEFECT)
    # measured on this subset: 0.837 / 0.809, no good tile rejected, 21 of 100 defects detected (with
    # each image's exposure standardised; 0.828 / 0.786 and 12 of 100 without)
    _check(quality, Floors(image_auroc=0.80, pixel_auroc=0.78, max_frr=4 / 40, min_detection=0.15))
