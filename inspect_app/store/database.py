"""The one way into the results database: ``Database`` creates the engine (SQLite in WAL mode,
or PostgreSQL), brings the schema to the newest Alembic revision, and hands out short sessions.

Every part of the store (results, images, accounts, audit and settings, stations) is given the
same ``Database``: one engine and connection pool per store, one place that knows the dialects,
and closing it closes every part at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from inspect_app.errors import InspectAppError
from inspect_app.store.models import Base

DEFAULT_STORE_DIR = Path("data/store")
MIGRATIONS = Path(__file__).with_name("migrations")
BACKENDS = ("sqlite", "postgresql")  # the dialects the migrations and ``Database.upsert`` are written for


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


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
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
    backend = parsed.get_backend_name()
    if backend not in BACKENDS:
        raise StoreError(f"cannot open the results store {_safe_url(url)}: it runs on SQLite or PostgreSQL, "
                         f"not {backend}")
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True)
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


def alembic_config(connection: Any) -> Any:
    """Alembic configuration for the packaged migrations, running on ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


# Any constant: the key of the PostgreSQL advisory lock that serialises schema upgrades.
_SCHEMA_LOCK_KEY = 0x1A5_2024


def _upgrade_schema(engine: Engine) -> None:
    """Bring the schema to head, one process at a time: two processes opening a new database at once
    would otherwise both run the DDL, and the loser fail (or, on SQLite, whose driver commits DDL as it
    goes, find half a schema). The lock is held until the upgrade commits; the next process then finds
    the schema at head and has nothing to do."""
    from alembic import command

    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now, for the whole upgrade
        else:
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})")
        command.upgrade(alembic_config(connection), "head")
        connection.commit()


class Database:
    """The store's engine and session factory; see the module docstring. Opening upgrades the schema."""

    def __init__(self, url: str | None = None):
        self.url = _normalise_url(url or default_store_url())
        try:
            self.engine = _create_engine(self.url)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot open the results store {_safe_url(self.url)}: {_reason(exc)}") from None
        try:
            _upgrade_schema(self.engine)
        except Exception as exc:
            self.engine.dispose()
            raise StoreError(f"cannot open the results store {_safe_url(self.url)}: {_reason(exc)}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._closed = False

    @property
    def display_url(self) -> str:
        """The database URL with the password hidden (for logs and pages)."""
        return _safe_url(self.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def default_images_dir(self) -> Path:
        """Where result images go unless told: ``images/`` beside a SQLite file, else ./data/store/images."""
        parsed = make_url(self.url)
        base = Path(parsed.database or "").parent if parsed.get_backend_name() == "sqlite" else DEFAULT_STORE_DIR
        return base / "images"

    def session(self) -> Session:
        """A new short session (for reads; ``transaction`` for writes). Refused once closed."""
        if self._closed:
            raise StoreError("the results store is closed")
        return self._sessions()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session inside one transaction: committed when the block ends, rolled back on an error."""
        with self.session() as session, session.begin():
            yield session

    def upsert(self, session: Session, row_type: type[Base], values: Mapping[str, Any]) -> None:
        """Insert the row, or replace the non-key columns of the row with the same primary key, in one
        statement: two writers creating the same row at once cannot collide (a read-then-write merge can)."""
        table = row_type.__table__
        assert isinstance(table, Table)  # declared as a general FromClause; a mapped class has a Table
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(table).values(dict(values))
        keys = [column.name for column in table.primary_key]
        session.execute(stmt.on_conflict_do_update(
            index_elements=keys, set_={name: stmt.excluded[name] for name in values if name not in keys}))

    def ping(self) -> bool:
        """True when the database answers (for health checks)."""
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except SQLAlchemyError:
            return False

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the connections; every later session is refused."""
        self._closed = True
        self.engine.dispose()


def _reason(exc: Exception) -> str:
    """The driver's message (not SQLAlchemy's wrapper) on one line."""
    return " ".join(str(getattr(exc, "orig", None) or exc).split())
