"""``ResultsStore``: every inspection result, operator feedback, users, audit log, settings,
station heartbeats and alarms in one SQL database (SQLite in WAL mode by default, PostgreSQL
by URL), and the result images on disk. The schema is created or upgraded with Alembic whenever
a store is opened.

The store is built from one part per job, each in its own module and each given the same
``Database`` (engine and session factory):

- ``ResultLog`` (results.py): results and feedback; ``ImageRetention`` (images.py): which images
  are written and the disk budget; ``StationMonitor`` (stations.py): heartbeats and alarms;
  ``UserAccounts`` (accounts.py): users and argon2 passwords; ``AuditTrail`` and
  ``ProductSettings`` (audit.py); ``StationLeases`` (leases.py): one live station per name;
``ApiTokens`` (tokens.py): hashed API tokens; ``Database`` (database.py): engine, schema, sessions.

Composition rather than mixins: every part states what it depends on in its constructor (the
image writer reports failures through the alarm log, accounts and settings write the audit log),
can be built and tested alone, and holds its own state (pass counter, disk usage, alarm window),
so no part reads another's attributes. ``ResultsStore`` is the one object callers open; it only
wires the parts and forwards, so its methods below are the store's whole public API.

Thread-safe: one engine, one short session per call. ``add_result`` commits the row before it
returns; the frame and overlay PNGs are written afterwards on a background thread.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

import numpy as np
from sqlalchemy import Engine

from inspect_app.results import InspectionResult
from inspect_app.store.accounts import UserAccounts
from inspect_app.store.audit import AuditTrail, ProductSettings
from inspect_app.store.database import Database
from inspect_app.store.images import ImageRetention, RetentionPolicy
from inspect_app.store.leases import StationLeases
from inspect_app.store.records import (
    API_ROLE_OF_USER,
    AlarmEntry,
    ApiRole,
    ApiToken,
    AuditEntry,
    FeedbackExport,
    FeedbackKind,
    ImageUsage,
    ResultFilter,
    Role,
    StationStatus,
    StoredResult,
    User,
)
from inspect_app.store.results import ResultLog
from inspect_app.store.stations import StationMonitor
from inspect_app.store.tokens import ApiClient, ApiTokens


class ResultsStore:
    """See module docstring. ``images_dir`` defaults to ``images/`` beside a SQLite file, else
    ``./data/store/images``."""

    def __init__(self, url: str | None = None, images_dir: str | Path | None = None,
                 retention: RetentionPolicy | None = None):
        self.database = Database(url)
        self.stations = StationMonitor(self.database)
        self.images = ImageRetention(self.database, Path(images_dir or self.database.default_images_dir()),
                                     retention or RetentionPolicy(), self.stations.raise_alarm)
        self.results = ResultLog(self.database, self.images)
        self.accounts = UserAccounts(self.database)
        self.audit_trail = AuditTrail(self.database)
        self.settings = ProductSettings(self.database)
        self.leases = StationLeases(self.database)
        self.api_tokens = ApiTokens(self.database)

    # ------------------------------------------------------------------ database
    @property
    def url(self) -> str:
        return self.database.url

    @property
    def engine(self) -> Engine:
        return self.database.engine

    @property
    def display_url(self) -> str:
        """The database URL with the password hidden (for logs and pages)."""
        return self.database.display_url

    @property
    def dialect(self) -> str:
        return self.database.dialect

    @property
    def images_dir(self) -> Path:
        return self.images.images_dir

    def ping(self) -> bool:
        """True when the database answers (for health checks)."""
        return self.database.ping()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for pending image writes; False if ``timeout`` ran out first."""
        return self.images.flush(timeout)

    def close(self, images_timeout: float | None = None) -> None:
        """Finish pending image writes (with ``images_timeout``: those not started by then are
        dropped, their rows kept) and release the database connections."""
        if self.database.closed:
            return
        self.images.close(images_timeout)
        self.database.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ results and feedback (ResultLog)
    def add_result(self, result: InspectionResult, *, station: str = "local", lot: str | None = None,
                   image: np.ndarray | None = None, time: datetime | None = None, frame_key: str | None = None,
                   publish_pending: bool = False) -> int:
        """Store one result (once per ``frame_key``) and return its id; images follow in the
        background (``ResultLog.add_result``)."""
        return self.results.add_result(result, station=station, lot=lot, image=image, time=time,
                                       frame_key=frame_key, publish_pending=publish_pending)

    def find_frame(self, station: str, frame_key: str) -> int | None:
        return self.results.find_frame(station, frame_key)

    def mark_published(self, rids: Collection[int]) -> None:
        self.results.mark_published(rids)

    def pending_publication(self, station: str, limit: int = 1000) -> list[StoredResult]:
        return self.results.pending_publication(station, limit)

    def image_usage(self) -> ImageUsage:
        """Result images on disk against the quota, and evictions by verdict."""
        return self.images.usage()

    def set_explanation(self, rid: int, text: str, source: str) -> None:
        self.results.set_explanation(rid, text, source)

    def get(self, rid: int) -> StoredResult | None:
        return self.results.get(rid)

    def query(self, *, limit: int = 1000, offset: int = 0, newest_first: bool = True,
              **filters: Unpack[ResultFilter]) -> list[StoredResult]:
        return self.results.query(limit=limit, offset=offset, newest_first=newest_first, **filters)

    def iter_results(self, batch_size: int = 1000, **filters: Unpack[ResultFilter]) -> Iterator[StoredResult]:
        return self.results.iter_results(batch_size, **filters)

    def count(self, **filters: Unpack[ResultFilter]) -> int:
        return self.results.count(**filters)

    def products(self) -> list[str]:
        return self.results.products()

    def add_feedback(self, rid: int, kind: FeedbackKind, note: str = "", user: str = "") -> None:
        self.results.add_feedback(rid, kind, note, user)

    def feedback(self, product: str | None = None) -> list[FeedbackExport]:
        return self.results.feedback(product)

    # ------------------------------------------------------------------ stations and alarms (StationMonitor)
    def update_station_status(self, station: str, status: Mapping[str, Any]) -> None:
        self.stations.update_station_status(station, status)

    def station_status(self, station: str | None = None) -> list[StationStatus]:
        return self.stations.station_status(station)

    def raise_alarm(self, kind: str, message: str, station: str = "local") -> None:
        self.stations.raise_alarm(kind, message, station)

    def alarms(self, since: datetime | None = None, limit: int = 200) -> list[AlarmEntry]:
        return self.stations.alarms(since, limit)

    # ------------------------------------------------------------------ station names (StationLeases)
    def claim_station(self, station: str, owner: str, stale_after_s: float) -> None:
        self.leases.claim_station(station, owner, stale_after_s)

    def renew_station(self, station: str, owner: str) -> bool:
        return self.leases.renew_station(station, owner)

    def release_station(self, station: str, owner: str) -> None:
        self.leases.release_station(station, owner)

    # ------------------------------------------------------------------ API tokens (ApiTokens)
    def add_token(self, name: str, role: ApiRole, by: str = "") -> str:
        return self.api_tokens.add_token(name, role, by)

    def tokens(self) -> list[ApiToken]:
        return self.api_tokens.tokens()

    def revoke_token(self, name: str, by: str = "") -> None:
        self.api_tokens.revoke_token(name, by)

    def verify_token(self, token: str) -> ApiClient | None:
        return self.api_tokens.verify_token(token)

    def api_role_of_user(self, name: str) -> ApiRole | None:
        """The API role of a UI user (engineer: admin, operator: viewer), None for no such user:
        the UI and the API share one set of users and roles."""
        user = next((u for u in self.users() if u.name == name), None)
        return None if user is None else API_ROLE_OF_USER[user.role]

    # ------------------------------------------------------------------ users (UserAccounts)
    def add_user(self, name: str, role: Role, password: str | None, by: str = "") -> None:
        self.accounts.add_user(name, role, password, by)

    def verify_user(self, name: str, password: str | None) -> User | None:
        return self.accounts.verify_user(name, password)

    def users(self) -> list[User]:
        return self.accounts.users()

    # ------------------------------------------------------------------ audit and settings (audit.py)
    def audit(self, user: str, action: str, detail: dict[str, Any] | str = "") -> None:
        self.audit_trail.audit(user, action, detail)

    def audit_log(self, limit: int = 200) -> list[AuditEntry]:
        return self.audit_trail.audit_log(limit)

    def get_settings(self, product: str) -> dict[str, Any]:
        return self.settings.get_settings(product)

    def set_settings(self, product: str, settings: Mapping[str, Any], user: str) -> None:
        self.settings.set_settings(product, settings, user)


if TYPE_CHECKING:  # mypy proves that the store satisfies every consumer Protocol
    from inspect_app.store.protocols import ApiStore, LineStore, ResultReader

    def _satisfies(store: ResultsStore) -> tuple[LineStore, ApiStore, ResultReader]:
        return store, store, store
