"""One generator per defect kind: each turns a good image into a defective one and returns the
pixels it meant to change. Generators work in a small window around the defect (fast at any
image size) and keep their changes on the part.

Every generator has the signature ``(image, part, rng, donor) -> (image, mask, method)`` with
``image`` HxWx3 uint8, ``mask`` HxW bool and ``method`` naming the technique used;
``DefectSynthesizer`` checks that the mask is non-empty and really changed.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from inspect_app.imaging.foreground import fill_holes
from inspect_app.synthesis.part import Part
from inspect_app.synthesis.shapes import draw_polyline, fractal_noise, perlin, random_walk, smoothstep, soft_blob

Generated = tuple[np.ndarray, np.ndarray, str]


class _Window:
    """A window of ``(2 * half_h + 1) x (2 * half_w + 1)`` pixels centred at x/y, clipped to the image."""

    def __init__(self, cx: float, cy: float, half_w: int, half_h: int, shape: tuple[int, ...]):
        h, w = shape[:2]
        self.x_origin, self.y_origin = int(round(cx)) - half_w, int(round(cy)) - half_h
        self.shape = (2 * half_h + 1, 2 * half_w + 1)
        # Clamped so that a window partly or wholly off the image gives matching (possibly empty)
        # slices: an end below its start would count from the far end of the array.
        x0, y0 = min(max(self.x_origin, 0), w), min(max(self.y_origin, 0), h)
        x1, y1 = max(min(self.x_origin + self.shape[1], w), x0), max(min(self.y_origin + self.shape[0], h), y0)
        self.image = (slice(y0, y1), slice(x0, x1))
        self.local = (slice(y0 - self.y_origin, y1 - self.y_origin), slice(x0 - self.x_origin, x1 - self.x_origin))


def _bounds_window(points: np.ndarray, pad: int, shape: tuple[int, ...]) -> _Window:
    """The window enclosing ``points`` (x/y) with ``pad`` pixels around. Include a point on the
    image among them (the sampled start), or the window may lie wholly off the image."""
    x0, y0 = np.floor(points.min(0)).astype(int) - pad
    x1, y1 = np.ceil(points.max(0)).astype(int) + pad
    half_w, half_h = (x1 - x0) // 2 + 1, (y1 - y0) // 2 + 1
    return _Window((x0 + x1) / 2, (y0 + y1) / 2, half_w, half_h, shape)


def _finish(image: np.ndarray, window: _Window, roi: np.ndarray, roi_mask: np.ndarray,
            grey: bool) -> tuple[np.ndarray, np.ndarray]:
    """Write a changed window back into a copy of the image; grey images stay grey."""
    if grey:
        roi = np.repeat(roi.mean(axis=2, keepdims=True), 3, axis=2)
    out = image.copy()
    out[window.image] = np.clip(np.round(roi), 0, 255).astype(np.uint8)
    mask = np.zeros(image.shape[:2], bool)
    mask[window.image] = roi_mask
    return out, mask


def _on_part(part: Part, window: _Window) -> np.ndarray:
    return part.mask[window.image].astype(np.float32)


def _foreign_colour(rng: np.random.Generator, local_mean: float) -> np.ndarray:
    """A colour that does not belong on the part: near black, near white, rust/brown or a random hue."""
    choice = rng.integers(4)
    if choice == 0:
        return np.full(3, rng.uniform(5, 40), np.float32)
    if choice == 1:
        return np.full(3, rng.uniform(200, 250), np.float32)
    if choice == 2:
        return np.array([rng.uniform(90, 170), rng.uniform(45, 90), rng.uniform(10, 40)], np.float32)
    hsv = np.array([[[rng.integers(180), rng.integers(90, 256), rng.integers(60, 240)]]], np.uint8)
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    if abs(colour.mean() - local_mean) < 40:  # keep it visible on this part
        colour = np.clip(colour + (80 if local_mean < 128 else -80), 0, 255)
    return colour


def _background_fill(roi: np.ndarray, outside: np.ndarray, part: Part, rng: np.random.Generator) -> np.ndarray:
    """What shows where material is gone: the local background colour (median of the window's
    pixels off the part that look like background, else the part's background colour) with the
    background's own grain."""
    background = part.background
    if background is None:
        raise ValueError("a background fill needs a part found on a plain background")
    candidates = roi[outside]
    plain = candidates[np.abs(candidates - background).sum(1) < 3 * part.background_noise + 30]
    colour = np.median(plain, axis=0) if len(plain) > 20 else background
    grain = cv2.GaussianBlur(rng.normal(0, 1, roi.shape[:2]).astype(np.float32), (0, 0), 0.7)
    return colour + (part.background_noise * grain / max(float(grain.std()), 1e-3))[..., None]


# -- lines ---------------------------------------------------------------------------------------

def _line_mask(line: np.ndarray, on_part: np.ndarray) -> np.ndarray:
    """The label of a drawn line: a pixel wider than the stroke, but only where the line could
    be drawn (a line that reaches the part's edge does not label the background beyond it)."""
    mask = cv2.dilate((line > 0.25).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return mask & (on_part > 0)


def crack(image: np.ndarray, part: Part, rng: np.random.Generator, donor: np.ndarray | None = None) -> Generated:
    """Jagged, branching dark line that tapers towards its ends, with a faint shadow."""
    s = part.size
    length = s * rng.uniform(0.12, 0.4)
    step = max(2.0, s / 70)
    thickness = max(1, int(round(s / 400 * rng.uniform(1.0, 2.2))))
    angle = rng.uniform(0, 2 * np.pi)
    main = random_walk(part.sample_point(rng), angle, length, step, turn=0.08, rng=rng, jitter=0.45)
    paths = [(main, thickness)]
    branches = int(rng.integers(0, 3))
    for _ in range(branches if len(main) > 2 else 0):  # a branch leaves from an inner point: a short crack has none
        i = int(rng.integers(1, len(main) - 1))
        heading = np.arctan2(*(main[i + 1] - main[i])[::-1])
        branch_angle = heading + rng.choice([-1, 1]) * rng.uniform(0.4, 1.1)
        branch = random_walk(main[i], branch_angle, length * rng.uniform(0.15, 0.45), step, 0.08, rng, 0.45)
        paths.append((branch, max(1, thickness - 1)))
    window = _bounds_window(np.concatenate([p for p, _ in paths]), thickness * 3 + 4, image.shape)
    canvas = np.zeros(window.shape, np.uint8)
    origin = np.array([window.x_origin, window.y_origin], np.float32)
    for points, width in paths:
        local = points - origin
        n = len(local)
        fade = np.minimum(1.0, np.minimum(np.arange(n - 1) + 1, n - 1 - np.arange(n - 1)) / max(2, n / 6))
        draw_polyline(canvas, local, width, strength=0.35 + 0.65 * fade)
    line = cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), 0.6)[window.local]
    on_part = _on_part(part, window)
    line *= on_part
    shadow = cv2.GaussianBlur(line, (0, 0), 1.5 * thickness + 1)
    darken = np.clip(rng.uniform(0.55, 0.85) * line + 0.2 * shadow, 0, 0.92)
    roi = image[window.image].astype(np.float32) * (1 - darken[..., None])
    mask = _line_mask(line, on_part)
    return *_finish(image, window, roi, mask, part.grey), "polyline"


