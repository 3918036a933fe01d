"""Frame sources: cameras (USB/V4L2, RTSP, HTTP MJPEG), video replay, a watched folder and pushed
images, behind one small interface, plus ``CameraLink`` that keeps a source open through outages.

A source's ``read`` returns a decoded RGB ``Frame``, ``None`` when nothing arrived within a short
poll (so the caller can look at its clock), or a ``Frame`` with ``error`` set when the bytes could
not be decoded: one corrupt frame is skipped and counted, never fatal. ``SourceLost`` means the
connection is gone (reconnect); ``SourceEnded`` means a replay is over.
"""

from __future__ import annotations

import http.client
import logging
import queue
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspect_app.data.images import IMAGE_EXTENSIONS, load_image
from inspect_app.errors import ImageLoadError, InspectAppError
from inspect_app.line.config import SourceConfig

log = logging.getLogger(__name__)


class SourceLost(Exception):
    """The camera or stream is unreachable; the link reconnects with backoff."""


class SourceEnded(Exception):
    """A finite source (video replay) has no more frames."""


@dataclass
class Frame:
    image: np.ndarray | None  # HxWx3 uint8 RGB; None when the frame could not be decoded
    captured_at: float  # time.time() when it was read
    name: str | None = None  # file name (folder, push) or a description of the frame
    part: bool = False  # one frame = one part (folder file, pushed image): never dropped
    error: str | None = None  # why it could not be decoded


def _decode(data: bytes, name: str | None, captured_at: float, part: bool = False, label: str | None = None) -> Frame:
    try:
        return Frame(load_image(data, name=label or name), captured_at, name, part)
    except ImageLoadError as exc:
        return Frame(None, captured_at, name, part, error=str(exc))


