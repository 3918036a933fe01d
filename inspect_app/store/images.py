"""Result images on disk: the inspected frame and its heatmap overlay, for every FAIL and a
sample of PASS results, within a size budget (oldest pruned first).

PNG encoding takes tens of milliseconds per megapixel, so it runs on one background thread:
the line never waits for it unless the backlog is full (then it waits rather than losing a FAIL
image). A failed write (disk full, permissions) leaves the result row without paths and is
reported through ``on_error``; it never loses the row.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from inspect_app.results import InspectionResult

log = logging.getLogger(__name__)
# PNG compression 1: files ~10 % larger than the default level, encoding several times faster.
PNG_PARAMS = (16, 1)  # cv2.IMWRITE_PNG_COMPRESSION, level


@dataclass(frozen=True)
class RetentionPolicy:
    """Which result images are kept on disk and how many.

    ``keep_every_nth_pass``: write images for every Nth PASS result (0 = none); every FAIL is
    written. ``max_bytes`` / ``max_files``: budget for all image + overlay files; when exceeded the
    oldest results lose their images first (the rows stay).
    """

    keep_every_nth_pass: int = 20
    max_bytes: int = 5 * 1024**3
    max_files: int = 100_000

    def __post_init__(self) -> None:
        if self.keep_every_nth_pass < 0 or self.max_bytes <= 0 or self.max_files <= 0:
            raise ValueError("retention limits must be positive (keep_every_nth_pass may be 0)")


@dataclass
class ImageJob:
    result_id: int
    result: InspectionResult
    image: np.ndarray | None
    time: datetime


def _write_png(path: Path, rgb: np.ndarray) -> int:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), list(PNG_PARAMS))
    if not ok:
        raise OSError(f"could not encode {path.name} as PNG")
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(buf.tobytes())
        tmp.replace(path)  # a half-written file never carries the final name
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(buf)


def write_result_images(root: Path, job: ImageJob) -> tuple[str, str, int]:
    """Write ``<root>/<product>/<YYYY-MM-DD>/<id>_image.png`` and ``<id>_overlay.png``; return the
    absolute paths and the bytes written. Raises ``OSError`` (or ``ImageLoadError``) on failure."""
    from inspect_app.data.images import load_image
    from inspect_app.visualize import overlay

    image = job.image if job.image is not None else load_image(job.result.file)
    folder = root / (job.result.product or "unknown") / job.time.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    image_path = folder / f"{job.result_id}_image.png"
    overlay_path = folder / f"{job.result_id}_overlay.png"
    size = _write_png(image_path, image)
    try:
        size += _write_png(overlay_path, overlay(image, job.result))
    except BaseException:
        image_path.unlink(missing_ok=True)
        raise
    return str(image_path.resolve()), str(overlay_path.resolve()), size


class ImageWriter:
    """One background thread writing result images; ``on_done(id, paths|None, error|None)``
    records the outcome in the store."""

    def __init__(self, root: Path, on_done: Callable[[int, tuple[str, str, int] | None, str | None], None],
                 max_pending: int = 32):
        self.root = root
        self._on_done = on_done
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-images")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._pending: set[Future] = set()
        self._lock = threading.Lock()

    def submit(self, job: ImageJob) -> None:
        self._slots.acquire()  # back-pressure instead of an unbounded backlog of frames in memory
        future = self._pool.submit(self._run, job)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)
        self._slots.release()

    def _run(self, job: ImageJob) -> None:
        try:
            paths, error = write_result_images(self.root, job), None
        except Exception as exc:  # disk full, read-only folder, missing source file: keep the row
            paths, error = None, f"{type(exc).__name__}: {exc}"
        try:
            self._on_done(job.result_id, paths, error)
        except Exception:  # the database went away meanwhile: nothing else to tell, so say it here
            log.exception("could not record the images of result %s", job.result_id)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job has finished; False if ``timeout`` ran out first."""
        from concurrent.futures import wait

        with self._lock:
            pending = list(self._pending)
        done, not_done = wait(pending, timeout=timeout)
        return not not_done

    def close(self) -> None:
        self._pool.shutdown(wait=True)