def scratch(image: np.ndarray, part: Part, rng: np.random.Generator, donor: np.ndarray | None = None) -> Generated:
    """One to three thin, smooth, nearly straight lines, usually lighter than the surface."""
    s = part.size
    length = s * rng.uniform(0.1, 0.45)
    step = max(2.0, s / 50)
    thickness = max(1, int(round(s / 400 * rng.uniform(0.8, 2.0))))
    angle = rng.uniform(0, 2 * np.pi)
    start = np.array(part.sample_point(rng), np.float32)
    normal = np.array([-np.sin(angle), np.cos(angle)], np.float32)
    paths = []
    for k in range(1 if rng.uniform() < 0.6 else int(rng.integers(2, 4))):
        offset = normal * k * rng.uniform(2, 6) * thickness + rng.uniform(-0.1, 0.1) * length * np.array(
            [np.cos(angle), np.sin(angle)], np.float32)
        paths.append(random_walk(start + offset, angle, length * rng.uniform(0.6, 1.0), step, 0.015, rng))
    # The lines are staggered along their course and may all start off the image from a start at its
    # edge: the start itself keeps the window on the image.
    window = _bounds_window(np.concatenate([start[None], *paths]), thickness * 2 + 4, image.shape)
    canvas = np.zeros(window.shape, np.uint8)
    origin = np.array([window.x_origin, window.y_origin], np.float32)
    for points in paths:
        n = len(points)
        t = np.linspace(0, 1, n - 1)
        draw_polyline(canvas, points - origin, thickness, strength=np.sqrt(np.sin(np.pi * (0.05 + 0.9 * t))))
    line = cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), 0.5)[window.local]
    on_part = _on_part(part, window)
    line *= on_part
    roi = image[window.image].astype(np.float32)
    local_mean = float(roi.mean())
    bright = (rng.uniform() < 0.65 and local_mean < 215) or local_mean < 40  # visible either way
    delta = rng.uniform(50, 120) if bright else -rng.uniform(40, 90) * max(local_mean, 40) / 128
    roi = roi + delta * line[..., None]
    mask = _line_mask(line, on_part)
    return *_finish(image, window, roi, mask, part.grey), "polyline"


