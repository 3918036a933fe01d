"""Settings of a product's result sinks (MQTT, webhook, CSV), shared by the features that use them.

An engineer saves them per product in the UI (Settings page, validated here) and a line station
that has none in its own file takes them from there (``inspect_app.line``). Both features read
these models from this base module, so neither imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from inspect_app.errors import InspectAppError

SinkVerdict = Literal["PASS", "FAIL", "ERROR"]  # the verdict words (inspect_app.results.Verdict values)


class StrictSettings(BaseModel):
    """``extra="forbid"``: a misspelt key is an error instead of a silently ignored option."""

    model_config = ConfigDict(extra="forbid")


class MqttConfig(StrictSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = "inspect"
    client_id: str | None = None
    keepalive_s: int = Field(default=30, ge=5)
    max_queued: int = Field(default=10_000, ge=1, description="messages kept while the broker is unreachable")
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_address(cls, address: str) -> MqttConfig:
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "1883")
        if not host or not port.isdigit():
            raise InspectAppError(f"--mqtt {address!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
        return cls(host=host, port=int(port))


class WebhookConfig(StrictSettings):
    url: str
    verdicts: list[SinkVerdict] = ["PASS", "FAIL", "ERROR"]
    retries: int = Field(default=3, ge=0, description="attempts after the first one, with exponential backoff")
    backoff_s: float = Field(default=0.5, gt=0, description="wait before the first retry; doubles for each next one")
    timeout_s: float = Field(default=5.0, gt=0)
    queue_size: int = Field(default=1000, ge=1)
    dead_letter: Path = Path("data/line/webhook_dead_letter.jsonl")


class CsvConfig(StrictSettings):
    path: Path


SINK_SETTINGS: dict[str, type[StrictSettings]] = {"mqtt": MqttConfig, "webhook": WebhookConfig, "csv": CsvConfig}
"""The sinks a product's settings may name, by their key in the settings and the station file."""
