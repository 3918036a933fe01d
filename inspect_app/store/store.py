"""``ResultsStore``: every inspection result, operator feedback, users, audit log, settings,
station heartbeats and alarms in one SQL database (SQLite in WAL mode by default, PostgreSQL
by URL). The schema is created or upgraded with Alembic whenever a store is opened.

Thread-safe: one engine, one short session per call. ``add_result`` commits the row before it
returns; the frame and overlay PNGs are written afterwards on a background thread.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time as _time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from sqlalchemy import Engine, create_engine, event, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from inspect_app.errors import InspectAppError
from inspect_app.store.images import ImageJob, ImageWriter, RetentionPolicy
from inspect_app.store.models import (
    AlarmRow,
    AuditRow,
    FeedbackRow,
    ResultRow,
    SettingsRow,
    StationStatusRow,
    UserRow,
    utc_now,
)

if TYPE_CHECKING:
    from inspect_app.results import InspectionResult

DEFAULT_STORE_DIR = Path("data/store")
FEEDBACK_KINDS = ("false_reject", "missed_defect", "confirmed")
ROLES = ("engineer", "operator")
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
# One alarm of a kind per station per this many seconds; repeats are counted into the next one.
ALARM_REPEAT_S = 60.0
MIGRATIONS = Path(__file__).with_name("migrations")


class StoreError(InspectAppError):
    """The results store cannot be opened or a request to it is invalid."""


def default_store_url() -> str:
    """``$INSPECT_APP_STORE_URL``, else SQLite at ``./data/store/results.db``."""
    return os.environ.get("INSPECT_APP_STORE_URL") or f"sqlite:///{DEFAULT_STORE_DIR / 'results.db'}"


def _normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean the installed psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return repr(url.split("@")[-1])


@dataclass
class StoredResult:
    id: int
    time: datetime
    station: str
    product: str | None
    profile_version: str | None
    lot: str | None
    file: str | None
    verdict: str
    score: float | None
    threshold: float | None
    raw_score: float | None
    regions: list[dict]
    error: str | None
    explanation: str | None
    explanation_source: str | None
    image_path: str | None
    overlay_path: str | None
    feedback: list[dict] = field(default_factory=list)
    mode: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["time"] = self.time.isoformat()
        for item in out["feedback"]:
            item["time"] = item["time"].isoformat()
        return out


@dataclass
class User:
    name: str
    role: str  # "engineer" or "operator"
    created: datetime
    has_password: bool


def _feedback_dict(row: FeedbackRow) -> dict:
    return {"id": row.id, "result_id": row.result_id, "kind": row.kind, "note": row.note, "user": row.user,
            "time": row.time}


def _stored(row: ResultRow) -> StoredResult:
    return StoredResult(
        id=row.id, time=row.time, station=row.station, product=row.product, profile_version=row.profile_version,
        lot=row.lot, file=row.file, verdict=row.verdict, score=row.score, threshold=row.threshold,
        raw_score=row.raw_score, regions=list(row.regions or []), error=row.error, explanation=row.explanation,
        explanation_source=row.explanation_source, image_path=row.image_path, overlay_path=row.overlay_path,
        feedback=[_feedback_dict(f) for f in row.feedback], mode=row.mode, timings_ms=dict(row.timings_ms or {}))


def _user(row: UserRow) -> User:
    return User(row.name, row.role, row.created, row.password_hash is not None)


def _set_sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (UI, reports) never block the line's writes; NORMAL sync is durable in WAL
    # mode except for the last commits on power loss, and keeps a commit well under a millisecond.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StoreError("the results store needs a database file (sqlite:///path/results.db), not an "
                             "in-memory SQLite database")
        try:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder for the results database {parsed.database}: {exc}") from None
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(connection):
    """Alembic configuration for the packaged migrations, running on ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def _upgrade_schema(engine: Engine) -> None:
    from alembic import command

    for attempt in range(2):  # two processes creating a new database at once: the loser retries
        try:
            with engine.begin() as connection:
                command.upgrade(alembic_config(connection), "head")
            return
        except (OperationalError, IntegrityError):
            if attempt:
                raise


