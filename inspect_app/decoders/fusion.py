"""Fusing the image-image and image-text anomaly maps into one.

Each decoder's map lives on its own scale (patch distances vs. probabilities). Both are brought
to a common one with statistics of held-out good images: the log of each map, centred and scaled
by the mean and spread of that decoder's log image scores on held-out normals. The fused map is
a weighted mean of the two standardised maps (image-image 0.75, image-text 0.25), exponentiated
so it stays positive for calibration. The rule was chosen by measurement among the mean, the
maximum and this weighting (`benchmarks/ablation.py`, see benchmarks/NOTEBOOK.md, 2026-12-02): it had the best
mean image and pixel AUROC over bottle, cookie and magnetic tile, because the image-text decoder,
trained only on synthesised defects, is the weaker of the two on real ones.
"""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-6
IMAGE_TEXT_WEIGHT = 0.25


def log_score_stats(normal_maps: torch.Tensor) -> tuple[float, float]:
    """Mean and spread of the log image scores (map maxima) of held-out good images' maps [B, H, W]."""
    logs = normal_maps.flatten(1).amax(1).clamp_min(EPS).log()
    return float(logs.mean()), float(logs.std().clamp_min(1e-3)) if len(logs) > 1 else 0.1


class Fusion(nn.Module):
    """The fused map of the two decoders' raw maps; the good-image statistics are buffers."""

    log_mean: torch.Tensor
    log_std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("log_mean", torch.zeros(2))  # image-image, image-text
        self.register_buffer("log_std", torch.ones(2))

    def set_stats(self, image_image: tuple[float, float], image_text: tuple[float, float]) -> None:
        self.log_mean.copy_(torch.tensor([image_image[0], image_text[0]]))
        self.log_std.copy_(torch.tensor([image_image[1], image_text[1]]))

    def standardise(self, maps: torch.Tensor, decoder: int) -> torch.Tensor:
        """A raw map on the common scale: 0 = a typical good image's peak, 1 = one spread above."""
        return (maps.clamp_min(EPS).log() - self.log_mean[decoder]) / self.log_std[decoder]

    def forward(self, image_image: torch.Tensor, image_text: torch.Tensor) -> torch.Tensor:
        """Fused map (positive; larger = more anomalous) from two raw maps of the same shape."""
        z = (1 - IMAGE_TEXT_WEIGHT) * self.standardise(image_image, 0) \
            + IMAGE_TEXT_WEIGHT * self.standardise(image_text, 1)
        return z.clamp(-30, 30).exp()