# -- blobs -----------------------------------------------------------------------------------------

def hole(image: np.ndarray, part: Part, rng: np.random.Generator, donor: np.ndarray | None = None) -> Generated:
    """A small dark pit (or a see-through hole showing the background) with a soft, lit rim."""
    s = part.size
    radius = max(2.0, s * rng.uniform(0.008, 0.035))
    half = int(np.ceil(radius * 1.6)) + 4
    cx, cy = part.sample_point(rng)
    window = _Window(cx, cy, half, half, image.shape)
    alpha = soft_blob(2 * half + 1, rng, radius, aspect=rng.uniform(0.6, 1.0), irregularity=0.2,
                      edge=max(1.0, radius * 0.25))
    on_part = _on_part(part, window)
    alpha = alpha[window.local] * on_part
    roi = image[window.image].astype(np.float32)
    light = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[window.local[0], window.local[1]].astype(np.float32) - half
    facing = (xx * np.cos(light) + yy * np.sin(light)) / radius  # -1 .. 1 across the hole
    if part.found and rng.uniform() < 0.25:  # through-hole: the background shows
        outside = ~part.mask[window.image]
        fill = _background_fill(roi, outside, part, rng)
    else:
        dark = np.percentile(roi, 3) * rng.uniform(0.1, 0.45)
        grain = 6 * perlin(roi.shape[0], roi.shape[1], (4, 4), rng)
        fill = np.clip(dark + 15 * np.clip(facing, -1, 1) + grain, 0, 255)[..., None] * np.ones(3, np.float32)
    ring = np.clip(cv2.GaussianBlur(alpha, (0, 0), max(1.0, radius * 0.25)) - alpha, 0, 1)
    rim = ring * np.clip(-facing, 0, 1) * rng.uniform(25, 70) * on_part
    roi = roi * (1 - alpha[..., None]) + fill * alpha[..., None] + rim[..., None]
    return *_finish(image, window, roi, (alpha > 0.35) | (rim > 15), part.grey), "ellipse"