class ResultsStore:
    """See module docstring. ``images_dir`` defaults to ``images/`` beside a SQLite file, else
    ``./data/store/images``."""

    def __init__(self, url: str | None = None, images_dir: str | Path | None = None,
                 retention: RetentionPolicy | None = None):
        self.url = _normalise_url(url or default_store_url())
        try:
            self.engine = _create_engine(self.url)
            _upgrade_schema(self.engine)
        except StoreError:
            raise
        except Exception as exc:
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
            raise StoreError(f"cannot open the results store {_safe_url(self.url)}: {reason}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.retention = retention or RetentionPolicy()
        if images_dir is None:
            parsed = make_url(self.url)
            base = Path(parsed.database).parent if parsed.get_backend_name() == "sqlite" else DEFAULT_STORE_DIR
            images_dir = base / "images"
        self.images_dir = Path(images_dir)
        self._images = ImageWriter(self.images_dir, self._images_written)
        self._pass_counter = itertools.count()
        self._disk_lock = threading.Lock()
        self._disk_usage: tuple[int, int] | None = None  # (files, bytes) of result images, lazily read
        self._alarm_lock = threading.Lock()
        self._alarm_last: dict[tuple[str, str], tuple[float, int]] = {}
        self._closed = False

    # ------------------------------------------------------------------ plumbing
    def _session(self) -> Session:
        if self._closed:
            raise StoreError("the results store is closed")
        return self._sessions()

    @property
    def display_url(self) -> str:
        """The database URL with the password hidden (for logs and pages)."""
        return _safe_url(self.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def ping(self) -> bool:
        """True when the database answers (for health checks)."""
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except SQLAlchemyError:
            return False

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for pending image writes; False if ``timeout`` ran out first."""
        return self._images.flush(timeout)

    def close(self) -> None:
        """Finish pending image writes and release the database connections."""
        if self._closed:
            return
        self._images.close()
        self._closed = True
        self.engine.dispose()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ results
    def add_result(self, result: InspectionResult, *, station: str = "local", lot: str | None = None,
                   image: np.ndarray | None = None, time: datetime | None = None) -> int:
        """Store one result and return its id. The row is committed before this returns; the frame
        (``image``, else the file ``result.file``) and its overlay are written in the background for
        every FAIL and every Nth PASS (``RetentionPolicy``). ``image`` is kept by reference until
        written: do not modify it in place afterwards."""
        when = time or utc_now()
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        row = ResultRow(
            time=when, station=station, product=result.product, profile_version=result.profile_version,
            mode=result.mode, lot=lot, file=result.file, verdict=result.verdict, score=result.score,
            threshold=result.threshold, raw_score=result.raw_score, regions=[r.to_dict() for r in result.regions],
            timings_ms=dict(result.timings_ms), error=result.error, explanation=result.explanation,
            explanation_source=result.explanation_source)
        with self._session() as session, session.begin():
            session.add(row)
        if self._wants_images(result, image):
            self._images.submit(ImageJob(row.id, result, image, when))
        return row.id

    def _wants_images(self, result: InspectionResult, image: np.ndarray | None) -> bool:
        if result.verdict == "ERROR" or (image is None and not result.file):
            return False
        if result.verdict == "FAIL":
            return True
        nth = self.retention.keep_every_nth_pass
        return nth > 0 and next(self._pass_counter) % nth == 0

    def _images_written(self, rid: int, paths: tuple[str, str, int] | None, error: str | None) -> None:
        if paths is None:
            self.raise_alarm("image_write_failed", f"result {rid}: images not saved under {self.images_dir} "
                                                   f"({error}); the result row is stored without them")
            return
        image_path, overlay_path, size = paths
        with self._session() as session, session.begin():
            session.execute(update(ResultRow).where(ResultRow.id == rid).values(
                image_path=image_path, overlay_path=overlay_path, image_bytes=size))
        with self._disk_lock:
            if self._disk_usage is not None:
                files, total = self._disk_usage
                self._disk_usage = (files + 2, total + size)
            self._enforce_retention()

    def _enforce_retention(self) -> None:
        """Drop the images of the oldest results until the budget holds (called under _disk_lock)."""
        policy = self.retention
        if self._disk_usage is None or self._disk_usage[0] > policy.max_files or self._disk_usage[1] > policy.max_bytes:
            with self._session() as session:  # authoritative figures, also counting other processes
                files, total = session.execute(select(func.count(ResultRow.id) * 2, func.coalesce(
                    func.sum(ResultRow.image_bytes), 0)).where(ResultRow.image_path.is_not(None))).one()
            self._disk_usage = (int(files), int(total))
        while self._disk_usage[0] > policy.max_files or self._disk_usage[1] > policy.max_bytes:
            with self._session() as session, session.begin():
                rows = session.execute(
                    select(ResultRow.id, ResultRow.image_path, ResultRow.overlay_path, ResultRow.image_bytes)
                    .where(ResultRow.image_path.is_not(None)).order_by(ResultRow.id).limit(50)).all()
                if not rows:
                    self._disk_usage = (0, 0)
                    return
                files, total = self._disk_usage
                pruned = []
                for rid, image_path, overlay_path, size in rows:
                    if files <= policy.max_files and total <= policy.max_bytes:
                        break
                    for path in (image_path, overlay_path):
                        if path:
                            Path(path).unlink(missing_ok=True)
                    try:  # the day's folder, once its last image is gone
                        Path(image_path).parent.rmdir()
                    except OSError:
                        pass
                    files, total = files - 2, total - (size or 0)
                    pruned.append(rid)
                session.execute(update(ResultRow).where(ResultRow.id.in_(pruned)).values(
                    image_path=None, overlay_path=None, image_bytes=None))
            self._disk_usage = (files, total)

    def set_explanation(self, rid: int, text: str, source: str) -> None:
        with self._session() as session, session.begin():
            done = session.execute(update(ResultRow).where(ResultRow.id == rid).values(
                explanation=text, explanation_source=source)).rowcount
        if not done:
            raise StoreError(f"no stored result with id {rid}")

    def get(self, rid: int) -> StoredResult | None:
        with self._session() as session:
            row = session.get(ResultRow, rid, options=[selectinload(ResultRow.feedback)])
            return _stored(row) if row is not None else None

    @staticmethod
    def _filtered(stmt, product=None, verdict=None, since=None, until=None, lot=None, station=None):
        if product is not None:
            stmt = stmt.where(ResultRow.product == product)
        if verdict is not None:
            verdicts = [verdict] if isinstance(verdict, str) else list(verdict)
            stmt = stmt.where(ResultRow.verdict.in_([v.upper() for v in verdicts]))
        if since is not None:
            stmt = stmt.where(ResultRow.time >= since)
        if until is not None:
            stmt = stmt.where(ResultRow.time < until)
        if lot is not None:
            stmt = stmt.where(ResultRow.lot == lot)
        if station is not None:
            stmt = stmt.where(ResultRow.station == station)
        return stmt

    def query(self, product: str | None = None, verdict: str | Sequence[str] | None = None,
              since: datetime | None = None, until: datetime | None = None, lot: str | None = None,
              station: str | None = None, limit: int = 1000, offset: int = 0,
              newest_first: bool = True) -> list[StoredResult]:
        """Results matching every given filter (``since`` inclusive, ``until`` exclusive; naive
        datetimes are taken as UTC), with their feedback."""
        order = (ResultRow.time.desc(), ResultRow.id.desc()) if newest_first else (ResultRow.time, ResultRow.id)
        stmt = self._filtered(select(ResultRow), product, verdict, since, until, lot, station)
        stmt = stmt.options(selectinload(ResultRow.feedback)).order_by(*order).limit(max(0, limit)).offset(max(0, offset))
        with self._session() as session:
            return [_stored(row) for row in session.scalars(stmt)]

    def iter_results(self, batch_size: int = 1000, **filters) -> Iterator[StoredResult]:
        """All matching results, oldest first, fetched in batches (for exports of any size)."""
        offset = 0
        while True:
            batch = self.query(**filters, limit=batch_size, offset=offset, newest_first=False)
            yield from batch
            if len(batch) < batch_size:
                return
            offset += batch_size

    def count(self, product: str | None = None, verdict: str | Sequence[str] | None = None,
              since: datetime | None = None, until: datetime | None = None, lot: str | None = None,
              station: str | None = None) -> int:
        stmt = self._filtered(select(func.count(ResultRow.id)), product, verdict, since, until, lot, station)
        with self._session() as session:
            return int(session.execute(stmt).scalar_one())

    def products(self) -> list[str]:
        """Products that have stored results."""
        with self._session() as session:
            return sorted(p for p in session.scalars(select(ResultRow.product).distinct()) if p)

    # ------------------------------------------------------------------ feedback
    def add_feedback(self, rid: int, kind: Literal["false_reject", "missed_defect", "confirmed"],
                     note: str = "", user: str = "") -> None:
        if kind not in FEEDBACK_KINDS:
            raise StoreError(f"unknown feedback kind {kind!r}: choose one of {', '.join(FEEDBACK_KINDS)}")
        with self._session() as session, session.begin():
            if session.get(ResultRow, rid) is None:
                raise StoreError(f"no stored result with id {rid}")
            session.add(FeedbackRow(result_id=rid, kind=kind, note=note or "", user=user or "", time=utc_now()))

    def feedback(self, product: str | None = None) -> list[dict]:
        """Every feedback entry with the facts of its result, oldest first (for CSV/JSON export)."""
        stmt = select(FeedbackRow, ResultRow).join(ResultRow, FeedbackRow.result_id == ResultRow.id)
        if product is not None:
            stmt = stmt.where(ResultRow.product == product)
        with self._session() as session:
            return [{**_feedback_dict(fb), "product": res.product, "station": res.station, "lot": res.lot,
                     "file": res.file, "verdict": res.verdict, "score": res.score, "result_time": res.time,
                     "image_path": res.image_path, "overlay_path": res.overlay_path}
                    for fb, res in session.execute(stmt.order_by(FeedbackRow.id))]

    # ------------------------------------------------------------------ stations and alarms
    def update_station_status(self, station: str, status: dict) -> None:
        """Heartbeat: replace the station's status (a JSON-serialisable dict)."""
        for attempt in range(2):  # two writers creating the same station row: the loser updates
            try:
                with self._session() as session, session.begin():
                    session.merge(StationStatusRow(station=station, status=dict(status), updated_at=utc_now()))
                return
            except IntegrityError:
                if attempt:
                    raise

    def station_status(self, station: str | None = None) -> list[dict]:
        stmt = select(StationStatusRow).order_by(StationStatusRow.station)
        if station is not None:
            stmt = stmt.where(StationStatusRow.station == station)
        with self._session() as session:
            return [{**row.status, "station": row.station, "updated_at": row.updated_at}
                    for row in session.scalars(stmt)]

    def raise_alarm(self, kind: str, message: str, station: str = "local") -> None:
        """Record an alarm. The same kind from the same station is recorded at most once a minute;
        the next one says how many repeats were folded into it."""
        now = _time.monotonic()
        with self._alarm_lock:
            last, suppressed = self._alarm_last.get((station, kind), (-ALARM_REPEAT_S, 0))
            if now - last < ALARM_REPEAT_S:
                self._alarm_last[(station, kind)] = (last, suppressed + 1)
                return
            self._alarm_last[(station, kind)] = (now, 0)
        if suppressed:
            message += f" ({suppressed} similar alarm(s) in the previous minute not recorded separately)"
        with self._session() as session, session.begin():
            session.add(AlarmRow(time=utc_now(), station=station, kind=kind, message=message))

    def alarms(self, since: datetime | None = None, limit: int = 200) -> list[dict]:
        """Newest first."""
        stmt = select(AlarmRow).order_by(AlarmRow.time.desc(), AlarmRow.id.desc()).limit(limit)
        if since is not None:
            stmt = stmt.where(AlarmRow.time >= since)
        with self._session() as session:
            return [{"id": a.id, "time": a.time, "station": a.station, "kind": a.kind, "message": a.message}
                    for a in session.scalars(stmt)]

    # ------------------------------------------------------------------ users and audit
    def add_user(self, name: str, role: Literal["engineer", "operator"], password: str | None,
                 by: str = "") -> None:
        """Create a user (argon2 password hash). Engineers need a password; operators may have
        none. Recorded in the audit log as ``user.add`` by ``by``."""
        from argon2 import PasswordHasher

        if not USER_NAME.match(name or ""):
            raise StoreError(f"invalid user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
        if role not in ROLES:
            raise StoreError(f"unknown role {role!r}: choose engineer or operator")
        if role == "engineer" and not password:
            raise StoreError("an engineer needs a password")
        hashed = PasswordHasher().hash(password) if password else None
        try:
            with self._session() as session, session.begin():
                session.add(UserRow(name=name, role=role, password_hash=hashed, created=utc_now()))
                session.flush()
                session.add(AuditRow(time=utc_now(), user=by, action="user.add", detail={"name": name, "role": role}))
        except IntegrityError:
            raise StoreError(f"user {name!r} already exists") from None

    def verify_user(self, name: str, password: str | None) -> User | None:
        """The user when the password matches (or the user has none and none is given), else None."""
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError

        with self._session() as session:
            row = session.get(UserRow, name)
        if row is None:
            return None
        if row.password_hash is None:
            return _user(row) if not password else None
        try:
            PasswordHasher().verify(row.password_hash, password or "")
        except (VerificationError, InvalidHashError):
            return None
        return _user(row)

    def users(self) -> list[User]:
        with self._session() as session:
            return [_user(row) for row in session.scalars(select(UserRow).order_by(UserRow.name))]

    def audit(self, user: str, action: str, detail: dict | str = "") -> None:
        with self._session() as session, session.begin():
            session.add(AuditRow(time=utc_now(), user=user or "", action=action, detail=detail))

    def audit_log(self, limit: int = 200) -> list[dict]:
        """Newest first."""
        stmt = select(AuditRow).order_by(AuditRow.time.desc(), AuditRow.id.desc()).limit(limit)
        with self._session() as session:
            return [{"id": a.id, "time": a.time, "user": a.user, "action": a.action, "detail": a.detail}
                    for a in session.scalars(stmt)]

    # ------------------------------------------------------------------ settings
    def get_settings(self, product: str) -> dict:
        """The product's saved settings ({} when none were saved)."""
        with self._session() as session:
            row = session.get(SettingsRow, product)
            return dict(row.settings) if row is not None else {}

    def set_settings(self, product: str, settings: dict, user: str) -> None:
        """Replace the product's settings; recorded in the audit log as ``settings.update``."""
        with self._session() as session, session.begin():
            previous = session.get(SettingsRow, product)
            before = dict(previous.settings) if previous is not None else {}
            session.merge(SettingsRow(product=product, settings=dict(settings), updated_by=user or "",
                                      updated_at=utc_now()))
            session.add(AuditRow(time=utc_now(), user=user or "", action="settings.update",
                                 detail={"product": product, "before": before, "after": dict(settings)}))
