"""A running station picks up a new profile version (a refit, a threshold moved in Settings, false
rejects learnt and approved in the UI) without a restart and without losing a frame.

The profile file is checked every ``check_every_s`` between batches; when it changed, the new
version loads in a background thread while the old one keeps inspecting, and is swapped in before
the next batch once loaded. Every result names the profile version that judged it. A profile that
fails to load raises an alarm and the station keeps the version it has (it is tried again only once
the file changes again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from inspect_app.line.inspection import LineInspector
from inspect_app.results import EvidenceFor, InspectionResult

log = logging.getLogger(__name__)

CHECK_EVERY_S = 2.0


class ReloadingInspector:
    """A ``LineInspector`` that follows its profile file; see the module docstring.

    ``version()`` names the file's current state (it may raise ``OSError`` or a ``ProfileError``
    while the file is being replaced: then nothing changes); ``load()`` returns the inspector of
    that state. ``on_reload(old, new)`` and ``on_failure(exc)`` report to the station."""

    def __init__(self, current: LineInspector, version: Callable[[], Hashable], load: Callable[[], LineInspector], *,
                 check_every_s: float = CHECK_EVERY_S,
                 on_reload: Callable[[str | None, str | None], None] | None = None,
                 on_failure: Callable[[Exception], None] | None = None):
        self._current = current
        self._version_of, self._load = version, load
        self._seen = self._read_version()
        self.check_every_s = check_every_s
        self._on_reload, self._on_failure = on_reload, on_failure
        self._last_check = time.monotonic()
        self._lock = threading.Lock()
        self._loading: threading.Thread | None = None
        self._ready: LineInspector | None = None

    @property
    def mode(self) -> str:
        return self._current.mode

    @property
    def profile_version(self) -> str | None:
        return self._current.profile_version

    def predict_batch(self, images: Sequence[np.ndarray], names: Sequence[str] | None = None, *,
                      evidence: EvidenceFor = EvidenceFor.FAILS) -> list[InspectionResult]:
        self._poll()
        return self._current.predict_batch(images, names, evidence=evidence)

    def _poll(self) -> None:
        """Swap in a loaded new version, or start loading one when the file changed."""
        with self._lock:
            if self._ready is not None:
                old, self._current, self._ready = self._current, self._ready, None
                log.info("profile reloaded: version %s -> %s", old.profile_version, self._current.profile_version)
                if self._on_reload is not None:
                    self._on_reload(old.profile_version, self._current.profile_version)
                return
            now = time.monotonic()
            if self._loading is not None or now - self._last_check < self.check_every_s:
                return
            self._last_check = now
            version = self._read_version()
            if version is None or version == self._seen:
                return
            self._seen = version
            self._loading = threading.Thread(target=self._load_in_background, name="profile-reload", daemon=True)
            self._loading.start()

    def _read_version(self) -> Hashable | None:
        try:
            return self._version_of()
        except Exception:  # the file is being replaced or is gone for a moment: keep what runs
            return None

    def _load_in_background(self) -> None:
        try:
            loaded = self._load()
        except Exception as exc:
            log.exception("the changed profile could not be loaded; the station keeps version %s",
                          self._current.profile_version)
            if self._on_failure is not None:
                self._on_failure(exc)
            loaded = None
        with self._lock:
            self._ready = loaded
            self._loading = None