class FrameSource:
    kind = "source"

    def open(self) -> None:
        """Connect; raise ``SourceLost`` when the camera cannot be reached (the link retries)."""

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or connection; safe to call twice."""


class OpenCVSource(FrameSource):
    """USB/V4L2 devices, RTSP streams and video files through OpenCV (FFmpeg backend).

    A video file is replayed at ``fps`` (default: its own rate) so that it behaves like a camera.
    """

    def __init__(self, uri: str, kind: str, fps: float | None = None, loop: bool = False, timeout_s: float = 5.0):
        if kind == "video" and not Path(uri).is_file():
            raise InspectAppError(f"source {uri!r}: no such device, URL, video file or folder")
        self.uri, self.kind, self.fps, self.loop, self.timeout_s = uri, kind, fps, loop, timeout_s
        self._cap: cv2.VideoCapture | None = None
        self._next_due = 0.0
        self._period = 0.0

    def open(self) -> None:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.timeout_s * 1000)]
        target = int(self.uri) if self.kind == "device" else self.uri
        backend = cv2.CAP_ANY if self.kind == "device" else cv2.CAP_FFMPEG
        cap = cv2.VideoCapture(target, backend, params)
        if not cap.isOpened():
            cap.release()
            if self.kind == "video":
                raise InspectAppError(f"source {self.uri!r}: OpenCV cannot open this video file")
            raise SourceLost(f"cannot open {self.kind} {self.uri!r}")
        self._cap = cap
        native = cap.get(cv2.CAP_PROP_FPS) or 0.0
        rate = self.fps or (native if self.kind == "video" and 0 < native < 1000 else 0.0)
        self._period = 1.0 / rate if rate else 0.0
        self._next_due = time.monotonic()

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceLost("not open")
        if self._period:
            delay = self._next_due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next_due = max(self._next_due + self._period, time.monotonic() - self._period)
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            if self.kind == "video":
                if self.loop and self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                    ok, bgr = self._cap.read()
                if not ok or bgr is None:
                    raise SourceEnded(self.uri)
            else:
                raise SourceLost(f"{self.kind} {self.uri!r} returned no frame")
        now = time.time()
        if bgr.ndim == 2:
            return Frame(cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB), now)
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), now)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class MjpegSource(FrameSource):
    """An HTTP MJPEG stream (``multipart/x-mixed-replace``) as IP cameras serve it, or a snapshot
    URL (``image/*``) fetched once per frame. Frames stay JPEG bytes until ``load_image`` decodes
    them, so a truncated frame is detected and skipped rather than shown half grey."""

    kind = "stream"

    def __init__(self, url: str, timeout_s: float = 5.0):
        self.url, self.timeout_s = url, timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._boundary: bytes | None = None
        self._at_part = False
        self._snapshot: bytes | None = None

    def _request(self) -> http.client.HTTPResponse:
        parts = urllib.parse.urlsplit(self.url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.close()
        try:
            self._conn = cls(parts.hostname, parts.port, timeout=self.timeout_s)
            self._conn.request("GET", path, headers={"Accept": "multipart/x-mixed-replace, image/*"})
            resp = self._conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise SourceLost(f"{self.url}: {exc}") from None
        if resp.status != 200:
            raise SourceLost(f"{self.url}: HTTP {resp.status} {resp.reason}")
        return resp

    def open(self) -> None:
        resp = self._request()
        ctype = resp.getheader("Content-Type", "")
        if ctype.lower().startswith("multipart/"):
            boundary = next((p.split("=", 1)[1].strip().strip('"') for p in ctype.split(";")
                             if p.strip().lower().startswith("boundary=")), None)
            if not boundary:
                raise InspectAppError(f"{self.url}: multipart stream without a boundary")
            self._boundary = b"--" + boundary.removeprefix("--").encode()
            self._resp = resp
            self._at_part = False
        elif ctype.lower().startswith("image/"):
            self._boundary = None
            self._snapshot = resp.read()
            self._resp = None
        else:
            raise InspectAppError(f"{self.url}: content type {ctype!r} is neither an MJPEG stream nor an image; "
                                  "for a video over HTTP set source.kind: video")

    def read(self) -> Frame | None:
        try:
            if self._boundary is None:  # snapshot URL: one GET per frame
                data, self._snapshot = self._snapshot, None
                if data is None:
                    data = self._request().read()
                return _decode(data, None, time.time(), label=self.url)
            return self._read_part()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise SourceLost(f"{self.url}: {exc}") from None

    def _read_part(self) -> Frame:
        resp = self._resp
        if resp is None:
            raise SourceLost("not open")
        line = b"" if self._at_part else resp.readline()
        while not self._at_part and line.strip() != self._boundary:
            if not line:
                raise SourceLost(f"{self.url}: stream closed")
            if line.strip() == self._boundary + b"--":
                raise SourceLost(f"{self.url}: stream ended")
            line = resp.readline()
        self._at_part = False
        length = None
        while True:
            header = resp.readline()
            if not header:
                raise SourceLost(f"{self.url}: stream closed")
            if header in (b"\r\n", b"\n"):
                break
            key, _, value = header.decode("latin-1").partition(":")
            if key.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:  # no length: the frame runs to the next boundary
            chunks = []
            while True:
                line = resp.readline()
                if not line:
                    raise SourceLost(f"{self.url}: stream closed")
                if line.strip() == self._boundary:
                    break
                chunks.append(line)
            data = b"".join(chunks).removesuffix(b"\r\n")
            self._at_part = True  # the boundary that ended this frame starts the next one
            return _decode(data, None, time.time(), label=self.url)
        data = resp.read(length)
        if len(data) < length:
            raise SourceLost(f"{self.url}: stream closed mid-frame")
        return _decode(data, None, time.time(), label=self.url)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
        self._conn = self._resp = None


class FolderSource(FrameSource):
    """A folder that camera software writes image files into. Files already there are inspected
    first (by name); a file is read once its size and modification time have stayed unchanged
    for ``settle_s`` (so a half-written file is never inspected). Read files are remembered, or
    moved to ``done_dir`` when given (then a restarted station does not inspect them again)."""

    kind = "folder"

    def __init__(self, folder: str | Path, settle_s: float = 0.5, poll_s: float = 0.1, done_dir: Path | None = None):
        self.folder, self.settle_s, self.poll_s = Path(folder), settle_s, poll_s
        self.done_dir = Path(done_dir) if done_dir else None
        self._seen: set[tuple[str, int]] = set()  # (name, mtime_ns) already inspected
        self._watch: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, unchanged since)
        self._ready: deque[Path] = deque()

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceLost(f"watched folder {self.folder} is missing")

    def _scan(self) -> None:
        now = time.monotonic()
        present = set()
        try:
            entries = sorted(p for p in self.folder.iterdir()
                             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)
        except OSError as exc:
            raise SourceLost(f"watched folder {self.folder}: {exc}") from None
        for path in entries:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            present.add(path.name)
            key = (path.name, st.st_mtime_ns)
            if key in self._seen:
                continue
            size_mtime = (st.st_size, st.st_mtime_ns)
            known = self._watch.get(path.name)
            if known is None or known[:2] != size_mtime:
                self._watch[path.name] = (*size_mtime, now)
            elif st.st_size > 0 and now - known[2] >= self.settle_s:
                self._seen.add(key)
                del self._watch[path.name]
                self._ready.append(path)
        # Forget files that were removed, so memory stays bounded on a long shift.
        self._seen = {k for k in self._seen if k[0] in present}
        self._watch = {k: v for k, v in self._watch.items() if k in present}

    def read(self) -> Frame | None:
        if not self._ready:
            self._scan()
            if not self._ready:
                time.sleep(self.poll_s)
                return None
        path = self._ready.popleft()
        try:
            data = path.read_bytes()
        except OSError as exc:
            return Frame(None, time.time(), path.name, part=True, error=f"{path.name}: cannot read ({exc})")
        if self.done_dir is not None:
            try:
                self.done_dir.mkdir(parents=True, exist_ok=True)
                path.replace(self.done_dir / path.name)
            except OSError as exc:
                log.warning("%s not moved to %s: %s", path.name, self.done_dir, exc)
        return _decode(data, path.name, time.time(), part=True)


class PushSource(FrameSource):
    """Images pushed by other software (HTTP ``station.push``, the MQTT frame topic). Each one is
    a part; a full queue makes ``push`` wait (backpressure) and then refuse, never drop silently."""

    kind = "push"

    def __init__(self, maxsize: int = 32, poll_s: float = 0.1):
        self._queue: queue.Queue[tuple[bytes, str | None, float]] = queue.Queue(maxsize)
        self.poll_s = poll_s

    def push(self, data: bytes, name: str | None = None, timeout: float = 0.0) -> bool:
        try:
            self._queue.put((bytes(data), name, time.time()), timeout=timeout if timeout > 0 else None,
                            block=timeout > 0)
            return True
        except queue.Full:
            return False

    def pending(self) -> int:
        return self._queue.qsize()

    def drain(self) -> list[Frame]:
        """Everything pushed but not yet read (accepted parts: the station inspects them at shutdown)."""
        frames = []
        while True:
            try:
                data, name, received_at = self._queue.get_nowait()
            except queue.Empty:
                return frames
            frames.append(_decode(data, name or "pushed image", received_at, part=True))

    def read(self) -> Frame | None:
        try:
            data, name, received_at = self._queue.get(timeout=self.poll_s)
        except queue.Empty:
            return None
        frame = _decode(data, name or "pushed image", received_at, part=True)
        return frame


def create_source(cfg: SourceConfig) -> FrameSource:
    kind = cfg.resolve_kind()
    if kind == "folder":
        return FolderSource(cfg.uri, cfg.settle_s, cfg.poll_s, cfg.done_dir)
    if kind == "push":
        return PushSource(cfg.push_queue, cfg.poll_s)
    if kind == "stream" and cfg.uri.lower().startswith(("http://", "https://")):
        return MjpegSource(cfg.uri, cfg.read_timeout_s)
    return OpenCVSource(cfg.uri, kind, cfg.fps, cfg.loop, cfg.read_timeout_s)


class CameraLink:
    """Keeps a source open: reconnects with exponential backoff and records every outage.

    ``state`` is ``connected``, ``reconnecting`` or ``disconnected`` (not started, stopped, or a
    replay that ended); ``gaps`` holds the durations of the last outages in seconds.
    """

    def __init__(self, source: FrameSource, cfg: SourceConfig, stop: threading.Event,
                 on_state: Callable[[str], None] | None = None, on_gap: Callable[[float], None] | None = None):
        self.source, self.cfg, self.stop = source, cfg, stop
        self.on_state, self.on_gap = on_state, on_gap
        self.state = "disconnected"
        self.reconnects = 0
        self.gaps: deque[float] = deque(maxlen=50)
        self.total_gap_s = 0.0
        self.gap_started: float | None = None
        self.last_error: str | None = None

    def _set_state(self, state: str) -> None:
        if state != self.state:
            log.info("camera %s -> %s", self.state, state)
            self.state = state
            if self.on_state:
                self.on_state(state)

    def current_gap_s(self) -> float:
        return 0.0 if self.gap_started is None else time.monotonic() - self.gap_started

    def _lost(self, reason: str) -> None:
        self.last_error = reason
        self.source.close()
        if self.gap_started is None:
            self.gap_started = time.monotonic()
            log.warning("camera lost: %s", reason)
        self._set_state("reconnecting")

    def _restored(self) -> None:
        if self.gap_started is not None:
            gap = time.monotonic() - self.gap_started
            self.gaps.append(gap)
            self.total_gap_s += gap
            self.gap_started = None
            self.reconnects += 1
            log.info("camera back after %.1f s", gap)
            if self.on_gap:
                self.on_gap(gap)
        self._set_state("connected")

    def frames(self) -> Iterator[Frame | None]:
        """Frames until ``stop`` is set or a replay ends. ``None`` on an idle poll and every 0.1 s
        while reconnecting, so the caller keeps its clocks (trigger timeouts) running."""
        delay = self.cfg.reconnect_initial_s
        is_open = False
        last_frame = time.monotonic()
        try:
            while not self.stop.is_set():
                if not is_open:
                    try:
                        self.source.open()
                        is_open, last_frame = True, time.monotonic()
                        self._restored()
                    except SourceLost as exc:
                        self._lost(str(exc))
                if is_open:
                    try:
                        frame = self.source.read()
                    except SourceLost as exc:
                        self._lost(str(exc))
                        is_open = False
                    except SourceEnded:
                        log.info("source ended")
                        return
                    else:
                        if frame is None and self.source.kind == "stream" and \
                                time.monotonic() - last_frame > self.cfg.read_timeout_s:
                            self._lost(f"no frame for {self.cfg.read_timeout_s:.0f} s")
                            is_open = False
                        elif frame is not None:
                            last_frame = time.monotonic()
                            delay = self.cfg.reconnect_initial_s  # frames flow again: backoff starts over
                        yield frame
                        continue
                # Lost: wait (doubling up to the maximum), yielding so the caller's clocks run.
                retry_at = time.monotonic() + delay
                delay = min(delay * 2, self.cfg.reconnect_max_s)
                while not self.stop.is_set() and time.monotonic() < retry_at:
                    self.stop.wait(min(0.1, max(0.0, retry_at - time.monotonic())))
                    yield None
        finally:
            self.source.close()
            self._set_state("disconnected")
