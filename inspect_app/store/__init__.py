"""Results store: every inspection result, feedback, users, audit log, settings, station status
and alarms in SQL (SQLite WAL by default, PostgreSQL by URL), plus result images on disk.

``ResultsStore`` (store.py) is the object to open; the Protocols in protocols.py describe what
each consumer needs of it."""

from inspect_app.store.database import StoreError, default_store_url
from inspect_app.store.images import RetentionPolicy
from inspect_app.store.protocols import (
    ApiStore,
    LineStore,
    ResultReader,
    ResultRecorder,
    SettingsReader,
    StationReporter,
)
from inspect_app.store.records import (
    FEEDBACK_KINDS,
    ROLES,
    AlarmEntry,
    AuditEntry,
    FeedbackEntry,
    FeedbackExport,
    FeedbackKind,
    ResultFilter,
    Role,
    StationStatus,
    StoredResult,
    User,
)
from inspect_app.store.store import ResultsStore

__all__ = ["FEEDBACK_KINDS", "ROLES", "AlarmEntry", "ApiStore", "AuditEntry", "FeedbackEntry", "FeedbackExport",
           "FeedbackKind", "LineStore", "ResultFilter", "ResultReader", "ResultRecorder", "ResultsStore",
           "RetentionPolicy", "Role", "SettingsReader", "StationReporter", "StationStatus", "StoreError",
           "StoredResult", "User", "default_store_url"]
