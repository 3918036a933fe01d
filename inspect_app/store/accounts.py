"""Station UI accounts: users, their role, and argon2 password hashes (never the password).
Engineers need a password; operators may have none. Creating a user is audited."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from inspect_app.store.audit import AuditTrail
from inspect_app.store.database import Database, StoreError
from inspect_app.store.models import UserRow, utc_now
from inspect_app.store.records import ROLES, Role, User

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def parse_role(text: str) -> Role:
    """``text`` as a ``Role``; a ``StoreError`` names the choices otherwise."""
    for role in ROLES:
        if text == role:
            return role
    raise StoreError(f"unknown role {text!r}: choose {' or '.join(ROLES)}")


def _user(row: UserRow) -> User:
    return User(row.name, parse_role(row.role), row.created, row.password_hash is not None)


class UserAccounts:
    """``add_user``, ``verify_user``, ``users``."""

    def __init__(self, database: Database):
        self._db = database

    def add_user(self, name: str, role: Role, password: str | None, by: str = "") -> None:
        """Create a user (argon2 password hash). Engineers need a password; operators may have
        none. Recorded in the audit log as ``user.add`` by ``by``."""
        from argon2 import PasswordHasher

        if not USER_NAME.match(name or ""):
            raise StoreError(f"invalid user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
        role = parse_role(role)
        if role == "engineer" and not password:
            raise StoreError("an engineer needs a password")
        hashed = PasswordHasher().hash(password) if password else None
        try:
            with self._db.transaction() as session:
                session.add(UserRow(name=name, role=role, password_hash=hashed, created=utc_now()))
                session.flush()  # a duplicate name fails here, before the audit entry
                AuditTrail.record(session, by, "user.add", {"name": name, "role": role})
        except IntegrityError:
            raise StoreError(f"user {name!r} already exists") from None

    def verify_user(self, name: str, password: str | None) -> User | None:
        """The user when the password matches (or the user has none and none is given), else None."""
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError

        with self._db.session() as session:
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
        """Every user, by name."""
        with self._db.session() as session:
            return [_user(row) for row in session.scalars(select(UserRow).order_by(UserRow.name))]
