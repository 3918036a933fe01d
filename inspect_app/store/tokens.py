"""API tokens: ``add_token`` makes a random token, keeps only its SHA-256 and returns the token
once; ``verify_token`` finds the active token's client by that hash (a new or revoked token
counts from the next request: no restart). Adding and revoking are audited."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from inspect_app.store.audit import AuditTrail
from inspect_app.store.database import Database, StoreError
from inspect_app.store.models import ApiTokenRow, utc_now
from inspect_app.store.records import API_ROLES, ApiRole, ApiToken

TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
TOKEN_PREFIX = "iat_"  # recognisable in logs and secret scanners


def parse_api_role(text: str) -> ApiRole:
    """``text`` as an ``ApiRole``; a ``StoreError`` names the choices otherwise."""
    for role in API_ROLES:
        if text == role:
            return role
    raise StoreError(f"unknown API role {text!r}: choose {', '.join(API_ROLES)}")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ApiClient:
    """Who a valid token belongs to."""

    name: str
    role: ApiRole


class ApiTokens:
    """``add_token``, ``tokens``, ``revoke_token``, ``verify_token``."""

    def __init__(self, database: Database):
        self._db = database

    def add_token(self, name: str, role: ApiRole, by: str = "") -> str:
        """A new token for ``name`` with ``role``; the returned token is not stored anywhere."""
        if not TOKEN_NAME.match(name or ""):
            raise StoreError(f"invalid token name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
        role = parse_api_role(role)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        try:
            with self._db.transaction() as session:
                session.add(ApiTokenRow(name=name, role=role, token_hash=token_hash(token), created=utc_now(),
                                        created_by=by or ""))
                session.flush()
                AuditTrail.record(session, by, "token.add", {"name": name, "role": role})
        except IntegrityError:
            raise StoreError(f"a token named {name!r} already exists (revoke it, or choose another name)") from None
        return token

    def tokens(self) -> list[ApiToken]:
        """Every token (active and revoked), by name."""
        with self._db.session() as session:
            return [ApiToken(row.name, parse_api_role(row.role), row.created, row.created_by, row.revoked_at)
                    for row in session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.name))]

    def revoke_token(self, name: str, by: str = "") -> None:
        with self._db.transaction() as session:
            done = session.execute(update(ApiTokenRow).where(
                ApiTokenRow.name == name, ApiTokenRow.revoked_at.is_(None)).values(revoked_at=utc_now()))
            if not done.rowcount:  # type: ignore[attr-defined]
                raise StoreError(f"no active token named {name!r}")
            AuditTrail.record(session, by, "token.revoke", {"name": name})

    def verify_token(self, token: str) -> ApiClient | None:
        """The client of an active token, else None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        stmt = select(ApiTokenRow.name, ApiTokenRow.role).where(
            ApiTokenRow.token_hash == token_hash(token), ApiTokenRow.revoked_at.is_(None))
        with self._db.session() as session:
            row = session.execute(stmt).one_or_none()
        return None if row is None else ApiClient(row.name, parse_api_role(row.role))
