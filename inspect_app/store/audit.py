"""The audit log (who changed what, when) and the per-product settings (explanations on or off,
language, sinks), whose every change is audited in the same transaction as the change itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inspect_app.store.database import Database
from inspect_app.store.models import AuditRow, SettingsRow, utc_now
from inspect_app.store.records import AuditEntry


class AuditTrail:
    """Append-only log of changes and sign-ins."""

    def __init__(self, database: Database):
        self._db = database

    def audit(self, user: str, action: str, detail: dict[str, Any] | str = "") -> None:
        """Record ``action`` (e.g. ``profile.delete``) by ``user`` with its facts or a sentence."""
        with self._db.transaction() as session:
            self.record(session, user, action, detail)

    @staticmethod
    def record(session: Session, user: str, action: str, detail: dict[str, Any] | str) -> None:
        """Add an entry inside the caller's transaction, so the change and its entry commit together."""
        session.add(AuditRow(time=utc_now(), user=user or "", action=action, detail=detail))

    def audit_log(self, limit: int = 200) -> list[AuditEntry]:
        """Newest first."""
        stmt = select(AuditRow).order_by(AuditRow.time.desc(), AuditRow.id.desc()).limit(limit)
        with self._db.session() as session:
            return [AuditEntry(id=a.id, time=a.time, user=a.user, action=a.action, detail=a.detail)
                    for a in session.scalars(stmt)]


class ProductSettings:
    """Each product's saved settings, a JSON object replaced as a whole."""

    def __init__(self, database: Database):
        self._db = database

    def get_settings(self, product: str) -> dict[str, Any]:
        """The product's saved settings ({} when none were saved)."""
        with self._db.session() as session:
            row = session.get(SettingsRow, product)
            return dict(row.settings) if row is not None else {}

    def set_settings(self, product: str, settings: Mapping[str, Any], user: str) -> None:
        """Replace the product's settings; recorded in the audit log as ``settings.update`` with the
        settings before and after."""
        after = dict(settings)
        with self._db.transaction() as session:
            previous = session.get(SettingsRow, product)
            before = dict(previous.settings) if previous is not None else {}
            self._db.upsert(session, SettingsRow, {"product": product, "settings": after, "updated_by": user or "",
                                                   "updated_at": utc_now()})
            AuditTrail.record(session, user, "settings.update", {"product": product, "before": before, "after": after})
