"""The worst parts as pictures: original and heatmap overlay, inlined as data URIs.

Overlays are drawn only for the gallery (from the anomaly maps the scorer kept) or read from
the store's kept overlay files; a missing file is noted, not hidden.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import cv2
import numpy as np

from inspect_app.data.images import load_image
from inspect_app.errors import ImageLoadError
from inspect_app.reports.rows import ReportRow

THUMB_SIDE = 360
JPEG_QUALITY = 85


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_uri(image: np.ndarray, side: int = THUMB_SIDE) -> str:
    """An RGB array as a JPEG data URI no larger than ``side`` pixels."""
    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ImageLoadError("could not encode a thumbnail")
    return data_uri(buf.tobytes(), "image/jpeg")


@dataclass
class GalleryItem:
    row: ReportRow
    rank: int
    original: str | None = None  # data URI
    overlay: str | None = None
    notes: list[str] = field(default_factory=list)


def _load(path: str | None, what: str, notes: list[str]) -> np.ndarray | None:
    if not path:
        notes.append(f"{what} not kept")
        return None
    try:
        return load_image(path)
    except ImageLoadError as exc:
        notes.append(f"{what} missing or unreadable ({exc})")
        return None


def gallery_item(row: ReportRow, rank: int) -> GalleryItem:
    """Pictures of one gallery part: the inspected file (folder reports) or the kept files
    (store reports); the overlay is drawn from the kept anomaly map when there is one."""
    from inspect_app.visualize import overlay

    item = GalleryItem(row, rank)
    stored = row.record_id is not None
    image = _load(row.image_path if stored else row.result.file, "original image", item.notes)
    if image is not None:
        item.original = thumbnail_uri(image)
    if row.result.anomaly_map is not None and image is not None:
        item.overlay = thumbnail_uri(overlay(image, row.result))
    elif stored:
        kept = _load(row.overlay_path, "overlay", item.notes)
        if kept is not None:
            item.overlay = thumbnail_uri(kept)
    else:
        item.notes.append("overlay not available")
    return item
