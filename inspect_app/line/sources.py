"""Frame sources: cameras (USB/V4L2, RTSP and HTTP(S) streams), video replay, a watched folder and
pushed images, behind one small interface, plus ``CameraLink`` that keeps a source open through outages.

A source's ``read`` returns a decoded RGB ``Frame``, ``None`` when nothing arrived within a short
poll (so the caller can look at its clock), or a ``Frame`` with ``error`` set when the bytes could
not be decoded: one corrupt frame is skipped and counted, never fatal. ``SourceLost`` means the
connection is gone (reconnect); ``SourceEnded`` means a replay is over.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_when_event_set, wait_exponential

from inspect_app.data.images import IMAGE_EXTENSIONS, load_image
from inspect_app.errors import ImageLoadError, InspectAppError
from inspect_app.line.config import SourceConfig, SourceKind
from inspect_app.line.metrics import CameraState

log = logging.getLogger(__name__)
IDLE_POLL_S = 0.1  # while the camera is away, the caller's clocks (trigger timeouts) run this often


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
    key: str | None = None  # identity of a file (path, size, mtime); camera frames get theirs at capture
    path: Path | None = None  # the file it came from (moved to ``done_dir`` once its result is committed)
    incomplete: bool = False  # a file that stayed empty or kept changing (``error`` says which)


def _decode(data: bytes, name: str | None, captured_at: float, part: bool = False, label: str | None = None) -> Frame:
    try:
        return Frame(load_image(data, name=label or name), captured_at, name, part)
    except ImageLoadError as exc:
        return Frame(None, captured_at, name, part, error=str(exc))


class FrameSource:
    kind: SourceKind = "stream"

    def open(self) -> None:
        """Connect; raise ``SourceLost`` when the camera cannot be reached (the link retries)."""

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or connection; safe to call twice."""

    def acknowledge(self, frame: Frame) -> None:
        """``frame``'s result is committed (stored or spooled); a folder moves its file then."""


class OpenCVSource(FrameSource):
    """USB/V4L2 devices, RTSP and HTTP(S) streams and video files through OpenCV (FFmpeg backend).

    A video file is replayed at ``fps`` (default: its own rate) so that it behaves like a camera.
    An MJPEG stream (an IP camera's ``multipart/x-mixed-replace`` over HTTP) is read as raw JPEG
    packets that ``load_image`` decodes: FFmpeg's own decoder conceals a truncated frame with the
    previous one, which would then be inspected as a part; decoded here it is flagged corrupt and
    skipped. A URL that holds one image (a camera's snapshot URL, ``image/*``) is opened again
    for every frame.
    """

    def __init__(self, uri: str, kind: SourceKind, fps: float | None = None, loop: bool = False,
                 timeout_s: float = 5.0):
        if kind == "video" and not Path(uri).is_file():
            raise InspectAppError(f"source {uri!r}: no such device, URL, video file or folder")
        self.uri, self.kind, self.fps, self.loop, self.timeout_s = uri, kind, fps, loop, timeout_s
        self._cap: cv2.VideoCapture | None = None
        self._jpeg_packets = False  # read() gets encoded JPEG frames, not decoded ones
        self._single_image = False  # a snapshot URL: reopened for each frame
        self._next_due = 0.0
        self._period = 0.0

    def _capture(self) -> cv2.VideoCapture:
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
        if self.kind == "stream":
            fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
            self._jpeg_packets = fourcc == b"MJPG" and cap.set(cv2.CAP_PROP_FORMAT, -1)
            self._single_image = cap.get(cv2.CAP_PROP_FRAME_COUNT) == 1
        return cap

    def open(self) -> None:
        self.close()
        cap = self._cap = self._capture()
        native = cap.get(cv2.CAP_PROP_FPS) or 0.0
        rate = self.fps or (native if self.kind == "video" and 0 < native < 1000 else 0.0)
        self._period = 1.0 / rate if rate else 0.0
        self._next_due = time.monotonic()

    def _pace(self) -> None:
        if self._period:
            delay = self._next_due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next_due = max(self._next_due + self._period, time.monotonic() - self._period)

    def read(self) -> Frame | None:
        if self._cap is None:
            if not self._single_image:
                raise SourceLost("not open")
            self._cap = self._capture()  # the next snapshot
        self._pace()
        cap = self._cap
        ok, data = cap.read()
        if self._single_image:
            cap.release()
            self._cap = None
        if not ok or data is None:
            if self.kind != "video":
                raise SourceLost(f"{self.kind} {self.uri!r} returned no frame")
            if self.loop and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                ok, data = cap.read()
            if not ok or data is None:
                raise SourceEnded(self.uri)
        now = time.time()
        if self._jpeg_packets:
            return _decode(data.tobytes(), None, now, label=self.uri)
        return Frame(cv2.cvtColor(data, cv2.COLOR_GRAY2RGB if data.ndim == 2 else cv2.COLOR_BGR2RGB), now)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def folder_frame_key(path: Path, size: int, mtime_ns: int) -> str:
    """A file's identity: its path, size and modification time (a rewritten file is a new part)."""
    key = f"file:{path}|{size}|{mtime_ns}"
    return key if len(key) <= 500 else "file-sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass
