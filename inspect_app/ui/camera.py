"""One snapshot from the station's configured line camera, for inspecting a part on demand.

The source is what the line runner takes: a device index, a stream URL or video file (read by
OpenCV), or a folder that camera software drops images into (the newest image is taken).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2

from inspect_app.data.images import IMAGE_EXTENSIONS
from inspect_app.errors import InspectAppError
from inspect_app.ui.uploads import Upload


def grab_snapshot(source: str, timeout_s: float = 5.0) -> Upload:
    """The camera's current frame as PNG bytes; ``InspectAppError`` with the reason otherwise."""
    folder = Path(source)
    if folder.is_dir():
        images = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if not images:
            raise InspectAppError(f"the line camera folder {folder} holds no images yet")
        newest = max(images, key=lambda p: p.stat().st_mtime)
        return Upload(newest.name, newest.read_bytes())
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    try:
        if not capture.isOpened():
            raise InspectAppError(f"the line camera {source!r} cannot be opened")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ok, frame = capture.read()
            if ok and frame is not None:
                encoded, png = cv2.imencode(".png", frame)
                if encoded:
                    return Upload(f"line-camera-{time.strftime('%Y%m%d-%H%M%S')}.png", png.tobytes())
        raise InspectAppError(f"the line camera {source!r} gave no frame within {timeout_s:.0f} s")
    finally:
        capture.release()
