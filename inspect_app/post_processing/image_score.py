"""The image score: one number per part from its raw anomaly map, and the ignore mask before it.

One place for the rule, so that calibration (training, learning good parts) and prediction
score a map the same way. The rule is the maximum of the smoothed map; the alternatives measured
on every shared category (top-k means, a border-free maximum, region mass, per-position
normalisation: ``benchmarks/score_rules.py``, RESULTS "Image-score rules") did not beat it on the
mean image AUROC.

An ignore mask marks pixels that never count (labels, date prints, fixtures, a moving
background): white (non-zero) pixels of a PNG the size of the product's images, or any size (it
is resized to the map). The map is zeroed there, the lowest raw score a patch can have, before
the image score, the regions and the calibration see it.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

from inspect_app.errors import ImageLoadError


def read_ignore_mask(source: str | bytes | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean [height, width] mask at map resolution ``shape`` from a PNG path, PNG bytes or an
    array (non-zero = ignore)."""
    if isinstance(source, np.ndarray):
        mask = source
    else:
        data = source if isinstance(source, bytes) else _read_bytes(source)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        if decoded is None:
            raise ImageLoadError("the ignore mask is not a readable image (save it as a black-and-white PNG)")
        mask = decoded
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.ndim != 2 or not mask.size:
        raise ImageLoadError(f"the ignore mask must be a 2-D image, got shape {mask.shape}")
    resized = cv2.resize((mask > 0).astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    if resized.all():
        raise ImageLoadError("the ignore mask covers the whole image: nothing would be inspected")
    return resized.astype(bool)


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ImageLoadError(f"cannot read the ignore mask {path}: {exc.strerror}") from exc


def apply_ignore_mask(maps: np.ndarray, ignore: np.ndarray | None) -> np.ndarray:
    """Raw maps [..., H, W] with the ignored pixels zeroed (a copy when a mask is given)."""
    if ignore is None:
        return maps
    if ignore.shape != maps.shape[-2:]:
        ignore = cv2.resize(ignore.astype(np.uint8), (maps.shape[-1], maps.shape[-2]),
                            interpolation=cv2.INTER_NEAREST).astype(bool)
    return np.where(ignore, np.zeros((), maps.dtype), maps)


def image_scores(maps: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """Raw image scores [B] of raw maps [B, H, W]: the maximum outside the ignore mask."""
    masked = apply_ignore_mask(np.asarray(maps), ignore)
    return masked.reshape(len(masked), -1).max(axis=1)


def encode_mask(mask: np.ndarray) -> str:
    """A mask as base64 PNG text, for the profile's JSON."""
    ok, png = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    if not ok:
        raise ValueError("could not encode the ignore mask")
    return base64.b64encode(png.tobytes()).decode("ascii")


def decode_mask(text: str) -> np.ndarray:
    """``encode_mask``'s inverse, at the resolution it was saved with."""
    mask = cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError("the profile's ignore mask is not a PNG")
    return mask > 0
