"""Each region's defect kind, from the image-text decoder's kind posteriors on the patch grid."""

from __future__ import annotations

import cv2
import numpy as np

from inspect_app.results import THRESHOLD, Region


def kind_prior(normal_posteriors: np.ndarray) -> np.ndarray:
    """The kinds this product's good patches lean towards: the mean posterior [K] of held-out good
    images' patches [B, K, h, w], floored so that no kind is divided by zero."""
    prior = np.clip(normal_posteriors.astype(np.float64).mean(axis=(0, 2, 3)), 1e-4, None)
    return (prior / prior.sum()).astype(np.float32)


def region_kind_posterior(posteriors: np.ndarray, cal_map: np.ndarray, bbox: tuple[int, int, int, int],
                          image_size: tuple[int, int], kind_prior: np.ndarray) -> np.ndarray:
    """A region's kind posterior [K]: the patch posteriors [K, h, w] averaged over the region's box,
    weighted by how far each patch is above the threshold, then divided by the product's lean
    (``kind_prior``: the mean posterior of held-out good patches) and renormalised.

    Each product's texture favours some kinds everywhere (magnetic tile: contamination and
    scratch); dividing that out per region rather than per patch measured better on bottle and
    magnetic tile, the same on cookie, and both beat no correction (benchmarks/NOTEBOOK.md, 2026-12-02).
    """
    grid_h, grid_w = posteriors.shape[-2:]
    small = cv2.resize(cal_map, (grid_w, grid_h), interpolation=cv2.INTER_AREA)
    width, height = image_size
    x0, y0, x1, y1 = bbox
    gx0, gy0 = min(int(x0 / width * grid_w), grid_w - 1), min(int(y0 / height * grid_h), grid_h - 1)
    gx1 = max(int(np.ceil(x1 / width * grid_w)), gx0 + 1)
    gy1 = max(int(np.ceil(y1 / height * grid_h)), gy0 + 1)
    weights = np.clip(small[gy0:gy1, gx0:gx1] - THRESHOLD, 1e-3, None)
    posterior = (posteriors[:, gy0:gy1, gx0:gx1] * weights).sum(axis=(1, 2)) / weights.sum()
    corrected = posterior / kind_prior
    return corrected / corrected.sum()


def label_region_kinds(regions: list[Region], cal_map: np.ndarray, posteriors: np.ndarray,
                       image_size: tuple[int, int], kinds: list[str], kind_prior: np.ndarray) -> None:
    """Set each region's ``defect_type`` and ``defect_probability`` (most likely kind)."""
    for region in regions:
        post = region_kind_posterior(posteriors, cal_map, region.bbox, image_size, kind_prior)
        best = int(post.argmax())
        region.defect_type, region.defect_probability = kinds[best], round(float(post[best]), 4)
