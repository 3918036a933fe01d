"""The good images a fit learns from: decoded, fingerprinted and recorded, unreadable ones
skipped with their reason.

A profile keeps every training image's absolute path and SHA-256, so ``inspect-app refit`` can
learn the same images again after an upgrade and can tell when a file changed since.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspect_app.data.images import ImageInput, list_images, load_image
from inspect_app.errors import ImageLoadError, NotEnoughImagesError
from inspect_app.progress import ProgressCallback


@dataclass(frozen=True)
class TrainingImage:
    """One good image a profile was fitted on."""

    name: str  # file name, or "image[i]" for an array or bytes given directly
    sha256: str  # of the file's bytes (or of the decoded pixels when there is no file)
    path: str | None = None  # absolute path, when read from a file

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GoodImages:
    images: list[np.ndarray]  # decoded RGB uint8
    records: list[TrainingImage]
    skipped: list[str]  # why each unreadable source was left out


def image_sources(images: str | Path | Iterable[ImageInput]) -> list[ImageInput]:
    """A folder's image files (sorted), or the given list as it is."""
    if isinstance(images, (str, Path)):
        return list(list_images(images)[0])
    return list(images)


def read_good_images(sources: Sequence[ImageInput], k_shot: int | None = None, seed: int = 0,
                     progress: ProgressCallback | None = None) -> GoodImages:
    """Decode ``sources`` (``k_shot`` of them, drawn with ``seed``, when given)."""
    if not sources:
        raise NotEnoughImagesError("no good images given: at least 1 is needed (10 or more for a reliable threshold)")
    if k_shot is not None:
        if k_shot > len(sources):
            raise NotEnoughImagesError(f"--k-shot {k_shot} asks for more images than the {len(sources)} available")
        pick = np.random.default_rng(seed).choice(len(sources), k_shot, replace=False)
        sources = [sources[i] for i in sorted(pick)]
    out = GoodImages([], [], [])
    for i, src in enumerate(sources):
        path = Path(src) if isinstance(src, (str, Path)) else None
        name = str(src) if path is not None else f"image[{i}]"
        try:
            image = load_image(src, name=name)
        except ImageLoadError as exc:
            out.skipped.append(str(exc))
        else:
            raw = path.read_bytes() if path is not None else image.tobytes()
            out.images.append(image)
            out.records.append(TrainingImage(Path(name).name, hashlib.sha256(raw).hexdigest(),
                                             str(path.resolve()) if path is not None else None))
        if progress:
            progress(i + 1, len(sources), "reading images")
    if not out.images:
        raise NotEnoughImagesError(f"none of the {len(sources)} images could be read: " + "; ".join(out.skipped[:3]))
    return out
