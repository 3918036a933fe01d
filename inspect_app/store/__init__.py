"""Results store: every inspection result, feedback, users, audit log, settings, station status
and alarms in SQL (SQLite WAL by default, PostgreSQL by URL), plus result images on disk.

``ResultsStore`` (store.py) is the object to open; the Protocols in protocols.py describe what
each consumer needs of it."""

from inspect_app.store.database import StoreError, default_store_url
from inspect_app.store.images import RetentionPolicy
from inspect_app.store.protocols import (
    ApiStore,
    FrameLedger,
    LineStore,
    ResultReader,
    ResultRecorder,
    SettingsReader,
    StationLeaseHolder,
    StationReporter,
    TokenVerifier,
)
from inspect_app.store.records import (
    API_ROLE_OF_USER,
    API_ROLES,
    FEEDBACK_KINDS,
    ROLES,
    AlarmEntry,
    ApiRole,
    ApiToken,
    AuditEntry,
    FeedbackEntry,
    FeedbackExport,
    FeedbackKind,
    ImageUsage,
    ResultFilter,
    Role,
    StationStatus,
    StoredResult,
    User,
)
from inspect_app.store.store import ResultsStore
from inspect_app.store.tokens import ApiClient

__all__ = ["API_ROLES", "API_ROLE_OF_USER", "FEEDBACK_KINDS", "ROLES", "AlarmEntry", "ApiClient", "ApiRole",
           "ApiStore", "ApiToken", "AuditEntry", "FeedbackEntry", "FeedbackExport", "FeedbackKind", "FrameLedger",
           "ImageUsage", "LineStore", "ResultFilter", "ResultReader", "ResultRecorder", "ResultsStore",
           "RetentionPolicy", "Role", "SettingsReader", "StationLeaseHolder", "StationReporter", "StationStatus",
           "StoreError", "StoredResult", "TokenVerifier", "User", "default_store_url"]
