"""Evaluation metrics: AUROC (scikit-learn) and AUPRO (anomalib's public metric), checked by hand
and against the private anomalib metrics the evaluation used before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspect_app.metrics.curves import aupro, auroc


def _pair_count_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC by its definition: the share of (defective, good) pairs ranked right, ties counting half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def _synthetic_maps(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Eight 48 x 48 maps: noise everywhere, raised under blobs of varied size on the last five masks."""
    rng = np.random.default_rng(seed)
    maps = rng.gamma(2.0, 0.1, size=(8, 48, 48)).astype(np.float32)
    masks = np.zeros((8, 48, 48), dtype=np.uint8)
    y, x = np.mgrid[0:48, 0:48]
    for i, (cx, cy, r) in enumerate([(10, 12, 3), (30, 30, 8), (40, 8, 5), (20, 36, 2), (24, 24, 12)], start=3):
        blob = (x - cx) ** 2 + (y - cy) ** 2 <= r * r
        masks[i][blob] = 1
        maps[i][blob] += rng.uniform(0.0, 0.5, size=int(blob.sum())).astype(np.float32)
    return maps, masks


def test_auroc_is_the_share_of_pairs_ranked_right():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=60), 1)  # rounded: many ties between good and defective
    labels = (rng.random(60) < 0.4).astype(int)
    scores[labels == 1] += 0.8
    assert auroc(scores, labels) == pytest.approx(_pair_count_auroc(scores, labels), abs=1e-12)
    # raw distances far outside [0, 1] are ranked as they are (torchmetrics would squash them with a sigmoid)
    assert auroc(scores * 2.0**14, labels) == pytest.approx(auroc(scores, labels), abs=1e-12)  # exact scaling
    with pytest.raises(ValueError):
        auroc([0.1, 0.2], [0, 0])


def test_aupro_weighs_every_region_equally_whatever_its_size():
    """A large region scored above every normal pixel and a small one below them all: half of the
    regions are found at any false-positive rate, so AUPRO is 0.5, while pixel AUROC (100 of
    104 defective pixels ranked first) is 0.96."""
    rng = np.random.default_rng(2)
    maps = rng.uniform(0.1, 0.8, size=(1, 32, 32)).astype(np.float32)
    masks = np.zeros((1, 32, 32), dtype=np.uint8)
    masks[0, :10, :10], maps[0, :10, :10] = 1, 0.9
    masks[0, 20:22, 20:22], maps[0, 20:22, 20:22] = 1, 0.0
    assert aupro(maps, masks) == pytest.approx(0.5, abs=1e-6)
    assert auroc(maps, masks) == pytest.approx(100 / 104, abs=1e-12)
    assert aupro(np.where(masks == 1, 1.0, maps), masks) == pytest.approx(1.0, abs=1e-6)


def test_figures_unchanged_from_the_private_anomalib_metrics():
    """The figures the evaluation reported with anomalib's private ``_AUROC``/``_AUPRO`` (until
    issue 24) are what the public replacements give on the same maps."""
    from anomalib.metrics.aupro import _AUPRO
    from anomalib.metrics.auroc import _AUROC

    maps, masks = _synthetic_maps()
    scores, labels = maps.reshape(8, -1).max(1).astype(np.float64), masks.reshape(8, -1).max(1)
    before = []
    for preds, target in ((scores, labels), (maps.ravel(), masks.ravel())):
        metric = _AUROC()
        metric.update(torch.from_numpy(preds), torch.from_numpy(target.astype(np.int64)))
        before.append(float(metric.compute()))
    old_aupro = _AUPRO(fpr_limit=0.3)
    old_aupro.update(torch.from_numpy(maps), torch.from_numpy(masks))
    assert auroc(scores, labels) == pytest.approx(before[0], abs=1e-6)
    assert auroc(maps, masks) == pytest.approx(before[1], abs=1e-6)
    assert aupro(maps, masks) == pytest.approx(float(old_aupro.compute()), abs=1e-6)
    assert 0.5 < auroc(maps, masks) < 1.0 and 0.0 < aupro(maps, masks) < 1.0  # not a degenerate case
