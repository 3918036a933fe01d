"""Keeping a long-running station's resident memory flat on glibc (Linux).

The language model allocates differently sized buffers for every sentence on the explainer's
thread; glibc keeps freed memory in per-thread arenas instead of returning it, so RSS creeps for
minutes although nothing leaks (benchmarks/RESULTS.md, line soak; how it was narrowed down:
benchmarks/NOTEBOOK.md, 2026-11-25). Two remedies, both no-ops
where glibc is absent: cap the number of arenas before threads start (``MALLOC_ARENA_MAX`` in the
environment does the same), and hand free pages back to the system now and then.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc malloc.h
ARENAS = 2
TRIM_EVERY_S = 30.0  # malloc_trim walks every arena: cheap, but not for every frame


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Limit glibc to ``arenas`` malloc arenas; threads started later share them. Call it before
    the model and the station's threads start; True when glibc accepted it."""
    libc = _libc()
    ok = bool(libc and libc.mallopt(M_ARENA_MAX, arenas) == 1)
    log.debug("malloc arenas capped at %d: %s", arenas, ok)
    return ok


def release_free_memory() -> bool:
    """Return free heap pages of every arena to the system; True when some were released."""
    libc = _libc()
    return bool(libc and libc.malloc_trim(0))
