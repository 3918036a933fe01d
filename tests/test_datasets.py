"""Accuracy floors on the shared real datasets (skipped when they are absent).

The floors sit slightly below the project's targets so that a run-to-run wobble does not fail
CI, while a real regression does. They use the image-image (memory bank) mode, the foundation
every other mode builds on. Magnetic tile (about 70 s to fit) is left to `inspect-app eval`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inspect_app.config import InspectorConfig

pytestmark = [pytest.mark.dataset, pytest.mark.slow]


def _category(datasets_dir: Path, relative: str) -> Path:
    path = datasets_dir / relative
    if not (path / "train" / "good").is_dir():
        pytest.skip(f"{path} not present")
    return path


def _run(path: Path, k_shot: int | None = None):
    from inspect_app.metrics.evaluate import evaluate_run

    # latency is a benchmark's business: one sample keeps the test short
    return evaluate_run(path, InspectorConfig(mode="image-image", k_shot=k_shot), seed=0, latency_samples=1)


def test_bottle_full_shot(datasets_dir: Path):
    run = _run(_category(datasets_dir, "mvtec_ad/bottle"))
    assert run.n_train == 209 and run.n_test_good == 20 and run.n_test_defective == 63
    assert run.image_auroc >= 0.99
    assert run.pixel_auroc >= 0.97
    assert run.aupro >= 0.90
    assert run.frr <= 0.10
    assert run.detection_rate >= 0.90
    assert run.threshold_method == "conformal-order-statistic"  # 209 leave-one-out good scores


def test_cookie_full_shot(datasets_dir: Path):
    run = _run(_category(datasets_dir, "lookout_cookies/cookie"))
    assert run.image_auroc >= 0.95


def test_bottle_four_shot(datasets_dir: Path):
    run = _run(_category(datasets_dir, "mvtec_ad/bottle"), k_shot=4)
    assert run.n_train == 4 and run.k_shot == 4
    assert run.image_auroc >= 0.97
