"""Which frames become inspections.

- ``ContinuousTrigger``: free-running, at most ``fps`` inspections per second; such frames may be
  dropped (oldest first) when inspection falls behind.
- ``ExternalTrigger``: a PLC or light barrier says "part here" (MQTT message or HTTP call); the
  next frame captured after the signal is inspected. Never dropped; a trigger that gets no frame
  in time is rejected with an alarm.
- ``PartPresentTrigger``: compares each frame with an empty-belt reference; a part that arrives
  and comes to rest is inspected once, and the next part can only fire after the belt was empty.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from inspect_app.data.images import load_image
from inspect_app.line.config import TriggerConfig
from inspect_app.line.sources import Frame


@dataclass
class Decision:
    kind: str  # "continuous", "external", "part-present"; a part's source kind ("folder", "push")
    triggered_at: float  # time.time() of the trigger (the frame capture for free-running frames)
    droppable: bool


class TriggerPolicy(Protocol):
    def on_frame(self, frame: Frame) -> Decision | None:
        """The decision for a decoded frame of a streaming source; ``None``: not inspected."""

    def expired(self, now: float) -> list[float]:
        """Trigger times that waited too long for a frame (each one is a rejected part)."""


class ContinuousTrigger:
    def __init__(self, fps: float | None):
        self.period = 1.0 / fps if fps else 0.0
        self._last = float("-inf")

    def on_frame(self, frame: Frame) -> Decision | None:
        if frame.captured_at - self._last < self.period:
            return None
        self._last = frame.captured_at
        return Decision("continuous", frame.captured_at, droppable=True)

    def expired(self, now: float) -> list[float]:
        return []


class ExternalTrigger:
    """Thread-safe: ``fire`` is called from the MQTT or HTTP thread, ``on_frame`` from capture."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self._pending: deque[float] = deque()
        self._lock = threading.Lock()

    def fire(self, at: float | None = None) -> None:
        with self._lock:
            self._pending.append(time.time() if at is None else at)

    def pending(self) -> int:
        return len(self._pending)

    def on_frame(self, frame: Frame) -> Decision | None:
        with self._lock:
            if self._pending and frame.captured_at >= self._pending[0]:
                return Decision("external", self._pending.popleft(), droppable=False)
        return None

    def expired(self, now: float) -> list[float]:
        """Triggers that waited longer than ``timeout_s`` for a frame (the camera is down)."""
        out: list[float] = []
        with self._lock:
            while self._pending and now - self._pending[0] > self.timeout_s:
                out.append(self._pending.popleft())
        return out

    def drain(self) -> list[float]:
        with self._lock:
            out = list(self._pending)
            self._pending.clear()
        return out


def _signature(image: np.ndarray) -> np.ndarray:
    """A small blurred grey copy: what presence and stillness are judged on (robust to noise)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    return cv2.GaussianBlur(small, (5, 5), 0)


class PartPresentTrigger:
    """Presence by difference with an empty-belt reference, firing once per part when it is still.

    Judged on a 64x64 blurred grey copy: a pixel has changed when it differs by more than
    ``pixel_threshold`` grey levels; a part is present when more than ``present_fraction`` of the
    view differs from the reference, and still when at most ``still_fraction`` changed since the
    previous frame (shares of the view, so small and large parts behave alike).

    States: empty -> arriving (different from the reference) -> inspected (fired once, after
    ``still_frames`` frames without motion) -> empty again after ``empty_frames`` frames that look
    like the reference. Without a reference image, the first ``reference_frames`` frames (the
    belt must be empty at start) are averaged into one; while the belt is empty the reference
    follows slow lighting changes.
    """

    def __init__(self, cfg: TriggerConfig):
        self.cfg = cfg
        self.reference: np.ndarray | None = None
        self._learning: list[np.ndarray] = []
        if cfg.reference is not None:
            self.reference = _signature(load_image(Path(cfg.reference)))
        self.state = "empty"
        self._prev: np.ndarray | None = None
        self._still = 0
        self._empty = 0
        self.unsettled = 0  # parts that left before coming to rest (never inspected)

    def on_frame(self, frame: Frame) -> Decision | None:
        if frame.image is None:  # corrupt frames never reach a trigger; nothing to judge on
            return None
        sig = _signature(frame.image)
        prev, self._prev = self._prev, sig
        if self.reference is None:
            self._learning.append(sig)
            if len(self._learning) >= self.cfg.reference_frames:
                self.reference = np.mean(self._learning, axis=0)
                self._learning = []
            return None
        if self.reference.shape != sig.shape:
            self.reference = sig
        level = self.cfg.pixel_threshold
        present = float((np.abs(sig - self.reference) > level).mean()) > self.cfg.present_fraction
        motion = 1.0 if prev is None else float((np.abs(sig - prev) > level).mean())
        if self.state == "empty":
            if not present:
                self.reference = 0.98 * self.reference + 0.02 * sig
                return None
            self.state, self._still = "arriving", 0
            return None
        if self.state == "arriving":
            if not present:
                self.unsettled += 1
                self.state = "empty"
                return None
            self._still = self._still + 1 if motion <= self.cfg.still_fraction else 0
            if self._still >= self.cfg.still_frames:
                self.state, self._empty = "inspected", 0
                return Decision("part-present", frame.captured_at, droppable=False)
            return None
        # inspected: wait until the belt is empty again
        self._empty = self._empty + 1 if not present else 0
        if self._empty >= self.cfg.empty_frames:
            self.state = "empty"
        return None

    def expired(self, now: float) -> list[float]:
        return []


def create_trigger(cfg: TriggerConfig) -> TriggerPolicy:
    if cfg.mode == "external":
        return ExternalTrigger(cfg.timeout_s)
    if cfg.mode == "part-present":
        return PartPresentTrigger(cfg)
    return ContinuousTrigger(cfg.fps)
