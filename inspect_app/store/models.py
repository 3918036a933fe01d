"""ORM tables of the results store. The schema itself is created by the Alembic migrations in
``migrations/versions``; these classes must match them (``tests/test_store.py`` checks it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, TypeDecorator, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC on both sides: SQLite keeps no zone, so values are stored as naive UTC
    and given ``tzinfo=UTC`` again when read. A naive value handed in is taken to be UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ResultRow(Base):
    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    station: Mapped[str] = mapped_column(String(128), nullable=False)
    product: Mapped[str | None] = mapped_column(String(64))
    profile_version: Mapped[str | None] = mapped_column(String(64))
    mode: Mapped[str | None] = mapped_column(String(32))
    lot: Mapped[str | None] = mapped_column(String(128))
    file: Mapped[str | None] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(String(8), nullable=False)
    score: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    raw_score: Mapped[float | None] = mapped_column(Float)
    regions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    timings_ms: Mapped[dict[str, float]] = mapped_column(JSON, nullable=False, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    explanation: Mapped[str | None] = mapped_column(Text)
    explanation_source: Mapped[str | None] = mapped_column(String(64))
    image_path: Mapped[str | None] = mapped_column(Text)
    overlay_path: Mapped[str | None] = mapped_column(Text)
    image_bytes: Mapped[int | None] = mapped_column(Integer)  # image + overlay on disk, for retention
    # The frame's identity at its station (folder: path, size, mtime; camera: boot id and sequence):
    # unique per station, so a result recorded again after a crash or a replay finds the first row.
    frame_key: Mapped[str | None] = mapped_column(String(512))
    # The line published this result on MQTT and the broker has not acknowledged it yet.
    publish_pending: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())

    feedback: Mapped[list[FeedbackRow]] = relationship(back_populates="result", order_by="FeedbackRow.id")

    __table_args__ = (
        Index("ix_results_product_time", "product", "time"),
        Index("ix_results_time", "time"),
        Index("ix_results_verdict", "verdict"),
        Index("ix_results_lot", "lot"),
        Index("ix_results_image_path", "image_path"),
        Index("uq_results_station_frame_key", "station", "frame_key", unique=True),
        Index("ix_results_publish_pending", "station", "publish_pending"),
    )


class FeedbackRow(Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    user: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    result: Mapped[ResultRow] = relationship(back_populates="feedback")


class UserRow(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    password_hash: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    user: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(128), nullable=False)
    detail: Mapped[Any] = mapped_column(JSON, nullable=True)


class SettingsRow(Base):
    __tablename__ = "settings"

    product: Mapped[str] = mapped_column(String(64), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    updated_by: Mapped[str] = mapped_column(String(128), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class StationStatusRow(Base):
    __tablename__ = "station_status"

    station: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class AlarmRow(Base):
    __tablename__ = "alarms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    station: Mapped[str] = mapped_column(String(128), nullable=False)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)


class StationLeaseRow(Base):
    """Which process runs a station name: one live holder, renewed by its heartbeat."""

    __tablename__ = "station_leases"

    station: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), nullable=False)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ApiTokenRow(Base):
    """An API token: only its SHA-256 is kept (the token is random, so a fast hash is enough)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str] = mapped_column(String(128), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
