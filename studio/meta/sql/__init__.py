"""The SQL metadata store (SQLAlchemy 2 + Alembic) for SQLite and PostgreSQL.

Open it through `studio.meta.open_meta_store(url)`; ORM rows (`Sql*`) stay in this package.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from sqlalchemy.engine import URL, Engine, make_url

from studio.exceptions import MissingDependencyError, SchemaVersionError, StoreError, UsageError
from studio.meta.sql.engine import make_engine, redact
from studio.meta.sql.schema import UPGRADE_HINT, check_schema, migrate, read_revision
from studio.meta.sql.store import SqlMetaStore

__all__ = [
    "SqlMetaStore",
    "database_revision",
    "normalize_url",
    "open_sql_store",
    "upgrade_database",
]


def normalize_url(url: str) -> URL:
    """Parse a database URL: plain `postgresql://` means psycopg 3; `~` in SQLite paths expands."""
    try:
        u = make_url(url)
    except Exception as exc:
        raise UsageError(f"malformed database URL {url.split('@')[-1]!r}: {exc}") from exc
    backend, driver = u.get_backend_name(), u.get_driver_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql":
        if u.drivername not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise UsageError(
                f"database driver `{u.drivername}` is not supported: use postgresql+psycopg://"
            )
        if importlib.util.find_spec("psycopg") is None:
            raise MissingDependencyError.for_extra("psycopg", "postgres")
        return u.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("pysqlite", ""):
            raise UsageError(
                f"database driver `{u.drivername}` is not supported: use sqlite:///PATH"
            )
        if u.database and u.database != ":memory:":
            return u.set(database=os.path.expanduser(u.database))
        return u
    raise UsageError(
        f"unknown database URL scheme `{u.drivername}`: use sqlite:/// or postgresql+psycopg://"
    )


def _sqlite_file(u: URL) -> Path | None:
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _engine(url: str, *, create: bool) -> Engine:
    u = normalize_url(url)
    path = _sqlite_file(u)
    if path is not None and not path.exists():
        if not create:
            raise SchemaVersionError(f"database {path} does not exist: {UPGRADE_HINT} to create it")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create {path.parent} for the database: {exc.strerror}"
            ) from exc
    return make_engine(u)


def open_sql_store(url: str, *, create: bool = True) -> SqlMetaStore:
    engine = _engine(url, create=create)
    try:
        check_schema(engine, create=create)
    except BaseException:
        engine.dispose()
        raise
    return SqlMetaStore(engine)


def upgrade_database(url: str, revision: str = "head") -> tuple[str | None, str]:
    engine = _engine(url, create=True)
    try:
        return migrate(engine, revision)
    finally:
        engine.dispose()


def database_revision(url: str) -> str | None:
    u = normalize_url(url)
    path = _sqlite_file(u)
    if path is not None and not path.exists():
        return None
    engine = make_engine(u)
    try:
        with engine.connect() as conn:
            return read_revision(conn)
    except Exception as exc:
        raise StoreError(f"cannot open database {redact(u)}: {exc}") from exc
    finally:
        engine.dispose()