def broken(image: np.ndarray, part: Part, rng: np.random.Generator, donor: np.ndarray | None = None) -> Generated:
    """Material missing at the part's edge: an irregular bite replaced by background (or, with no
    plain background, by a dark gap), its fracture edge shaded."""
    s = part.size
    radius = s * rng.uniform(0.05, 0.16)
    half = int(np.ceil(radius * 1.5)) + 4
    cx, cy = part.sample_point(rng, outline=True)
    window = _Window(cx, cy, half, half, image.shape)
    bite = soft_blob(2 * half + 1, rng, radius, aspect=rng.uniform(0.5, 1.0), irregularity=0.35,
                     edge=1.0, res=4)[window.local]
    on_part = part.mask[window.image]
    removed = bite * on_part
    roi = image[window.image].astype(np.float32)
    if part.found:
        fill = _background_fill(roi, ~on_part, part, rng)
    else:
        dark = np.percentile(roi, 5) * rng.uniform(0.25, 0.6)
        noise = fractal_noise(roi.shape[0], roi.shape[1], 3, rng)
        fill = (dark * (1 + 0.3 * noise))[..., None] * np.ones(3, np.float32)
    edge_width = max(1.0, s / 200)
    fracture = np.clip(cv2.GaussianBlur(removed, (0, 0), edge_width * 1.5) * 2 - removed * 2, 0, 1) * on_part
    shade = rng.uniform(0.5, 0.8) if rng.uniform() < 0.7 else rng.uniform(1.2, 1.5)
    roi = roi * (1 + (shade - 1) * fracture[..., None])
    roi = roi * (1 - removed[..., None]) + fill * removed[..., None]
    mask = (removed > 0.4) | ((fracture > 0.3) & (removed > 0.01))
    return *_finish(image, window, roi, mask, part.grey), "bite"


def contamination(image: np.ndarray, part: Part, rng: np.random.Generator,
                  donor: np.ndarray | None = None) -> Generated:
    """Foreign material: a cluster of small spots or a fibre of a foreign colour, or (NSA-style)
    a transformed patch of another good image blended in seamlessly."""
    choice = rng.uniform()
    if choice < 0.4:
        return _cut_paste(image, part, rng, donor)
    if choice < 0.55:
        return _fibre(image, part, rng)
    return _spots(image, part, rng)


def _spots(image: np.ndarray, part: Part, rng: np.random.Generator) -> Generated:
    s = part.size
    spread = s * rng.uniform(0.02, 0.1)
    count = int(rng.integers(1, 7))
    radii = s * rng.uniform(0.008, 0.03, count)
    offsets = rng.normal(0, spread, (count, 2)) * (count > 1)
    half = int(np.ceil(np.abs(offsets).max() + radii.max() * 1.5)) + 4
    cx, cy = part.sample_point(rng)
    window = _Window(cx, cy, half, half, image.shape)
    alpha = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    for (dx, dy), r in zip(offsets, radii, strict=True):
        r = max(2.0, float(r))
        size = 2 * int(np.ceil(r * 1.4)) + 5
        blob = soft_blob(size, rng, r, rng.uniform(0.5, 1.0), irregularity=0.3, edge=1.0)
        y0 = int(round(half + dy)) - size // 2
        x0 = int(round(half + dx)) - size // 2
        y0, x0 = int(np.clip(y0, 0, alpha.shape[0] - size)), int(np.clip(x0, 0, alpha.shape[1] - size))
        np.maximum(alpha[y0:y0 + size, x0:x0 + size], blob, out=alpha[y0:y0 + size, x0:x0 + size])
    alpha = alpha[window.local] * _on_part(part, window) * rng.uniform(0.75, 1.0)
    roi = image[window.image].astype(np.float32)
    colour = _foreign_colour(rng, float(roi.mean()))
    texture = 1 + 0.15 * perlin(roi.shape[0], roi.shape[1], (3, 3), rng)[..., None]
    roi = roi * (1 - alpha[..., None]) + np.clip(colour * texture, 0, 255) * alpha[..., None]
    return *_finish(image, window, roi, alpha > 0.35, part.grey), "spots"


