"""A contact sheet of synthesised defects, so a person can judge whether they look plausible and
whether their masks and labels fit: each example shows the defective image, the same image with
the mask outlined, a close-up of the defect, and its label, location and size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspect_app.data.images import load_image
from inspect_app.errors import ImageLoadError, InspectAppError, NotEnoughImagesError
from inspect_app.progress import ProgressCallback
from inspect_app.synthesis.defects import DefectSynthesizer, SynthesisError, SyntheticDefect
from inspect_app.vocabulary import DEFECT_KINDS

PANEL = 200  # pixels per shown image
GAP = 8
TEXT_HEIGHT = 40
COLUMNS = 2  # examples per row (each three panels wide)
PANELS = 3
ZOOM_MIN = 48  # smallest close-up window, in image pixels
WORK_SIZE = 512  # long side images are reduced to before synthesis, as in training
TRIES_PER_EXAMPLE = 5  # image pairs an example tries before its kind is reported as not placeable


def gallery_size(n: int) -> tuple[int, int]:
    """Width and height in pixels of a gallery of ``n`` examples."""
    cols = min(n, COLUMNS)
    rows = -(-n // cols)
    return cols * (PANELS * PANEL + (PANELS + 1) * GAP) + GAP, rows * (PANEL + TEXT_HEIGHT + GAP) + GAP


def _fit(image: np.ndarray, interpolation: int = cv2.INTER_AREA) -> tuple[np.ndarray, float, tuple[int, int]]:
    """The image letterboxed into a PANEL x PANEL square; also the scale and offset used."""
    h, w = image.shape[:2]
    scale = PANEL / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    panel = np.full((PANEL, PANEL, 3), 40, np.uint8)
    x0, y0 = (PANEL - nw) // 2, (PANEL - nh) // 2
    panel[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=interpolation)
    return panel, scale, (x0, y0)


def _close_up(sample: SyntheticDefect) -> np.ndarray:
    """The defect's surroundings, enlarged: thin lines and small spots are judged here."""
    ys, xs = np.nonzero(sample.mask)
    h, w = sample.mask.shape
    side = int(min(max(ZOOM_MIN, 1.6 * (ys.max() - ys.min() + 1), 1.6 * (xs.max() - xs.min() + 1)), h, w))
    y0 = int(np.clip((ys.min() + ys.max()) / 2 - side / 2, 0, h - side))
    x0 = int(np.clip((xs.min() + xs.max()) / 2 - side / 2, 0, w - side))
    return _fit(sample.image[y0:y0 + side, x0:x0 + side], cv2.INTER_CUBIC)[0]


def _panels(sample: SyntheticDefect) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    plain, scale, (x0, y0) = _fit(sample.image)
    marked = plain.copy()
    contours, _ = cv2.findContours(sample.mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contours = [np.round(c * scale).astype(np.int32) + (x0, y0) for c in contours]
    tint = marked.copy()
    cv2.drawContours(tint, contours, -1, (255, 40, 40), cv2.FILLED)
    marked = cv2.addWeighted(marked, 0.7, tint, 0.3, 0)
    cv2.drawContours(marked, contours, -1, (255, 230, 0), 1, cv2.LINE_AA)
    bx0, by0, bx1, by1 = (np.array(sample.part_box) * scale).round().astype(int) + (x0, y0, x0, y0)
    cv2.rectangle(marked, (int(bx0), int(by0)), (int(bx1) - 1, int(by1) - 1), (90, 200, 255), 1)
    return plain, marked, _close_up(sample)


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.42) -> None:
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)


def _load(path: Path) -> np.ndarray:
    image = load_image(path)
    h, w = image.shape[:2]
    if max(h, w) > WORK_SIZE:
        factor = WORK_SIZE / max(h, w)
        image = cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
    return image


def draw_gallery(images: list[Path], out_png: Path, n: int = 24, seed: int = 0,
                 progress: ProgressCallback | None = None) -> Path:
    """Synthesise ``n`` defects (kinds in turn, so all appear) from randomly chosen good ``images``
    and save them as a PNG grid at ``out_png``. Unreadable images are skipped; a kind that cannot be
    drawn on these images gets its reason in its place. Returns the path."""
    out_png = Path(out_png)
    if out_png.suffix.lower() != ".png":
        raise InspectAppError(f"gallery output must be a .png file, got {out_png.name}")
    if n < 1:
        raise InspectAppError(f"number of gallery examples must be at least 1, got {n}")
    paths = list(images)
    if not paths:
        raise NotEnoughImagesError("no good images to synthesise defects from")
    rng = np.random.default_rng(seed)
    synthesizer = DefectSynthesizer(seed)
    cache: dict[Path, np.ndarray] = {}

    def pick() -> np.ndarray:
        while paths:
            path = paths[int(rng.integers(len(paths)))]
            if path not in cache:
                try:
                    cache[path] = _load(path)
                except ImageLoadError:
                    paths.remove(path)
                    continue
            return cache[path]
        raise NotEnoughImagesError("none of the given images could be read")

    width, height = gallery_size(n)
    canvas = np.full((height, width, 3), 20, np.uint8)
    for i in range(n):
        kind = DEFECT_KINDS[i % len(DEFECT_KINDS)]
        row, col = divmod(i, COLUMNS)
        x = GAP + col * (PANELS * PANEL + (PANELS + 1) * GAP)
        y = GAP + row * (PANEL + TEXT_HEIGHT + GAP)
        sample = None
        for _ in range(TRIES_PER_EXAMPLE):
            try:
                sample = synthesizer.synthesize(pick(), donor=pick(), kind=kind)
                break
            except SynthesisError as exc:
                reason = str(exc)
        if sample is None:  # this product cannot show this kind: say so in its place
            _text(canvas, f"[{kind}] {reason}", x, y + PANEL // 2, 0.38)
            if progress is not None:
                progress(i + 1, n, kind)
            continue
        for k, panel in enumerate(_panels(sample)):
            canvas[y:y + PANEL, x + k * (PANEL + GAP):x + k * (PANEL + GAP) + PANEL] = panel
        _text(canvas, f"{sample.label}  [{sample.kind}]", x, y + PANEL + 16)
        _text(canvas, f"{sample.location}, {sample.size} ({100 * sample.area_fraction:.1f}% of part), "
                      f"{sample.method}", x, y + PANEL + 33, 0.38)
        if progress is not None:
            progress(i + 1, n, kind)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_png), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise InspectAppError(f"could not write {out_png}")
    return out_png
