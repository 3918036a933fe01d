"""What the line station tests share: waiting on a condition, a station config for the loopback
camera and broker, and JPEG frames with a defect every few parts."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from inspect_app.line import StationConfig, parse_station_config
from inspect_app.line.testing import Mosquitto, encode_jpeg

from conftest import ImageFactory

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def station_config(uri: str, broker: Mosquitto | None = None, **overrides) -> StationConfig:
    data = {"name": "t1", "product": "gradient",
            "source": {"uri": uri, "reconnect_initial_s": 0.1, "reconnect_max_s": 0.5, "read_timeout_s": 2,
                       "settle_s": 0.1, "poll_s": 0.02},
            "pipeline": {"heartbeat_s": 0.3, "queue_size": 64, "shutdown_timeout_s": 30},
            "explain": {"enabled": False},
            "store": {"spool": str(Path(tempfile.mkdtemp(prefix="spool-")) / "spool.db")}}
    if broker is not None:
        data["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return parse_station_config(data)


def jpeg_frames(n: int, seed: int = 0, defective_every: int = 4) -> list[bytes]:
    images = ImageFactory(seed=seed)
    return [encode_jpeg(images.defective(64, 64, radius=12) if i % defective_every == defective_every - 1
                        else images.good()) for i in range(n)]


def bearer(store, role: str = "admin") -> dict[str, str]:
    """The header of a new API token with ``role`` in ``store``."""
    import uuid

    return {"Authorization": f"Bearer {store.add_token(f'{role}-{uuid.uuid4().hex[:8]}', role)}"}
