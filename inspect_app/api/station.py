"""What the API calls on an attached line station. ``inspect_app.line.Station`` is one; the API
never imports the line (``cli`` hands the running station to ``create_app``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry


class ServedStation(Protocol):
    @property
    def metrics_registry(self) -> CollectorRegistry:
        """The station's Prometheus metrics, served at ``/metrics`` beside the API's own."""
        ...

    def trigger(self) -> Mapping[str, Any]:
        """An external trigger: ``{"accepted": bool, "reason": str | None, ...}``."""
        ...

    def push(self, data: bytes, name: str | None = None) -> Mapping[str, Any]:
        """One pushed image (one part): ``{"accepted": bool, "reason": str | None, ...}``."""
        ...

    def status(self) -> Mapping[str, Any]:
        """The station's JSON status (shown in ``/health``)."""
        ...
