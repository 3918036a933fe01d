"""Where on an image a defect may go: the part (not the background) when it stands out from a
plain background, else the whole image (textures, close-ups)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspect_app.imaging.foreground import downscale, part_silhouette, silhouette_box


@dataclass(frozen=True)
class Part:
    """The part in one image.

    ``box`` is the silhouette's box, the one ``estimate_part_box`` finds at inspection time (so
    location and size words match the ones regions get there), or the whole image when no part
    was found. ``mask`` is the filled part silhouette at full resolution (all True when
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


def analyse_part(image: np.ndarray, foreground: bool = True) -> Part:
    """Locate the part in an HxWx3 uint8 image; ``foreground=False`` treats the whole image as the part."""
    h, w = image.shape[:2]
    sample = image[:: max(1, h // 64), :: max(1, w // 64)].astype(np.int16)
    grey = bool(np.abs(sample - sample[..., :1]).max() <= 2)
    small = downscale(image)
    sh, sw = small.shape[:2]
    scale = (w / sw, h / sh)
    found = part_silhouette(small, solid=True) if foreground else None
    if found is None:
        small_mask, background, noise = np.ones((sh, sw), bool), None, 0.0
        box = (0, 0, w, h)
        full = np.ones((h, w), bool)
        edge = np.zeros_like(small_mask)  # no silhouette: breaks happen at the image edge
        edge[[0, -1], :] = True
        edge[:, [0, -1]] = True
    else:
        small_mask, background, noise = found
        box = silhouette_box(small_mask, image.shape)  # the box inspection finds on the same part
        smooth = cv2.GaussianBlur(small_mask.astype(np.float32), (0, 0), 0.7)
        full = cv2.resize(smooth, (w, h), interpolation=cv2.INTER_LINEAR) > 0.7  # a little inside the outline
        edge = small_mask & ~cv2.erode(small_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    inner = cv2.erode(small_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    inside = inner if inner.sum() >= 0.5 * small_mask.sum() else small_mask  # centres off the very edge
    return Part(box=box, mask=full, background=background,
                background_noise=1.25 * noise / 3, grey=grey,
                _inside=np.argwhere(inside)[:, ::-1], _outline=np.argwhere(edge)[:, ::-1], _scale=scale)
