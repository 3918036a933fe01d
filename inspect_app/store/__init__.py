"""Results store: every inspection result, feedback, users, audit log, settings, station status
and alarms in SQL (SQLite WAL by default, PostgreSQL by URL), plus result images on disk."""

from inspect_app.store.images import RetentionPolicy
from inspect_app.store.store import (
                                     FEEDBACK_KINDS,
                                     ROLES,
                                     ResultsStore,
                                     StoredResult,
                                     StoreError,
                                     User,
                                     default_store_url,
)

__all__ = ["FEEDBACK_KINDS", "ROLES", "ResultsStore", "RetentionPolicy", "StoredResult", "StoreError", "User",
           "default_store_url"]
