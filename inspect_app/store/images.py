"""Result images on disk and their retention: the inspected frame and its heatmap overlay, for
every FAIL and a sample of PASS results, within a size budget (oldest pruned first).

PNG encoding takes tens of milliseconds per megapixel, so it runs on one background thread:
the line never waits for it unless the backlog is full (then it waits rather than losing a FAIL
image). A failed write (disk full, permissions) leaves the result row without paths and raises
an alarm; it never loses the row. The overlay is drawn with ``inspect_app.visualize`` (numpy and
OpenCV, no torch), imported on the writer thread.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import case, func, select, update

from inspect_app.results import InspectionResult, Verdict
from inspect_app.store.database import Database
from inspect_app.store.models import ResultRow
from inspect_app.store.records import ImageUsage

log = logging.getLogger(__name__)
# PNG compression 1: files ~10 % larger than the default level, encoding several times faster.
PNG_PARAMS = (16, 1)  # cv2.IMWRITE_PNG_COMPRESSION, level


@dataclass(frozen=True)
class RetentionPolicy:
    """Which result images are kept on disk and how many.

    ``keep_every_nth_pass``: write images for every Nth PASS result (0 = none); every FAIL is
    written. ``max_bytes`` / ``max_files``: the disk quota for all image + overlay files; when it
    is exceeded, PASS results lose their images first, oldest first, and FAIL results only when no
    PASS image is left (the rows stay).
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
    image: np.ndarray | None  # None: read ``result.file``
    time: datetime
    station: str


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


def write_result_images(root: Path, job: ImageJob) -> WrittenImages:
    """Write ``<root>/<product>/<YYYY-MM-DD>/<id>_image.png`` and ``<id>_overlay.png``; return the
    absolute paths and the bytes written. Raises ``OSError`` (or ``ImageLoadError``) on failure."""
    from inspect_app.data.images import load_image
    from inspect_app.visualize import overlay

    if job.image is not None:
        image = job.image
    elif job.result.file:
        image = load_image(job.result.file)
    else:
        raise OSError("neither the frame nor its file was given")
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


WrittenImages = tuple[str, str, int]  # image path, overlay path, bytes of both
ImagesDone = Callable[[ImageJob, WrittenImages | None, str | None], None]
AlarmCallback = Callable[[str, str, str], None]  # kind, message, station


