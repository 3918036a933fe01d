"""Where on an image a defect may go: the part (not the background) when it stands out from a
plain background, else the whole image (textures, close-ups)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes

from inspect_app.post_processing.regions import estimate_part_box

_WORK_WIDTH = 128  # analysis resolution, as in estimate_part_box


@dataclass(frozen=True)
class Part:
    """The part in one image.

    ``box`` is ``estimate_part_box`` when it agrees with the silhouette, so location and size
    words match the ones regions get at inspection time; else the silhouette's box, or the whole
    image when no part was found. ``mask`` is the filled part silhouette at full resolution (all True when
    no part was found). ``background`` is the plain background colour (RGB float32), ``None``
    when the image has none. ``grey`` says the image has no colour, so defects add none.
    """

    box: tuple[int, int, int, int]
    mask: np.ndarray
    background: np.ndarray | None
    background_noise: float  # typical deviation of background pixels from its colour, per channel
    grey: bool
    _inside: np.ndarray  # (N, 2) x/y of part pixels at analysis resolution
    _outline: np.ndarray  # (M, 2) x/y of part-outline pixels at analysis resolution
    _scale: tuple[float, float]  # full-resolution pixels per analysis pixel (x, y)

    @property
    def found(self) -> bool:
        return self.background is not None

    @property
    def size(self) -> float:
        """Typical part length in pixels (square root of the box area): defect sizes scale with it."""
        x0, y0, x1, y1 = self.box
        return float(np.sqrt(max((x1 - x0) * (y1 - y0), 1)))

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.box
        return max((x1 - x0) * (y1 - y0), 1)

    def sample_point(self, rng: np.random.Generator, outline: bool = False) -> tuple[float, float]:
        """A random x/y on the part (or on its outline), jittered within an analysis cell."""
        coords = self._outline if outline and len(self._outline) else self._inside
        x, y = coords[rng.integers(len(coords))]
        sx, sy = self._scale
        h, w = self.mask.shape
        return (float(np.clip((x + rng.uniform()) * sx, 0, w - 1)),
                float(np.clip((y + rng.uniform()) * sy, 0, h - 1)))


def _silhouette(small: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Filled mask of the part, the background colour and its noise (summed over channels), or
    ``None`` without a plain background.

    Like ``estimate_part_box`` but robust to one odd border side (a strip of conveyor, a part
    touching the edge): the background is the colour at least three sides agree on. Textures and
    shading (which Otsu would happily split in two) are rejected by what a part on a background
    has and they lack: a clearly two-level picture, a part standing out by several times the
    background's own variation, and a solid outline not spanning the frame.
    """
    sides = [small[0], small[-1], small[:, 0], small[:, -1]]
    medians = np.array([np.median(side, axis=0) for side in sides])
    agree = [i for i in range(4) if sum(np.abs(medians[i] - medians[j]).sum() < 100 for j in range(4)) >= 3]
    if len(agree) < 3:
        return None
    border = np.concatenate([sides[i] for i in agree])
    bg = np.median(border, axis=0)
    noise = float(np.median(np.abs(border - bg).sum(1)))
    if noise > 35:
        return None
    dist = np.abs(small - bg).sum(2) / 3
    # Otsu on the mean channel distance; its share of explained variance says how two-level it is.
    _, fg = cv2.threshold(np.clip(dist, 0, 255).astype(np.uint8), 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = fg.astype(bool)
    if fg.all() or not fg.any():
        return None
    share = fg.mean()
    explained = share * (1 - share) * (dist[fg].mean() - dist[~fg].mean()) ** 2 / max(float(dist.var()), 1e-6)
    if explained < 0.7:
        return None
    # Parts are lighter or darker than their background; shadows and strips are the other way.
    lighter = small.mean(2) > bg.mean()
    best = np.zeros(fg.shape, bool)
    for candidates in (fg & lighter, fg & ~lighter):
        n, labels, stats, _ = cv2.connectedComponentsWithStats(candidates.astype(np.uint8), connectivity=8)
        if n > 1:
            biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            if stats[biggest, cv2.CC_STAT_AREA] > best.sum():
                best = labels == biggest
    mask = binary_fill_holes(best)
    if not 0.05 <= mask.mean() <= 0.95 or np.median(dist[mask]) < 4 * (noise / 3 + 2):
        return None
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(contours))
    if mask.sum() < 0.95 * cv2.contourArea(hull):
        return None
    rows, cols = mask.any(axis=1), mask.any(axis=0)
    if (rows[0] and rows[-1]) or (cols[0] and cols[-1]):
        return None
    return mask, bg.astype(np.float32), noise


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two boxes."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1)


def analyse_part(image: np.ndarray, foreground: bool = True) -> Part:
    """Locate the part in an HxWx3 uint8 image; ``foreground=False`` treats the whole image as the part."""
    h, w = image.shape[:2]
    sample = image[:: max(1, h // 64), :: max(1, w // 64)].astype(np.int16)
    grey = bool(np.abs(sample - sample[..., :1]).max() <= 2)
    sw = _WORK_WIDTH
    sh = max(1, int(round(_WORK_WIDTH * h / w)))
    scale = (w / sw, h / sh)
    found = None
    if foreground:
        found = _silhouette(cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32))
    if found is None:
        small_mask, background, noise = np.ones((sh, sw), bool), None, 0.0
        box = (0, 0, w, h)
        full = np.ones((h, w), bool)
        edge = np.zeros_like(small_mask)  # no silhouette: breaks happen at the image edge
        edge[[0, -1], :] = True
        edge[:, [0, -1]] = True
    else:
        small_mask, background, noise = found
        ys, xs = np.nonzero(small_mask)
        silhouette_box = (int(xs.min() * scale[0]), int(ys.min() * scale[1]),
                          int(np.ceil((xs.max() + 1) * scale[0])), int(np.ceil((ys.max() + 1) * scale[1])))
        # Location words follow estimate_part_box, as at inspection time, where it sees the same part.
        seen = estimate_part_box(image)
        box = seen if seen is not None and _overlap(seen, silhouette_box) >= 0.8 else silhouette_box
        smooth = cv2.GaussianBlur(small_mask.astype(np.float32), (0, 0), 0.7)
        full = cv2.resize(smooth, (w, h), interpolation=cv2.INTER_LINEAR) > 0.7  # a little inside the outline
        edge = small_mask & ~cv2.erode(small_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    inner = cv2.erode(small_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    inside = inner if inner.sum() >= 0.5 * small_mask.sum() else small_mask  # centres off the very edge
    return Part(box=tuple(int(v) for v in box), mask=full, background=background,
                background_noise=1.25 * noise / 3, grey=grey,
                _inside=np.argwhere(inside)[:, ::-1], _outline=np.argwhere(edge)[:, ::-1], _scale=scale)
