"""Fusing the image-image and image-text anomaly maps into one.

Each decoder's map lives on its own scale (patch distances vs. probabilities). Both are brought
to a common one with statistics of held-out good images: the log of each map, centred and scaled
by the mean and spread of that decoder's log image scores on held-out normals. The fused map is
a weighted mean of the two standardised maps (image-image 0.75, image-text 0.25), exponentiated
so it stays positive for calibration. The rule was chosen by measurement among the mean, the
maximum and this weighting (`benchmarks/ablation.py`, see benchmarks/RESULTS.md): it had the best
mean image and pixel AUROC over bottle, cookie and magnetic tile, because the image-text decoder,
trained only on synthesised defects, is the weaker of the two on real ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

EPS = 1e-6
IMAGE_TEXT_WEIGHT = 0.25


@dataclass
class DecoderStats:
    """Mean and spread of a decoder's log image scores on held-out good images."""

    log_mean: float
    log_std: float

    @classmethod
    def from_maps(cls, normal_maps: torch.Tensor) -> DecoderStats:
        logs = normal_maps.flatten(1).amax(1).clamp_min(EPS).log()
        return cls(float(logs.mean()), float(logs.std().clamp_min(1e-3)) if len(logs) > 1 else 0.1)

    def standardise(self, maps: torch.Tensor) -> torch.Tensor:
        return (maps.clamp_min(EPS).log() - self.log_mean) / self.log_std

    def to_dict(self) -> dict:
        return asdict(self)


def fuse(image_image: torch.Tensor, image_text: torch.Tensor, stats_ii: DecoderStats,
         stats_it: DecoderStats) -> torch.Tensor:
    """Fused map (positive; larger = more anomalous) from two raw maps of the same shape."""
    z = (1 - IMAGE_TEXT_WEIGHT) * stats_ii.standardise(image_image) + IMAGE_TEXT_WEIGHT * stats_it.standardise(image_text)
    return z.clamp(-30, 30).exp()