class ImageWriter:
    """One background thread writing result images; ``on_done(job, paths|None, error|None)``
    records the outcome in the store."""

    def __init__(self, root: Path, on_done: ImagesDone,
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
            self._on_done(job, paths, error)
        except Exception:  # the database went away meanwhile: nothing else to tell, so say it here
            log.exception("could not record the images of result %s", job.result_id)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job has finished; False if ``timeout`` ran out first."""
        from concurrent.futures import wait

        with self._lock:
            pending = list(self._pending)
        done, not_done = wait(pending, timeout=timeout)
        return not not_done

    def close(self, timeout: float | None = None) -> int:
        """Finish the pending writes; with ``timeout``, those not started by then are dropped (their
        rows stay, without images: a stopping station must not wait for PNGs). Returns how many."""
        if timeout is not None:
            self.flush(timeout)
        with self._lock:
            pending = list(self._pending)
        self._pool.shutdown(wait=True, cancel_futures=timeout is not None)
        return sum(future.cancelled() for future in pending)


class ImageRetention:
    """Which stored results get images (every FAIL, every Nth PASS, never an ERROR) and the disk
    budget over all of them. ``raise_alarm(kind, message, station)`` reports a failed write."""

    def __init__(self, database: Database, images_dir: Path, policy: RetentionPolicy, raise_alarm: AlarmCallback):
        self._db = database
        self.images_dir = images_dir
        self.policy = policy
        self._raise_alarm = raise_alarm
        self._writer = ImageWriter(images_dir, self._written)
        self._pass_counter = itertools.count()
        self._disk_lock = threading.Lock()
        self._disk_usage: tuple[int, int] | None = None  # (files, bytes) of result images, lazily read
        self._evicted = {str(v): 0 for v in (Verdict.PASS, Verdict.FAIL)}  # results whose images the quota took

    def usage(self) -> ImageUsage:
        """Images on disk against the quota (read from the database when not known yet)."""
        with self._disk_lock:
            if self._disk_usage is None:
                self._disk_usage = self._count_usage()
            files, total = self._disk_usage
            return ImageUsage(files, total, self.policy.max_bytes, dict(self._evicted))

    def _count_usage(self) -> tuple[int, int]:
        with self._db.session() as session:  # authoritative figures, also counting other processes
            files, total = session.execute(select(func.count(ResultRow.id) * 2, func.coalesce(
                func.sum(ResultRow.image_bytes), 0)).where(ResultRow.image_path.is_not(None))).one()
        return int(files or 0), int(total or 0)

    def keep(self, job: ImageJob) -> None:
        """Queue the images of a just-stored result when the policy keeps them."""
        if self._wanted(job.result, job.image):
            self._writer.submit(job)

    def _wanted(self, result: InspectionResult, image: np.ndarray | None) -> bool:
        if result.verdict == Verdict.ERROR or (image is None and not result.file):
            return False
        if result.verdict == Verdict.FAIL:
            return True
        nth = self.policy.keep_every_nth_pass
        return nth > 0 and next(self._pass_counter) % nth == 0

    def _written(self, job: ImageJob, paths: WrittenImages | None, error: str | None) -> None:
        if paths is None:
            self._raise_alarm("image_write_failed", f"result {job.result_id}: images not saved under "
                              f"{self.images_dir} ({error}); the result row is stored without them", job.station)
            return
        image_path, overlay_path, size = paths
        with self._db.transaction() as session:
            session.execute(update(ResultRow).where(ResultRow.id == job.result_id).values(
                image_path=image_path, overlay_path=overlay_path, image_bytes=size))
        with self._disk_lock:
            if self._disk_usage is not None:
                files, total = self._disk_usage
                self._disk_usage = (files + 2, total + size)
            self._enforce_budget()

    def _over(self, usage: tuple[int, int]) -> bool:
        return usage[0] > self.policy.max_files or usage[1] > self.policy.max_bytes

    def _enforce_budget(self) -> None:
        """Drop images until the quota holds: PASS results' first, oldest first; FAILs' last
        (called under _disk_lock)."""
        if self._disk_usage is None or self._over(self._disk_usage):
            self._disk_usage = self._count_usage()
        fails_last = case((ResultRow.verdict == str(Verdict.FAIL), 1), else_=0)
        while self._over(self._disk_usage):
            with self._db.transaction() as session:
                rows = session.execute(
                    select(ResultRow.id, ResultRow.image_path, ResultRow.overlay_path, ResultRow.image_bytes,
                           ResultRow.verdict)
                    .where(ResultRow.image_path.is_not(None)).order_by(fails_last, ResultRow.id).limit(50)).all()
                if not rows:
                    self._disk_usage = (0, 0)
                    return
                files, total = self._disk_usage
                pruned = []
                for rid, image_path, overlay_path, size, verdict in rows:
                    if not self._over((files, total)):
                        break
                    paths = [Path(p) for p in (image_path, overlay_path) if p]
                    for path in paths:
                        path.unlink(missing_ok=True)
                    with contextlib.suppress(OSError):  # the day's folder, once its last image is gone
                        paths[0].parent.rmdir()
                    files, total = files - 2, total - (size or 0)
                    pruned.append(rid)
                    self._evicted[verdict] = self._evicted.get(verdict, 0) + 1
                session.execute(update(ResultRow).where(ResultRow.id.in_(pruned)).values(
                    image_path=None, overlay_path=None, image_bytes=None))
            self._disk_usage = (files, total)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for pending image writes; False if ``timeout`` ran out first."""
        return self._writer.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Finish pending image writes (their rows are updated before this returns); with
        ``timeout``, writes not started by then are dropped and logged."""
        dropped = self._writer.close(timeout)
        if dropped:
            log.warning("%d result image(s) not written: the store closed before their turn (rows kept)", dropped)
