"""Decoded images to the encoder's input: resized and normalised, in numpy (no torch), so the
torch model and an exported model share the same pre-processing."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def prepare_pixels(images: Sequence[np.ndarray], size: int, mean: Sequence[float],
                   std: Sequence[float]) -> np.ndarray:
    """RGB uint8 arrays [H, W, 3] -> float32 [B, 3, size, size], normalised per channel.

    Shrinking uses area averaging (no aliasing of fine texture), enlarging bilinear interpolation.
    """
    batch = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
        batch[i] = cv2.resize(image, (size, size), interpolation=interp)
    pixels = batch.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    pixels -= np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
    pixels /= np.asarray(std, np.float32).reshape(1, 3, 1, 1)
    return pixels
