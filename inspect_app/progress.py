"""How long work reports its progress: one callback type for every stage of every job."""

from __future__ import annotations

from typing import Protocol


class ProgressCallback(Protocol):
    """Called as work advances: ``done`` of ``total`` units of the named ``stage``."""

    def __call__(self, done: int, total: int, stage: str, /) -> None: ...
