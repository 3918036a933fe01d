"""Synthetic defects for training on good images only: from a good image, a defective image, the
mask of what changed, a label phrase and the attributes (kind, location, size) people use.

A sample labelled defective never has an empty mask, and its mask marks pixels that really
changed: each draw is checked and redrawn if the change came out invisible (e.g. a cut-paste
patch that happens to match its surroundings). When no draw shows, the last one's mask is pushed
into view; when no draw even has a mask (a deformation of a flat black surface), the kind cannot
be placed on this image and ``SynthesisError`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspect_app.data.images import MIN_SIDE
from inspect_app.errors import InspectAppError
from inspect_app.imaging.locations import location_word, size_word
from inspect_app.synthesis.generators import GENERATORS
from inspect_app.synthesis.part import Part, analyse_part
from inspect_app.vocabulary import DEFECT_KINDS, DEFECT_VOCABULARY, NORMAL_KIND, NORMAL_LABEL

MIN_CHANGE = 8  # grey levels: a pixel counts as changed when some channel moved at least this much
MIN_CHANGED_SHARE = 0.3  # share of mask pixels that must have changed
MIN_MASK_PIXELS = 6
MAX_ATTEMPTS = 12


class SynthesisError(InspectAppError):
    """A defect of the asked kind cannot be drawn on this image (every draw came out too small or
    off the part): callers that train on many images skip the image, or the kind."""


@dataclass
class SyntheticDefect:
    """One training sample. ``mask`` is HxW uint8 (1 = defect), all zeros for kind ``normal``,
    whose ``location``, ``size`` and ``part_box`` are ``None``. ``location`` and ``size`` are
    relative to ``part_box`` (x0, y0, x1, y1), as inspection regions are."""

    image: np.ndarray
    mask: np.ndarray
    kind: str
    label: str
    location: str | None
    size: str | None
    area_fraction: float
    method: str  # technique used (e.g. "cut-paste", "perlin"), for inspection of the data
    part_box: tuple[int, int, int, int] | None

    @property
    def is_defective(self) -> bool:
        return self.kind != NORMAL_KIND


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InspectAppError(f"defect synthesis needs an HxWx3 uint8 image, got "
                              f"{getattr(image, 'shape', type(image).__name__)} {getattr(image, 'dtype', '')}")
    if min(image.shape[:2]) < MIN_SIDE:  # anything load_image accepts
        raise InspectAppError(f"defect synthesis needs an image of at least {MIN_SIDE}x{MIN_SIDE} pixels, "
                              f"got {image.shape[1]}x{image.shape[0]}")


def normal_sample(image: np.ndarray) -> SyntheticDefect:
    """The good image as a training sample: empty mask, kind ``normal``."""
    _check_image(image)
    return SyntheticDefect(image=image.copy(), mask=np.zeros(image.shape[:2], np.uint8), kind=NORMAL_KIND,
                           label=NORMAL_LABEL, location=None, size=None, area_fraction=0.0, method="none",
                           part_box=None)


def _visible(before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> bool:
    """The mask is big enough and most of it really changed."""
    if mask.sum() < MIN_MASK_PIXELS:
        return False
    inside_before = before[mask].astype(np.int16)
    inside_after = after[mask].astype(np.int16)
    changed = np.abs(inside_after - inside_before).max(axis=1) >= MIN_CHANGE
    return float(changed.mean()) >= MIN_CHANGED_SHARE


def _force_visible(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Last resort for images where no draw shows (e.g. flat and saturated): push the masked pixels
    60 levels away from the nearer end of the range, so the change is certain."""
    out = image.astype(np.int16)
    pixels = out[mask]
    direction = np.where(pixels.mean(axis=1, keepdims=True) >= 128, -60, 60)
    out[mask] = pixels + direction
    return np.clip(out, 0, 255).astype(np.uint8)


class DefectSynthesizer:
    """Draws defective samples of the given kinds (default: all), placed on the part when a part
    can be told from its background (``foreground=True``).

    Seeded and reproducible: the same seed and the same sequence of calls and inputs give
    identical samples. Pass ``rng`` to ``synthesize`` to draw from your own generator instead.
    """

    def __init__(self, seed: int = 0, kinds: list[str] | tuple[str, ...] | None = None, foreground: bool = True):
        kinds = tuple(DEFECT_KINDS if kinds is None else kinds)
        unknown = [k for k in kinds if k not in DEFECT_VOCABULARY]
        if unknown or not kinds:
            raise InspectAppError(f"unknown defect kind(s) {unknown or kinds}; choose from {', '.join(DEFECT_KINDS)}")
        self.kinds = kinds
        self.foreground = foreground
        self.rng = np.random.default_rng(seed)

    def analyse(self, image: np.ndarray) -> Part:
        """Part analysis of ``image``; pass it back to ``synthesize`` to save its cost (a few ms) when
        drawing many defects from the same image."""
        _check_image(image)
        return analyse_part(image, self.foreground)

    def synthesize(self, image: np.ndarray, donor: np.ndarray | None = None, kind: str | None = None,
                   rng: np.random.Generator | None = None, part: Part | None = None) -> SyntheticDefect:
        """A defective version of the good ``image`` (HxWx3 uint8).

        ``donor`` is another good image that cut-paste defects may take material from (default:
        this image). ``kind`` defaults to a random one of ``self.kinds``. ``part`` is
        ``self.analyse(image)``, computed here unless given.
        """
        _check_image(image)
        if donor is not None:
            _check_image(donor)
        rng = self.rng if rng is None else rng
        if kind is None:
            kind = self.kinds[int(rng.integers(len(self.kinds)))]
        elif kind not in DEFECT_VOCABULARY:
            raise InspectAppError(f"unknown defect kind {kind!r}; choose from {', '.join(DEFECT_KINDS)}")
        if part is None:
            part = self.analyse(image)
        elif part.mask.shape != image.shape[:2]:
            raise InspectAppError(f"part analysis is for a {part.mask.shape[1]}x{part.mask.shape[0]} image, "
                                  f"not this {image.shape[1]}x{image.shape[0]} one")
        generate = GENERATORS[kind]
        placed: tuple[np.ndarray, str] | None = None  # the last draw with a mask worth forcing
        for _ in range(MAX_ATTEMPTS):
            out, mask, method = generate(image, part, rng, donor)
            if _visible(image, out, mask):
                break
            if mask.sum() >= MIN_MASK_PIXELS:
                placed = mask, method
        else:
            if placed is None:
                raise SynthesisError(f"no {kind} could be placed on this {image.shape[1]}x{image.shape[0]} image "
                                     f"in {MAX_ATTEMPTS} draws")
            mask, method = placed
            out = _force_visible(image, mask)
            method += "+forced"
        phrases = DEFECT_VOCABULARY[kind]
        ys, xs = np.nonzero(mask)
        area_fraction = float(mask.sum() / part.area)
        return SyntheticDefect(
            image=out, mask=mask.astype(np.uint8), kind=kind, label=phrases[int(rng.integers(len(phrases)))],
            location=location_word(float(xs.mean()), float(ys.mean()), part.box), size=size_word(area_fraction),
            area_fraction=round(area_fraction, 5), method=method, part_box=part.box,
        )
