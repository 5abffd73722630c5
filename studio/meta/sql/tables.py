"""The schema of the SQL metadata store as SQLAlchemy Core tables, and their rows -> entities.

This is the one definition of the schema: the store runs Core statements on these tables (the
ORM unit of work costs about 2 ms per transaction, Core about 0.3 ms), and a test checks that
the Alembic migrations build exactly these tables. Neither `sqlalchemy.orm` nor the PostgreSQL
dialect is imported here, so opening a SQLite store does not pay for them (about 0.15 s of
`studio run`).

Times are floats (seconds since the epoch) as in the entities. JSON columns are JSONB on
PostgreSQL (indexable, `->>` extraction) and JSON text on SQLite (`json_extract`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.types import TypeEngine

from studio.meta.records import (  # noqa: F401 - re-exported: the rows -> entities of these tables
    RESOURCE_NAMES,
    artifact_entity,
    event_entity,
    experiment_entity,
    metric_entity,
    null_if_nan,
    resource_needs,
)

# Stable constraint names, so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class JsonType(TypeDecorator[Any]):
    """JSON; JSONB on PostgreSQL. Unlike `JSON().with_variant(JSONB(), "postgresql")`, the
    PostgreSQL dialect (and the asyncpg dialect it pulls in) is imported only when a PostgreSQL
    connection needs the type."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


metadata = MetaData(naming_convention=NAMING)


def _key_column(*, primary_key: bool) -> Column[str]:
    return Column(
        "experiment_key",
        String(255),
        ForeignKey("experiments.key", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


EXPERIMENTS = Table(
    "experiments",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("project", String(255), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("script", Text, nullable=False, default=""),
    Column("args", JsonType, nullable=False, default=list),
    Column("module", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False),
    Column("returncode", Integer),
    Column("status_reason", Text),
    Column("queue", String(255)),
    Column("params", JsonType, nullable=False, default=dict),
    Column("env", JsonType, nullable=False, default=dict),
    Column("python_version", String(64)),
    Column("pythonenv", JsonType, nullable=False, default=list),
    Column("python_pkgs", JsonType, nullable=False, default=list),
    Column("git", JsonType, nullable=False, default=dict),
    Column("host", JsonType, nullable=False, default=dict),
    Column("resources", JsonType, nullable=False, default=dict),
    *(
        Column(f"need_{name}", Double, nullable=False, default=0.0, server_default="0")
        for name in RESOURCE_NAMES
    ),
    Column("metric", String(255)),
    Column("metric_value", Double),
    Column("max_duration", Double),
    Column("lifetime", Double),
    Column("time_added", Double, nullable=False),
    Column("time_started", Double),
    Column("time_last_checkpoint", Double),
    Column("time_finished", Double),
    Column("heartbeat", Double),
    Column("worker", String(255)),
    Column("lease_expires", Double),
    Column("attempts", Integer, nullable=False, default=0),
    Column("stop_requested", Boolean, nullable=False, default=False),
    Column("stop_status", String(16)),
    Column("stop_reason", Text),
    Column("sweep", String(255)),
    Column("name", String(255)),
    Column("tags", JsonType, nullable=False, default=list, server_default=text("'[]'")),
    Column("note", Text, nullable=False, default="", server_default=""),
    # Listing pages: newest first, optionally within a project / owner / status.
    Index("ix_experiments_time_added", "time_added"),
    Index("ix_experiments_project_time_added", "project", "time_added"),
    Index("ix_experiments_owner_time_added", "owner", "time_added"),
    Index("ix_experiments_status_time_added", "status", "time_added"),
    Index("ix_experiments_metric_value", "metric_value"),
    # claim: the oldest queued experiment on a queue.
    Index("ix_experiments_queue_status_time_added", "queue", "status", "time_added"),
    # requeue_expired: running experiments by lease.
    Index("ix_experiments_status_lease_expires", "status", "lease_expires"),
)

ARTIFACTS = Table(
    "artifacts",
    metadata,
    _key_column(primary_key=True),
    Column("tag", String(255), primary_key=True),
    Column("mutable", Boolean, nullable=False, default=True),
    Column("local_path", Text),
    Column("source", Text),
    Column("tree", String(128)),
    Column("size", BigInteger, nullable=False, default=0),
    Column("files", Integer, nullable=False, default=0),
    Column("updated", Double),
    Index("ix_artifacts_tree", "tree"),
)

EVENTS = Table(
    "status_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _key_column(primary_key=False),
    Column("status", String(16), nullable=False),
    Column("time", Double, nullable=False),
    Column("reason", Text),
    Column("worker", String(255)),
    Index("ix_status_events_experiment_key_id", "experiment_key", "id"),
)

OUTPUT = Table(
    "output_chunks",
    metadata,
    _key_column(primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("text", Text, nullable=False),
    Column("time", Double, nullable=False),
)

METRICS = Table(
    "metric_summaries",
    metadata,
    _key_column(primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("last", Double),  # NULL is NaN (SQLite cannot store NaN): see migration 0005
    Column("min", Double),
    Column("max", Double),
    Column("count", BigInteger, nullable=False),
    Column("last_step", BigInteger),
    Column("updated", Double),
    # No (name, last) index: see migration 0004 (the primary key serves listings' joins).
)

WORKERS = Table(
    "workers",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("queue", String(255), nullable=False),
    Column("host", String(255), nullable=False, default=""),
    Column("state", String(16), nullable=False),
    Column("experiment", String(255)),
    Column("started", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
)

SWEEPS = Table(
    "sweeps",
    metadata,
    Column("project", String(255), primary_key=True),
    # The driver's checkpoint as JSON text: opaque to the store, and it may hold NaN, which
    # PostgreSQL's JSON types refuse.
    Column("state", Text, nullable=False),
    Column("updated", Double, nullable=False),
)

# -- a team server's accounts (`studio server`, `studio users`): see studio.server.accounts ----
USERS = Table(
    "users",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("role", String(16), nullable=False),  # admin | user | worker
    Column("created", Double, nullable=False),
    Column("revoked", Double),  # when the user was revoked: none of their tokens work
)

TOKENS = Table(
    "tokens",
    metadata,
    # SHA-256 of the token (hex): the token itself is shown once and never stored.
    Column("hash", String(64), primary_key=True),
    Column("user_name", String(255), ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
    Column("created", Double, nullable=False),
    Column("expires", Double),  # none: valid until revoked
    Column("revoked", Double),
    Index("ix_tokens_user_name", "user_name"),
)

AUDIT = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Double, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=False),
    Column("detail", Text),
    Index("ix_audit_time", "time"),
)
