"""Random shapes the defect generators are made of: Perlin noise, irregular soft blobs and
random-walk polylines. Everything draws from a caller's ``numpy.random.Generator`` so that a
seed reproduces a defect exactly.

Perlin noise is our own few lines of numpy rather than anomalib's ``generate_perlin_noise``:
that one draws from torch's global random state (not from our generator) and importing it
pulls in anomalib's data stack (about 10 s), which a training loop or a CLI gallery should not pay.
"""

from __future__ import annotations

import cv2
import numpy as np


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


_SAMPLES_PER_CELL = 8  # noise is evaluated this finely and interpolated: it is smooth within a cell


def perlin(height: int, width: int, res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Gradient (Perlin) noise of ``res`` cells per axis, float32 roughly in [-1, 1]."""
    ry, rx = max(1, int(res[0])), max(1, int(res[1]))
    coarse_h, coarse_w = min(height, ry * _SAMPLES_PER_CELL), min(width, rx * _SAMPLES_PER_CELL)
    if (coarse_h, coarse_w) != (height, width):
        coarse = perlin(coarse_h, coarse_w, (ry, rx), rng)
        return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    angles = rng.uniform(0.0, 2 * np.pi, (ry + 1, rx + 1)).astype(np.float32)
    gy, gx = np.sin(angles), np.cos(angles)
    ys = np.arange(height, dtype=np.float32) * (ry / height)
    xs = np.arange(width, dtype=np.float32) * (rx / width)
    yi, xi = ys.astype(np.int64)[:, None], xs.astype(np.int64)[None, :]
    yf, xf = (ys[:, None] - yi), (xs[None, :] - xi)

    def corner(dy: int, dx: int) -> np.ndarray:
        return gy[yi + dy, xi + dx] * (yf - dy) + gx[yi + dy, xi + dx] * (xf - dx)

    u, v = _fade(xf), _fade(yf)
    top = corner(0, 0) * (1 - u) + corner(0, 1) * u
    bottom = corner(1, 0) * (1 - u) + corner(1, 1) * u
    return (np.sqrt(2.0) * (top * (1 - v) + bottom * v)).astype(np.float32)


def fractal_noise(height: int, width: int, res: int, rng: np.random.Generator, octaves: int = 3) -> np.ndarray:
    """Sum of Perlin octaves (each twice as fine, half as strong), normalised to about [-1, 1]."""
    total = np.zeros((height, width), np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        cells = res * 2**octave
        total += amplitude * perlin(height, width, (cells, cells), rng)
        norm += amplitude
        amplitude *= 0.5
    return total / norm


def soft_blob(size: int, rng: np.random.Generator, radius: float, aspect: float = 1.0,
              irregularity: float = 0.3, edge: float = 1.5, res: int = 3) -> np.ndarray:
    """Opacity (float32 0..1) of an irregular blob centred in a ``size`` x ``size`` window.

    An ellipse of semi-axes ``radius`` and ``radius * aspect`` pixels at a random angle, its
    outline pushed in and out by fractal noise (``irregularity`` = fraction of the radius) and
    softened over ``edge`` pixels. The centre is always opaque, so the blob is never empty.
    """
    half = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy -= half
    xx -= half
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    radius = max(float(radius), 1.0)
    dist = np.sqrt((u / radius) ** 2 + (v / max(radius * aspect, 1.0)) ** 2)
    noise = fractal_noise(size, size, res, rng, octaves=2) if irregularity > 0 else 0.0
    field = (1.0 - dist + irregularity * noise) * radius  # signed distance-like, in pixels
    alpha = np.clip(0.5 + field / max(edge, 0.5), 0.0, 1.0)
    centre = int(round(half))
    alpha[centre, centre] = 1.0
    return alpha


def random_walk(start: tuple[float, float] | np.ndarray, angle: float, length: float, step: float, turn: float,
                rng: np.random.Generator, jitter: float = 0.0) -> np.ndarray:
    """Points (N x 2, x/y) of a path of ``length`` pixels in ``step``-pixel segments from ``start`` (x/y).

    The heading wanders by N(0, ``turn``) radians per step (curvature); each segment also deviates
    from the heading by N(0, ``jitter``) without changing it (jaggedness around a straight course).
    """
    n = max(2, int(np.ceil(length / max(step, 0.5))) + 1)
    heading = angle + np.cumsum(rng.normal(0.0, turn, n - 1)) if turn > 0 else np.full(n - 1, angle)
    angles = heading + (rng.normal(0.0, jitter, n - 1) if jitter > 0 else 0.0)
    steps = np.stack([np.cos(angles), np.sin(angles)], axis=1) * step
    return np.concatenate([[start], np.asarray(start) + np.cumsum(steps, axis=0)]).astype(np.float32)


def draw_polyline(canvas: np.ndarray, points: np.ndarray, thickness: int,
                  strength: np.ndarray | None = None) -> None:
    """Anti-aliased polyline on a uint8 canvas with sub-pixel vertices; ``strength`` (0..1 per
    segment) fades parts of it, else it is drawn at 255."""
    pts = np.round(points * 8).astype(np.int32)
    thickness = max(1, int(thickness))
    if strength is None:
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, 255, thickness, cv2.LINE_AA, shift=3)
        return
    for (p, q), value in zip(zip(pts[:-1], pts[1:], strict=True), strength, strict=True):
        cv2.line(canvas, tuple(int(c) for c in p), tuple(int(c) for c in q), int(round(255 * value)),
                 thickness, cv2.LINE_AA, shift=3)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)
