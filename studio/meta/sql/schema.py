"""Schema versions: Alembic migrations shipped in `migrations/`, run through alembic's API.

Opening a store only reads `alembic_version` and compares it with `HEAD_REVISION`, so alembic
itself is imported only to create or upgrade a database. Creation and upgrades run in one
transaction holding the write lock (SQLite `BEGIN IMMEDIATE`, a PostgreSQL advisory lock), so
processes opening a fresh database at the same moment migrate it exactly once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from studio.exceptions import SchemaVersionError, StoreError
from studio.meta.records import HEAD_REVISION
from studio.meta.sql.engine import redact, write_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"
_PG_LOCK_ID = 0x57_D1_0DB  # advisory lock held while migrating

UPGRADE_HINT = "run `studio db upgrade`"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_table", VERSION_TABLE)
    cfg.attributes["connection"] = connection
    return cfg


def read_revision(conn: Connection) -> str | None:
    """The database's schema revision; None if it has no studio schema yet."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    row = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
    return None if row is None else str(row[0])


def _is_known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def version_error(engine: Engine, revision: str | None) -> SchemaVersionError:
    where = redact(engine.url)
    if revision is None:
        return SchemaVersionError(f"database {where} has no studio schema yet: {UPGRADE_HINT}")
    if _is_known(revision):
        return SchemaVersionError(
            f"database at revision {revision} is older than this studio ({HEAD_REVISION}): "
            f"{UPGRADE_HINT}"
        )
    return SchemaVersionError(
        f"database at revision {revision} is newer than this studio ({HEAD_REVISION}): "
        "upgrade studio (`pip install -U studio`)"
    )


def check_schema(engine: Engine, *, create: bool) -> None:
    """Return if the database is at HEAD_REVISION; migrate a fresh one when `create`;
    otherwise raise SchemaVersionError naming the command that fixes it."""
    try:
        with engine.connect() as conn:
            revision = read_revision(conn)
    except Exception as exc:
        raise StoreError(f"cannot open database {redact(engine.url)}: {exc}") from exc
    if revision == HEAD_REVISION:
        return
    if revision is None and create:
        migrate(engine, only_if_empty=True)
        return
    raise version_error(engine, revision)


def migrate(
    engine: Engine, revision: str = "head", *, only_if_empty: bool = False
) -> tuple[str | None, str]:
    """Upgrade the database to `revision` under the write lock. Returns (before, after).
    With `only_if_empty`, a database that someone else migrated meanwhile is left alone."""
    from alembic import command

    with write_engine(engine).connect() as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
        before = read_revision(conn)
        if before is None:
            foreign = [t for t in inspect(conn).get_table_names() if t != VERSION_TABLE]
            if foreign:
                raise StoreError(
                    f"database {redact(engine.url)} holds other tables ({', '.join(sorted(foreign)[:5])}) "
                    "but no studio schema: point studio at an empty database"
                )
        elif only_if_empty:
            if before != HEAD_REVISION:
                raise version_error(engine, before)
            return before, before
        command.upgrade(alembic_config(conn), revision)
        after = read_revision(conn)
    assert after is not None
    return before, after