class _Watched:
    size: int
    mtime_ns: int
    unchanged_since: float  # time.monotonic()
    first_seen: float


class FolderSource(FrameSource):
    """A folder that camera software writes image files into. Files already there are inspected
    first (by name); a file is read once its size and modification time have stayed unchanged
    for ``settle_s`` (so a half-written file is never inspected). Every file is accounted for:

    - a file that stays empty, or keeps changing, for ``incomplete_s`` becomes a part with an
      ``error`` (an ERROR result saying so), never a file waited on forever;
    - a file that is not an image is counted and logged once (``ignored``, ``on_ignored``);
    - a file whose result is already recorded (``is_recorded(key)``: a restart after a crash) is
      not read again: ``on_already_recorded`` is told, and it goes to ``done_dir``.

    A file is moved to ``done_dir`` (when given) by ``acknowledge``, which the station calls once
    the file's result is committed; files are remembered otherwise. With ``drain`` the source
    ends (``SourceEnded``) once no file is left to read or waiting to settle."""

    kind = "folder"

    def __init__(self, folder: str | Path, settle_s: float = 0.5, poll_s: float = 0.1, done_dir: Path | None = None,
                 incomplete_s: float = 30.0, drain: bool = False):
        self.folder, self.settle_s, self.poll_s = Path(folder).absolute(), settle_s, poll_s
        self.done_dir = Path(done_dir) if done_dir else None
        self.incomplete_s, self.drain = incomplete_s, drain
        self.is_recorded: Callable[[str], bool] | None = None
        self.on_already_recorded: Callable[[Path], None] | None = None
        self.on_ignored: Callable[[Path], None] | None = None
        self.ignored = 0
        self._ignored_names: set[str] = set()
        self._seen: set[tuple[str, str]] = set()  # (name, frame key) already read
        self._watch: dict[str, _Watched] = {}
        self._ready: deque[tuple[Path, str, str | None]] = deque()  # path, frame key, why it is incomplete

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceLost(f"watched folder {self.folder} is missing")

    def _ignore(self, path: Path) -> None:
        if path.name not in self._ignored_names:
            self._ignored_names.add(path.name)
            self.ignored += 1
            log.warning("%s is not an image (%s): ignored", path.name, ", ".join(sorted(IMAGE_EXTENSIONS)))
            if self.on_ignored:
                self.on_ignored(path)

    def _scan(self) -> None:
        now = time.monotonic()
        present = set()
        try:
            entries = sorted(p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith("."))
        except OSError as exc:
            raise SourceLost(f"watched folder {self.folder}: {exc}") from None
        for path in entries:
            present.add(path.name)
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                self._ignore(path)
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            key = folder_frame_key(path, st.st_size, st.st_mtime_ns)
            if (path.name, key) in self._seen:
                continue
            known = self._watch.get(path.name)
            if known is None:
                known = self._watch[path.name] = _Watched(st.st_size, st.st_mtime_ns, now, now)
            elif (known.size, known.mtime_ns) != (st.st_size, st.st_mtime_ns):
                known.size, known.mtime_ns, known.unchanged_since = st.st_size, st.st_mtime_ns, now
            incomplete = None
            if now - known.first_seen >= self.incomplete_s:
                incomplete = (f"{path.name}: file stayed empty for {self.incomplete_s:g} s" if st.st_size == 0
                              else f"{path.name}: file kept changing for {self.incomplete_s:g} s")
            elif st.st_size == 0 or now - known.unchanged_since < self.settle_s:
                continue
            self._seen.add((path.name, key))
            del self._watch[path.name]
            self._ready.append((path, key, incomplete))
        # Forget files that were removed, so memory stays bounded on a long shift.
        self._seen = {k for k in self._seen if k[0] in present}
        self._watch = {k: v for k, v in self._watch.items() if k in present}
        self._ignored_names &= present

    def read(self) -> Frame | None:
        if not self._ready:
            self._scan()
            if not self._ready:
                if self.drain and not self._watch:
                    raise SourceEnded(f"folder {self.folder} drained")
                time.sleep(self.poll_s)
                return None
        path, key, incomplete = self._ready.popleft()
        if self.is_recorded is not None and self.is_recorded(key):
            log.info("%s: result already recorded (an earlier run): not inspected again", path.name)
            if self.on_already_recorded:
                self.on_already_recorded(path)
            self._move_done(path)
            return None
        if incomplete is not None:
            return Frame(None, time.time(), path.name, part=True, error=incomplete, key=key, path=path, incomplete=True)
        try:
            data = path.read_bytes()
        except OSError as exc:
            return Frame(None, time.time(), path.name, part=True, error=f"{path.name}: cannot read ({exc})", key=key,
                         path=path)
        frame = _decode(data, path.name, time.time(), part=True)
        frame.key, frame.path = key, path
        return frame

    def acknowledge(self, frame: Frame) -> None:
        """The frame's result is committed: its file may go to ``done_dir``."""
        if frame.path is not None:
            self._move_done(frame.path)

    def _move_done(self, path: Path) -> None:
        if self.done_dir is None:
            return
        try:
            self.done_dir.mkdir(parents=True, exist_ok=True)
            path.replace(self.done_dir / path.name)
        except OSError as exc:
            log.warning("%s not moved to %s: %s", path.name, self.done_dir, exc)


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
        frames: list[Frame] = []
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
        return _decode(data, name or "pushed image", received_at, part=True)


