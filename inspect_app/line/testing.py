"""Loopback stand-ins for line equipment, used by the tests and the soak benchmark: an HTTP MJPEG
camera (can be killed and restarted on the same port), a camera's snapshot URL and a Mosquitto
broker process."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

BOUNDARY = "frame"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # restart on the same port right after a kill
    daemon_threads = True


class MjpegCamera:
    """Serves ``frames`` (encoded JPEG bytes, or a function of the frame index) as
    ``multipart/x-mixed-replace`` at ``fps``, like an IP camera. Each frame is sent once in total,
    across reconnections; ``sent`` counts them and ``sent_at`` keeps their send times. Without
    ``content_length`` the parts carry no length (some cameras): a frame runs to the next boundary."""

    def __init__(self, frames: Sequence[bytes] | Callable[[int], bytes], count: int | None = None, fps: float = 20.0,
                 port: int | None = None, content_length: bool = True):
        self.frames = frames
        self.content_length = content_length
        self.count = count if count is not None else (None if callable(frames) else len(frames))
        self.fps = fps
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.sent = 0
        self.sent_at: list[float] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._sockets: set[socket.socket] = set()
        self._running = False

    def _frame(self, index: int) -> bytes:
        return self.frames(index) if callable(self.frames) else self.frames[index]

    def _next(self) -> int | None:
        with self._lock:
            if not self._running or (self.count is not None and self.sent >= self.count):
                return None
            index = self.sent
            self.sent += 1
            self.sent_at.append(time.time())
            return index

    def start(self) -> MjpegCamera:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                camera._sockets.add(self.connection)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                    self.send_header("Cache-Control", "no-cache")
                    self.end_headers()
                    due = time.monotonic()
                    while True:
                        index = camera._next()
                        if index is None:
                            if camera._running:
                                self.wfile.write(f"--{BOUNDARY}--\r\n".encode())
                            return
                        data = camera._frame(index)
                        length = f"\r\nContent-Length: {len(data)}" if camera.content_length else ""
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg{length}\r\n\r\n".encode()
                                         + data + b"\r\n")
                        self.wfile.flush()
                        due += 1.0 / camera.fps
                        time.sleep(max(0.0, due - time.monotonic()))
                except OSError:
                    return
                finally:
                    camera._sockets.discard(self.connection)

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._running = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="mjpeg-camera").start()
        return self

    def kill(self) -> None:
        """Drop every connection and stop listening, as a camera that loses power."""
        self._running = False
        for sock in list(self._sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def restart(self) -> None:
        self.start()

    @property
    def done(self) -> bool:
        return self.count is not None and self.sent >= self.count


class SnapshotCamera:
    """A camera's snapshot URL: every GET answers the next of ``frames`` as one ``image/jpeg``;
    ``requests`` counts the GETs."""

    def __init__(self, frames: Sequence[bytes]):
        self.frames = frames
        self.requests = 0
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                data = camera.frames[camera.requests % len(camera.frames)]
                camera.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = _Server(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/snapshot.jpg"

    def start(self) -> SnapshotCamera:
        threading.Thread(target=self._server.serve_forever, daemon=True, name="snapshot-camera").start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Mosquitto:
    """The Debian ``mosquitto`` broker on 127.0.0.1 with a config file in ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = True,
                 binary: str = "/usr/sbin/mosquitto"):
        self.binary = binary if Path(binary).exists() else (shutil.which("mosquitto") or binary)
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.conf = self.workdir / "mosquitto.conf"
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true"]
        if persistence:  # a restarted broker still holds queued messages of persistent sessions
            lines += ["persistence true", f"persistence_location {self.workdir}/"]
        self.conf.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    @staticmethod
    def available(binary: str = "/usr/sbin/mosquitto") -> bool:
        return Path(binary).exists() or shutil.which("mosquitto") is not None

    def start(self) -> Mosquitto:
        log = (self.workdir / "mosquitto.log").open("a")
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
