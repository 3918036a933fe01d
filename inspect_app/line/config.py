"""Station settings: one pydantic model, loaded from a YAML file or built from CLI flags.

Every setting has a default that suits a small line, so a station needs only a product and a
source. ``extra="forbid"`` makes a misspelt key an error instead of a silently ignored option.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from inspect_app.config import Mode
from inspect_app.edge.sessions import Runtime
from inspect_app.errors import InspectAppError
from inspect_app.product_settings import CsvConfig, MqttConfig, StrictSettings, WebhookConfig

SourceKind = Literal["device", "stream", "video", "folder", "push"]
TriggerMode = Literal["continuous", "external", "part-present"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SourceConfig(StrictSettings):
    """Where frames come from. ``uri`` alone is enough: its form picks the kind (see ``resolve_kind``)."""

    uri: str = "push"
    kind: Literal["auto", "device", "stream", "video", "folder", "push"] = "auto"
    fps: float | None = Field(default=None, gt=0, description="video replay pace (default: the file's own rate)")
    loop: bool = False  # replay a video file forever
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=10.0, gt=0)
    read_timeout_s: float = Field(default=5.0, gt=0, description="no frame for this long = camera lost")
    settle_s: float = Field(default=0.5, ge=0, description="watched folder: a file unchanged this long is complete")
    done_dir: Path | None = Field(default=None, description="watched folder: move each file here once its result "
                                  "is committed (default: leave it; a restart skips recorded files either way)")
    incomplete_s: float = Field(default=30.0, gt=0, description="watched folder: a file still empty or still "
                                "changing after this long becomes an ERROR result saying so")
    drain: bool = Field(default=False, description="watched folder: stop (exit 0) once every file present or "
                        "arriving meanwhile has its result")
    poll_s: float = Field(default=0.1, gt=0)
    push_queue: int = Field(default=32, ge=1, description="pushed images waiting for inspection")

    def resolve_kind(self) -> SourceKind:
        """integer -> device; rtsp:// and http(s):// -> stream (OpenCV: RTSP, MJPEG, a snapshot URL);
        "push" -> pushed images; an existing folder -> watched folder; anything else -> video file."""
        if self.kind != "auto":
            return self.kind
        uri = self.uri.strip()
        if uri.isdigit():
            return "device"
        if uri.lower().startswith(("rtsp://", "rtsps://", "http://", "https://")):
            return "stream"
        if uri == "push":
            return "push"
        if Path(uri).is_dir():
            return "folder"
        return "video"


class TriggerConfig(StrictSettings):
    """Which frames become inspections (streaming sources; every folder file or pushed image is a part)."""

    mode: TriggerMode = "continuous"
    fps: float | None = Field(default=None, gt=0,
                              description="continuous: at most this many inspections/s (default: every frame)")
    timeout_s: float = Field(default=2.0, gt=0,
                             description="external: a trigger with no frame by then is rejected with an alarm")
    reference: Path | None = Field(default=None,
                                   description="part-present: image of the empty belt (default: learned at start)")
    reference_frames: int = Field(default=5, ge=1,
                                  description="part-present: frames averaged into the learned reference")
    pixel_threshold: float = Field(default=25.0, gt=0,
                                   description="grey-level change (0-255) that makes a pixel count as changed")
    present_fraction: float = Field(default=0.02, gt=0, lt=1,
                                    description="share of the view changed from the empty belt meaning 'part present'")
    still_fraction: float = Field(default=0.005, ge=0, lt=1,
                                  description="share of the view changed since the last frame still counted as 'still'")
    still_frames: int = Field(default=2, ge=1, description="consecutive still frames before the part is inspected")
    empty_frames: int = Field(default=2, ge=1, description="consecutive empty frames before the next part can arrive")


class PipelineConfig(StrictSettings):
    queue_size: int = Field(default=16, ge=1, description="frames waiting for inspection")
    batch_size: int = Field(default=4, ge=1, description="at most this many queued frames are inspected together")
    backpressure_s: float = Field(default=5.0, ge=0, description="a triggered part waits this long for queue space, "
                                  "then is rejected with an alarm")
    shutdown_timeout_s: float = Field(default=3.0, gt=0, description="how long stop() inspects what is queued and "
                                      "delivers results (Docker's grace is 10 s); queued files not inspected by then "
                                      "stay in the folder for the next start")
    heartbeat_s: float = Field(default=2.0, gt=0)
    profile_check_s: float = Field(default=2.0, ge=0, description="how often the running station looks for a new "
                                   "profile version (a refit, a moved threshold, learnt false rejects) and swaps it "
                                   "in without a restart; 0: never")


class StoreConfig(StrictSettings):
    url: str | None = None  # default: $INSPECT_APP_STORE_URL, else the SQLite file under ./data/store
    images_dir: Path | None = None
    spool: Path | None = Field(default=None, description="local SQLite file that keeps results while the store is "
                               "unreachable, replayed in order when it is back (default: data/spool/<station>.db)")


class ExplainConfig(StrictSettings):
    enabled: bool = True
    language: str = "en"
    variant: Literal["adapter", "facts", "template"] | None = Field(
        default=None, description="adapter (trained soft tokens), facts (language model on the facts), template; "
                                  "default: the explainer's")
    timeout_s: float = Field(default=10.0, gt=0)
    max_queue: int = Field(default=8, ge=1)


class StationConfig(StrictSettings):
    """One inspection station: a camera, a product, how parts are triggered, where results go."""

    name: str = "station1"
    product: str
    models_dir: Path | None = None
    model_dir: Path | None = None  # an exported model (inspect-app export) instead of the product's profile
    runtime: Runtime | None = None  # torch, openvino or onnx (default: the fastest that agrees with torch)
    mode: Mode | None = None  # decoder mode (default: the profile's)
    lot: str | None = None
    source: SourceConfig = Field(default_factory=SourceConfig)
    trigger: TriggerConfig = Field(default_factory=TriggerConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    mqtt: MqttConfig | None = None
    webhook: WebhookConfig | None = None
    csv: CsvConfig | None = None
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    api_port: int | None = Field(default=None, ge=1, le=65535, description="also serve the REST API (trigger, metrics)")
    api_host: str = Field(default="127.0.0.1", description="0.0.0.0 to accept calls from the line network")
    max_frames: int | None = Field(default=None, ge=1, description="stop after this many results are stored")

    @model_validator(mode="after")
    def _drain_needs_a_folder(self) -> StationConfig:
        if self.source.drain and self.source.resolve_kind() != "folder":
            raise ValueError(f"source.drain needs a watched folder, not a {self.source.resolve_kind()} source")
        return self

    @field_validator("name")
    @classmethod
    def _topic_safe(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '_', '-' or '.' (it is part of MQTT topics)")
        return value


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def parse_station_config(data: dict, origin: str = "station config") -> StationConfig:
    try:
        return StationConfig.model_validate(data)
    except ValidationError as exc:
        raise InspectAppError(f"{origin}: {_validation_message(exc)}") from None


def load_station_config(path: str | Path) -> StationConfig:
    """Read a station YAML file; a missing file, bad YAML or a wrong key is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise InspectAppError(f"station config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InspectAppError(f"station config {path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise InspectAppError(f"station config {path}: expected a mapping of settings at the top level")
    return parse_station_config(data, str(path))