def _fibre(image: np.ndarray, part: Part, rng: np.random.Generator) -> Generated:
    """A hair or fibre lying on the part: a thin, curling line of a foreign colour."""
    s = part.size
    thickness = max(1, int(round(s / 350 * rng.uniform(0.8, 2.0))))
    path = random_walk(part.sample_point(rng), rng.uniform(0, 2 * np.pi), s * rng.uniform(0.08, 0.3),
                       max(2.0, s / 80), turn=0.25, rng=rng)
    window = _bounds_window(path, thickness * 2 + 4, image.shape)
    canvas = np.zeros(window.shape, np.uint8)
    draw_polyline(canvas, path - np.array([window.x_origin, window.y_origin], np.float32), thickness)
    alpha = cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), 0.5)[window.local] * _on_part(part, window)
    roi = image[window.image].astype(np.float32)
    colour = _foreign_colour(rng, float(roi.mean()))
    roi = roi * (1 - alpha[..., None]) + colour * alpha[..., None]
    mask = cv2.dilate((alpha > 0.25).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return *_finish(image, window, roi, mask, part.grey), "fibre"


def _cut_paste(image: np.ndarray, part: Part, rng: np.random.Generator, donor: np.ndarray | None) -> Generated:
    """NSA-style: a rotated, rescaled, re-lit patch of a donor good image (or of this image, from
    elsewhere) Poisson-blended onto the part; the mask is where the result really differs."""
    h, w = image.shape[:2]
    source = image if donor is None else donor
    if source.shape[:2] != (h, w):
        source = cv2.resize(source, (w, h), interpolation=cv2.INTER_AREA)
    s = part.size
    radius = s * rng.uniform(0.05, 0.12)
    half = int(np.ceil(radius * 1.2)) + 4
    size = 2 * half + 1
    tx, ty = part.sample_point(rng)
    for _ in range(5):  # a source spot away from the target, so the patch does not fit in
        sx, sy = part.sample_point(rng)
        if np.hypot(sx - tx, sy - ty) > radius * 1.5:
            break
    zoom = rng.uniform(0.75, 1.4)
    # OpenCV returns a 2x3 float64 matrix (its stubs say any numeric array); asarray states it without a copy.
    rotation = np.asarray(cv2.getRotationMatrix2D((sx, sy), rng.uniform(0, 360), zoom), np.float64)
    rotation[:, 2] += (half - sx, half - sy)
    patch = cv2.warpAffine(source, rotation, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    gain = rng.uniform(0.7, 1.35)
    patch = np.clip(patch.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    shape = soft_blob(size, rng, radius, aspect=rng.uniform(0.5, 1.0), irregularity=0.25, edge=0.5) > 0.5
    shape[:2] = shape[-2:] = False
    shape[:, :2] = shape[:, -2:] = False
    shape[half - 1:half + 2, half - 1:half + 2] = True  # seamlessClone fails on a mask under 3 pixels across
    # Clone into a padded copy so the patch may overhang the image border.
    pad = half + 2
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    ys, xs = np.nonzero(shape)
    bx, by = xs.min(), ys.min()
    bw, bh = xs.max() - bx + 1, ys.max() - by + 1
    x_left, y_top = int(round(tx)) - half + pad, int(round(ty)) - half + pad
    centre = (int(x_left + bx + bw // 2), int(y_top + by + bh // 2))
    flag = cv2.MIXED_CLONE if rng.uniform() < 0.25 else cv2.NORMAL_CLONE
    blended = cv2.seamlessClone(patch, padded, shape.astype(np.uint8) * 255, centre, flag)[pad:pad + h, pad:pad + w]
    window = _Window(tx, ty, half, half, image.shape)
    on_part = part.mask[window.image]
    roi_new = blended[window.image].astype(np.float32)
    roi_old = image[window.image].astype(np.float32)
    placed = shape[window.local] & on_part
    roi = np.where(placed[..., None], roi_new, roi_old)
    changed = np.abs(roi - roi_old).max(axis=2) >= 10
    changed = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)).astype(bool)
    return *_finish(image, window, roi, placed & changed, part.grey), "cut-paste"


def stain(image: np.ndarray, part: Part, rng: np.random.Generator, donor: np.ndarray | None = None) -> Generated:
    """A Perlin-noise shaped patch of uneven discolouration: darker, lighter or tinted."""
    s = part.size
    radius = s * rng.uniform(0.05, 0.17)
    half = int(np.ceil(radius * 1.8)) + 4
    size = 2 * half + 1
    cx, cy = part.sample_point(rng)
    window = _Window(cx, cy, half, half, image.shape)
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) - half) / radius
    squash = rng.uniform(1.0, 1.6)  # >= 1 on one axis only: the blob stays inside the window
    envelope = 1 - (np.sqrt(xx**2 + (yy * squash) ** 2) if rng.uniform() < 0.5 else np.sqrt((xx * squash) ** 2 + yy**2))
    field = envelope + rng.uniform(0.4, 0.7) * fractal_noise(size, size, int(rng.integers(2, 5)), rng)
    edge = rng.uniform(0.1, 0.35)
    density = 0.65 + 0.35 * perlin(size, size, (4, 4), rng)
    alpha = (smoothstep(field / edge) * density)[window.local] * _on_part(part, window)
    roi = image[window.image].astype(np.float32)
    style = rng.integers(3)
    if style == 0:  # darker
        gain, offset = np.full(3, rng.uniform(0.45, 0.75), np.float32), np.zeros(3, np.float32)
    elif style == 1:  # lighter
        gain, offset = np.full(3, rng.uniform(1.1, 1.4), np.float32), np.full(3, rng.uniform(20, 50), np.float32)
    else:  # tinted: rust, scorch or grease, warm colours that occur on parts
        gain = np.array([rng.uniform(0.85, 1.15), rng.uniform(0.65, 0.85), rng.uniform(0.4, 0.65)], np.float32)
        gain *= rng.uniform(0.7, 1.0)
        offset = np.full(3, rng.uniform(0, 15), np.float32)
    stained = roi * gain + offset
    roi = roi * (1 - alpha[..., None]) + stained * alpha[..., None]
    return *_finish(image, window, roi, alpha > 0.3, part.grey), "perlin"


def deformed(image: np.ndarray, part: Part, rng: np.random.Generator, donor: np.ndarray | None = None) -> Generated:
    """Local elastic warp (dent, bulge or bend) under a Gaussian envelope, with the shading a tilted
    surface gets; the mask is where pixels moved noticeably and changed."""
    s = part.size
    sigma = s * rng.uniform(0.03, 0.08)
    half = int(np.ceil(sigma * 3))
    size = 2 * half + 1
    cx, cy = part.sample_point(rng)
    window = _Window(cx, cy, half, half, image.shape)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - half
    gauss = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    amplitude = max(3.0, sigma * rng.uniform(0.3, 0.6))
    style = rng.integers(3)
    if style == 0:  # dent / bulge: radial pull or push
        sign = float(rng.choice([-1.0, 1.0]))
        dx, dy = sign * amplitude * xx / sigma * gauss, sign * amplitude * yy / sigma * gauss
    elif style == 1:  # bend: everything shifted one way
        angle = rng.uniform(0, 2 * np.pi)
        dx, dy = amplitude * np.cos(angle) * gauss, amplitude * np.sin(angle) * gauss
    else:  # crumple: a smooth random field
        dx = amplitude * perlin(size, size, (3, 3), rng) * gauss
        dy = amplitude * perlin(size, size, (3, 3), rng) * gauss
    # Shading from the slope of a bump shaped like the envelope, lit from a random side.
    light = rng.uniform(0, 2 * np.pi)
    slope = -(xx * np.cos(light) + yy * np.sin(light)) / sigma * gauss
    shading = 1 + float(rng.choice([-1.0, 1.0])) * rng.uniform(0.15, 0.35) * slope
    src = image[window.image]
    on_part = _on_part(part, window)
    local_dx, local_dy = dx[window.local] * on_part, dy[window.local] * on_part
    gy, gx = np.mgrid[0:src.shape[0], 0:src.shape[1]].astype(np.float32)
    warped = cv2.remap(src, (gx + local_dx).astype(np.float32), (gy + local_dy).astype(np.float32),
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    shade = 1 + (shading[window.local] - 1) * on_part
    roi = warped.astype(np.float32) * shade[..., None]
    moved = (np.hypot(local_dx, local_dy) > max(1.0, 0.25 * amplitude)) | (np.abs(shade - 1) > 0.05)
    changed = np.abs(roi - src.astype(np.float32)).max(axis=2) >= 8
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, int(sigma / 2) | 1),) * 2)
    mask = cv2.morphologyEx((moved & changed).astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    mask = fill_holes(mask)
    return *_finish(image, window, roi, mask, part.grey), "elastic-warp"


GENERATORS: dict[str, Callable[..., Generated]] = {
    "crack": crack,
    "scratch": scratch,
    "contamination": contamination,
    "hole": hole,
    "broken": broken,
    "deformed": deformed,
    "stain": stain,
}
