"""Decoded images to the encoder's input: resized and normalised, in numpy (no torch), so the
torch model and an exported model share the same pre-processing."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

SHAPE_STEP = 32  # the encoder's input sides are multiples of its largest stride
MIN_SIDE = 64
# Standardised exposure: every image's grey levels moved to this mean and spread. The spread has a
# floor so that a near-uniform image's sensor noise is not stretched to full contrast.
EXPOSURE_MEAN, EXPOSURE_SPREAD, EXPOSURE_MIN_SPREAD = 128.0, 40.0, 4.0


def input_shape(image_sizes: Sequence[tuple[int, int]], long_side: int, keep_aspect: bool) -> tuple[int, int]:
    """The encoder input (height, width) for a product whose good images have these (height, width).

    Square by default; with ``keep_aspect`` the long side is ``long_side`` and the short side
    follows the median aspect ratio of the good images (rounded to a multiple of 32, at least 64),
    so wide or tall parts are not squashed.
    """
    if not keep_aspect or not image_sizes:
        return long_side, long_side
    ratio = float(np.median([w / h for h, w in image_sizes]))  # width / height
    short = min(long_side, max(MIN_SIDE, int(round(long_side / max(ratio, 1 / ratio) / SHAPE_STEP)) * SHAPE_STEP))
    return (short, long_side) if ratio >= 1 else (long_side, short)


def is_grayscale(image: np.ndarray) -> bool:
    """Whether a decoded RGB image [H, W, 3] has the same value in its three channels."""
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))


def standardise_exposure(image: np.ndarray) -> np.ndarray:
    """A decoded uint8 image with its grey levels moved to one mean and spread (over all its pixels
    and channels), clipped to 0-255: one lookup table, so a large frame costs a few milliseconds.

    Grayscale products photographed at varying exposure (magnetic tile's good images have means
    from 54 to 157) otherwise fill the memory bank with brightness instead of texture: on magnetic
    tile this took image AUROC from 0.949 to 0.969 (benchmarks/matrix.py, RESULTS "Standardised
    exposure"); on colour products it lost (ball screw 0.937 -> 0.931), so only grayscale products
    use it (``Trainer.fit``). The statistics are the decoded image's, before resizing: taken after
    it, magnetic tile reached 0.9645 (NOTEBOOK 2026-12-07).
    """
    means, spreads = cv2.meanStdDev(image)
    mean = float(means.mean())
    spread = math.sqrt(max(float(np.mean(spreads**2 + means**2)) - mean * mean, 0.0))
    gain = EXPOSURE_SPREAD / max(spread, EXPOSURE_MIN_SPREAD)
    table = np.clip((np.arange(256, dtype=np.float64) - mean) * gain + EXPOSURE_MEAN, 0, 255).astype(np.uint8)
    return cv2.LUT(image, table)


def prepare_pixels(images: Sequence[np.ndarray], shape: tuple[int, int], mean: Sequence[float],
                   std: Sequence[float], exposure: bool = False) -> np.ndarray:
    """RGB uint8 arrays [H, W, 3] -> float32 [B, 3, height, width] for ``shape`` (height, width),
    normalised per channel; ``exposure``: each image's grey levels standardised first
    (``standardise_exposure``).

    Shrinking uses area averaging (no aliasing of fine texture), enlarging bilinear interpolation.
    The bytes are put channel-first before they become floats, and normalising is one multiply
    and one add per value: 0.1 ms for a 256 x 256 image instead of 1.2 ms for float division on
    a transposed array (NOTEBOOK 2026-12-07).
    """
    height, width = shape
    batch = np.empty((len(images), 3, height, width), dtype=np.uint8)
    for i, image in enumerate(images):
        if exposure:
            image = standardise_exposure(image)
        h, w = image.shape[:2]
        interp = cv2.INTER_AREA if (h > height or w > width) else cv2.INTER_LINEAR
        batch[i] = cv2.resize(image, (width, height), interpolation=interp).transpose(2, 0, 1)
    mean_, std_ = np.asarray(mean, np.float32).reshape(1, 3, 1, 1), np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    pixels = batch.astype(np.float32)
    pixels *= 1.0 / (255.0 * std_)
    pixels -= mean_ / std_
    return pixels
