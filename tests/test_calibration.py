"""Threshold calibration from normal scores alone (log-normal prediction bound), and F1 with defects."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from inspect_app.errors import NotEnoughImagesError
from inspect_app.post_processing.calibration import Calibration, calibrate_threshold

MU, SIGMA = 1.0, 0.4


def _lognormal(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(MU, SIGMA, n)


def _true_quantile(q: float) -> float:
    return math.exp(MU + SIGMA * stats.norm.ppf(q))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_large_sample_threshold_approximates_true_quantile(seed: int):
    cal = calibrate_threshold(_lognormal(2000, seed), target_frr=0.01)
    assert cal.method == "conformal-order-statistic"  # 2000 scores: the order statistic, no tail model
    # an order statistic varies more than a fitted (and here exactly right) tail
    assert cal.raw_threshold == pytest.approx(_true_quantile(0.99), rel=0.06)
    # the other target moves it to the other quantile
    cal5 = calibrate_threshold(_lognormal(2000, seed), target_frr=0.05)
    assert cal5.raw_threshold == pytest.approx(_true_quantile(0.95), rel=0.06)


def test_small_sample_extrapolates_beyond_the_maximum():
    scores = _lognormal(8, seed=3)
    cal = calibrate_threshold(scores, target_frr=0.01)
    assert cal.raw_threshold > scores.max()
    assert cal.n_normal == 8
    # a small sample widens the bound compared with the true quantile (Student-t, 1 + 1/n)
    big = calibrate_threshold(_lognormal(2000, seed=3), target_frr=0.01)
    small_z = (math.log(cal.raw_threshold) - np.log(scores).mean()) / np.log(scores).std(ddof=1)
    big_z = (math.log(big.raw_threshold) - np.log(_lognormal(2000, 3)).mean()) / np.log(_lognormal(2000, 3)).std(ddof=1)
    assert small_z > big_z + 0.3


def test_normalize_puts_threshold_at_one_half_and_is_monotone():
    scores = _lognormal(50, seed=4)
    cal = calibrate_threshold(scores, target_frr=0.01)
    assert cal.normalize(cal.raw_threshold) == pytest.approx(0.5, abs=1e-9)
    raw = np.linspace(0.01, 5 * cal.raw_threshold, 400)
    norm = cal.normalize(raw)
    assert isinstance(norm, np.ndarray) and norm.shape == raw.shape
    assert np.all(np.diff(norm) > 0) and norm[0] < 0.01 and norm[-1] > 0.9  # strictly: no saturation
    assert np.all((norm >= 0) & (norm <= 1))
    # the median good part scores about 0.1 by design
    assert cal.normalize(float(np.median(scores))) == pytest.approx(0.1, abs=0.01)
    # maps (2-D) keep their shape; scalars stay scalars
    assert cal.normalize(np.ones((3, 4))).shape == (3, 4)
    assert isinstance(cal.normalize(1.0), float)


def test_normalize_handles_zero_and_negative_scores():
    cal = calibrate_threshold([1.0, 1.2, 0.9, 1.1], target_frr=0.01)
    out = cal.normalize(np.array([0.0, -1.0]))
    assert np.all(np.isfinite(out)) and np.all(out < 0.01)


def test_f1_optimal_threshold_separates_defects_from_normals():
    normals = np.random.default_rng(5).uniform(1.0, 2.0, 30)
    defects = np.random.default_rng(6).uniform(5.0, 6.0, 6)
    cal = calibrate_threshold(normals, target_frr=0.01, defect_scores=defects)
    assert cal.method == "f1-optimal"
    assert normals.max() < cal.raw_threshold <= defects.min()
    assert cal.normalize(defects).min() >= 0.5
    assert cal.normalize(normals).max() < 0.5
    assert cal.defect_scores == pytest.approx(list(defects))


def test_f1_optimal_with_overlap_balances_errors():
    normals = np.array([1.0, 2.0, 3.0, 4.0, 10.0])  # one outlier normal
    defects = np.array([8.0, 9.0, 11.0, 12.0])
    cal = calibrate_threshold(normals, defect_scores=defects)
    # thresholds at 8 (1 FP, 0 FN: F1 = 8/9) beat 11 (0 FP, 2 FN: F1 = 2/3)
    assert cal.raw_threshold == pytest.approx(8.0)


@pytest.mark.parametrize("scores", [[], [1.0]])
def test_fewer_than_two_scores_raise(scores):
    with pytest.raises(NotEnoughImagesError, match="at least 2"):
        calibrate_threshold(scores)


def test_with_sensitivity_moves_threshold_the_right_way():
    cal = calibrate_threshold(_lognormal(40, seed=7), target_frr=0.01, holdout_method="leave-one-out")
    stricter = cal.with_sensitivity(0.05)  # accept more false rejects -> lower threshold
    looser = cal.with_sensitivity(0.001)
    assert stricter.raw_threshold < cal.raw_threshold < looser.raw_threshold
    assert stricter.target_frr == 0.05 and stricter.holdout_method == "leave-one-out"
    assert stricter.normal_scores == cal.normal_scores


def test_frr_at_is_consistent_with_target():
    cal = calibrate_threshold(_lognormal(30, seed=8), target_frr=0.02)
    assert cal.expected_frr == pytest.approx(0.02, rel=1e-6)
    assert cal.frr_at(cal.raw_threshold) == pytest.approx(0.02, rel=1e-6)
    assert cal.frr_at(cal.raw_threshold * 0.8) > 0.02 > cal.frr_at(cal.raw_threshold * 1.25)
    # and it predicts the empirical reject rate of fresh normals from the same distribution
    fresh = _lognormal(20000, seed=9)
    big = calibrate_threshold(_lognormal(2000, seed=10), target_frr=0.02)
    assert np.mean(fresh > big.raw_threshold) == pytest.approx(0.02, abs=0.006)


def test_constant_scores_still_give_a_usable_threshold():
    cal = calibrate_threshold([2.0] * 6)
    assert cal.raw_threshold > 2.0 and math.isfinite(cal.log_scale) and cal.log_scale > 0
    assert cal.normalize(2.0) < 0.5 < cal.normalize(3.0)


def test_dict_round_trip():
    cal = calibrate_threshold(_lognormal(12, seed=11), defect_scores=[20.0, 30.0])
    again = Calibration.from_dict(cal.to_dict())
    assert again == cal
    assert again.normalize(7.0) == cal.normalize(7.0)


def test_f1_optimal_threshold_matches_the_definition():
    """The library's precision-recall curve gives the threshold a direct count does: the lowest
    distinct score with the best F1 of "score >= t is a defect"."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        normals, defects = rng.lognormal(0, 0.4, 30), rng.lognormal(0.6, 0.5, 6)
        best_f1, best_t = -1.0, None
        for t in np.unique(np.concatenate([normals, defects])):
            tp, fp, fn = (defects >= t).sum(), (normals >= t).sum(), (defects < t).sum()
            f1 = 2 * tp / (2 * tp + fp + fn)
            if f1 > best_f1:
                best_f1, best_t = f1, t
        assert calibrate_threshold(normals, defect_scores=defects).raw_threshold == pytest.approx(best_t)


def test_enough_scores_give_the_conformal_threshold():
    scores = _lognormal(200, seed=3)
    cal = calibrate_threshold(scores, target_frr=0.01)
    assert cal.method == "conformal-order-statistic"
    assert cal.raw_threshold == sorted(scores)[198]  # ceil(201 * 0.99) = 199th smallest
    assert cal.expected_frr == pytest.approx(2 / 201)
    assert cal.frr_at(max(scores) + 1) == pytest.approx(1 / 201)
    assert calibrate_threshold(scores[:98], target_frr=0.01).method == "lognormal-prediction-bound"
    assert calibrate_threshold(scores[:99], target_frr=0.01).method == "conformal-order-statistic"
    assert calibrate_threshold(scores[:19], target_frr=0.05).method == "conformal-order-statistic"