def create_source(cfg: SourceConfig) -> FrameSource:
    kind = cfg.resolve_kind()
    if kind == "folder":
        return FolderSource(cfg.uri, cfg.settle_s, cfg.poll_s, cfg.done_dir, cfg.incomplete_s, cfg.drain)
    if kind == "push":
        return PushSource(cfg.push_queue, cfg.poll_s)
    return OpenCVSource(cfg.uri, kind, cfg.fps, cfg.loop, cfg.read_timeout_s)


class CameraLink:
    """Keeps a source open: reconnects with exponential backoff (tenacity) and records every outage.

    ``state`` is a ``CameraState``; ``gaps`` holds the durations of the last outages in seconds.
    An outage ends with the first frame after it, so a camera that accepts connections but sends
    nothing stays lost (and backs off) instead of reconnecting in a tight loop.
    """

    def __init__(self, source: FrameSource, cfg: SourceConfig, stop: threading.Event,
                 on_state: Callable[[CameraState], None] | None = None, on_gap: Callable[[float], None] | None = None,
                 on_idle: Callable[[], None] | None = None):
        self.source, self.cfg, self.stop = source, cfg, stop
        self.on_state, self.on_gap, self.on_idle = on_state, on_gap, on_idle
        self.state = CameraState.DISCONNECTED
        self.reconnects = 0
        self.gaps: deque[float] = deque(maxlen=50)
        self.total_gap_s = 0.0
        self.gap_started: float | None = None
        self.last_error: str | None = None

    def _set_state(self, state: CameraState) -> None:
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
        self._set_state(CameraState.RECONNECTING)

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
        self._set_state(CameraState.CONNECTED)

    def _attempt_failed(self, attempt: RetryCallState) -> None:
        error = attempt.outcome.exception() if attempt.outcome is not None else None
        self._lost(str(error))

    def _idle(self, seconds: float) -> None:
        """tenacity's sleep between attempts: ends early on ``stop`` and calls ``on_idle`` every
        ``IDLE_POLL_S`` so the caller's clocks keep running."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self.stop.wait(min(IDLE_POLL_S, left))
            if self.on_idle:
                self.on_idle()

    def _open_and_read(self) -> Frame | None:
        if self.stop.is_set():
            raise SourceLost("stopping")
        self.source.open()
        return self.source.read()

    def _connect(self) -> Frame | None:
        """Open the source and read a first frame, retrying with exponential backoff until that
        works or ``stop`` is set (then ``None``)."""
        retrying = Retrying(retry=retry_if_exception_type(SourceLost), stop=stop_when_event_set(self.stop),
                            wait=wait_exponential(multiplier=self.cfg.reconnect_initial_s,
                                                  max=self.cfg.reconnect_max_s),
                            sleep=self._idle, before_sleep=self._attempt_failed, reraise=True)
        try:
            frame = retrying(self._open_and_read)
        except SourceLost:
            return None
        self._restored()
        return frame

    def frames(self) -> Iterator[Frame | None]:
        """Frames until ``stop`` is set or a replay ends; ``None`` when a poll found nothing."""
        try:
            while not self.stop.is_set():
                frame = self._connect()
                if self.stop.is_set() and self.state != CameraState.CONNECTED:
                    return
                yield frame
                try:
                    while not self.stop.is_set():
                        yield self.source.read()
                except SourceLost as exc:
                    self._lost(str(exc))
        except SourceEnded:
            log.info("source ended")
        finally:
            self.source.close()
            self._set_state(CameraState.DISCONNECTED)
