"""Choosing the pass/fail threshold from normal images alone.

Held-out normal images give a sample of scores that good parts get. The threshold must sit
beyond most of them, but a threshold at the sample maximum is as noisy as its largest value and
ignores how many normals were seen. With enough scores (n >= 1/target - 1: 99 for 1 %), the
threshold is the conformal order statistic, the ceil((n + 1)(1 - target))-th smallest score: for
good parts exchangeable with the calibration ones, their false-reject rate is at most the target,
whatever the scores' distribution (magnetic tile's log-normal bound rejected 7-8 % of good test
tiles for a 1 % target; this one 1.1 %, benchmarks/score_rules.py). With fewer, a log-normal tail
is fitted and the threshold placed at its one-sided prediction bound for the target (Student-t,
so a small sample widens the bound), which extrapolates beyond the largest score. Scores are then
mapped through a logistic so that 0.5 is the threshold and a typical (median) good part scores
about 0.1: steep enough to read, gentle enough that strong defects keep distinct values instead of
saturating at 1.0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats
from sklearn.metrics import precision_recall_curve

from inspect_app.errors import NotEnoughImagesError

CONFORMAL = "conformal-order-statistic"
MEDIAN_NORMAL_LOGIT = math.log(9.0)  # the median held-out good part maps to a score of 0.1


@dataclass
class Calibration:
    """Everything needed to turn a raw score into a calibrated one (stored in the profile)."""

    method: str  # "conformal-order-statistic", "lognormal-prediction-bound" or "f1-optimal"
    raw_threshold: float
    log_scale: float  # logistic scale in log-score units
    target_frr: float
    expected_frr: float  # predicted false-reject rate of new normals at the threshold
    holdout_method: str  # "holdout", "leave-one-out" or "augmented-views"
    n_normal: int
    normal_scores: list[float] = field(default_factory=list)  # held-out raw scores, for histograms
    defect_scores: list[float] = field(default_factory=list)

    def normalize(self, raw: np.ndarray | float) -> np.ndarray | float:
        """Map raw scores (or maps) to (0, 1) with 0.5 exactly at the threshold.

        A score (the verdict's) is mapped in float64; a map in float32, which is what it is kept
        in anyway: 6x faster on a 256 x 256 map, within 2e-7 of the float64 values."""
        if np.ndim(raw) == 0:
            logit = (math.log(max(float(raw), 1e-12)) - math.log(self.raw_threshold)) / self.log_scale
            return 1.0 / (1.0 + math.exp(-min(max(logit, -60.0), 60.0)))
        raw_arr = np.maximum(np.asarray(raw, dtype=np.float32), np.float32(1e-12))
        z = np.log(raw_arr)
        z -= np.float32(math.log(self.raw_threshold))
        z *= np.float32(1.0 / self.log_scale)
        np.clip(z, -60, 60, out=z)
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += 1
        return np.reciprocal(z, out=z)

    def frr_at(self, raw_threshold: float) -> float:
        """Predicted false-reject rate of new normal parts at another raw threshold: the share of
        calibration scores above it (conformal, (k + 1) / (n + 1)) or the log-normal tail's."""
        if len(self.normal_scores) < 2:
            return float("nan")
        if self.method == CONFORMAL:
            above = sum(s > raw_threshold for s in self.normal_scores)
            return min(1.0, (above + 1) / (len(self.normal_scores) + 1))
        tail = LogNormalTail.fit(self.normal_scores)
        return float(stats.t.sf((math.log(raw_threshold) - tail.mu) / tail.spread, tail.n - 1))

    def with_sensitivity(self, target_frr: float) -> Calibration:
        """The same calibration, re-thresholded for another false-reject target."""
        return calibrate_threshold(self.normal_scores, target_frr, self.holdout_method)

    def with_more_normals(self, scores: list[float]) -> Calibration:
        """Re-thresholded with more good parts' scores (taken before they were learnt), for the
        same target; an F1-optimal threshold becomes a prediction bound again."""
        return calibrate_threshold([*self.normal_scores, *scores], self.target_frr, self.holdout_method)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(**data)


@dataclass
class LogNormalTail:
    """Log-normal fit of held-out normal scores; ``spread`` is the prediction-interval scale."""

    mu: float
    sd: float
    n: int

    @classmethod
    def fit(cls, scores) -> LogNormalTail:
        logs = np.log(np.maximum(np.asarray(scores, dtype=np.float64), 1e-12))
        return cls(float(logs.mean()), max(float(logs.std(ddof=1)), 1e-3 * max(abs(float(logs.mean())), 1e-6)),
                   int(logs.size))

    @property
    def spread(self) -> float:
        return self.sd * math.sqrt(1 + 1 / self.n)

    def bound(self, target_frr: float) -> float:
        """Raw score that a new normal exceeds with probability ``target_frr``."""
        return math.exp(self.mu + self.spread * stats.t.ppf(1 - target_frr, self.n - 1))


def calibrate_threshold(normal_scores, target_frr: float = 0.01, holdout_method: str = "holdout",
                        defect_scores=None) -> Calibration:
    """Threshold for ``target_frr`` from held-out normal raw scores (log-normal prediction bound).

    With ``defect_scores`` (a few labelled defective parts), the threshold instead maximises F1
    over held-out normals and those defects.
    """
    scores = np.asarray(normal_scores, dtype=np.float64)
    if scores.size < 2:
        raise NotEnoughImagesError("calibration needs at least 2 held-out normal scores")
    tail = LogNormalTail.fit(scores)
    rank = math.ceil((scores.size + 1) * (1 - target_frr))
    if rank <= scores.size:
        threshold, method = float(np.sort(scores)[rank - 1]), CONFORMAL
    else:
        threshold, method = tail.bound(target_frr), "lognormal-prediction-bound"
    defects = np.asarray(defect_scores if defect_scores is not None else [], dtype=np.float64)
    if defects.size:
        # F1 of "score >= t is a defect" at every distinct score; the lowest t among ties.
        labels = np.concatenate([np.zeros(scores.size), np.ones(defects.size)])
        precision, recall, thresholds = precision_recall_curve(labels, np.concatenate([scores, defects]))
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        threshold, method = float(thresholds[int(np.argmax(f1))]), "f1-optimal"
    scale = (math.log(threshold) - float(np.median(np.log(np.maximum(scores, 1e-12))))) / MEDIAN_NORMAL_LOGIT
    if not scale > 1e-4:
        scale = tail.sd
    cal = Calibration(
        method=method, raw_threshold=float(threshold), log_scale=float(scale), target_frr=float(target_frr),
        expected_frr=0.0, holdout_method=holdout_method, n_normal=tail.n,
        normal_scores=[float(s) for s in scores],
        defect_scores=[float(s) for s in defects],
    )
    cal.expected_frr = cal.frr_at(cal.raw_threshold)
    return cal
