"""The schema of the SQL metadata store as SQLAlchemy Core tables, and their rows -> entities.

This is the one definition of the schema: the store runs Core statements on these tables (the
ORM unit of work costs about 2 ms per transaction, Core about 0.3 ms), and the ORM classes of
`studio.meta.sql.models` (for migrations and tests) are mapped onto the same tables. Neither
`sqlalchemy.orm` nor the PostgreSQL dialect is imported here, so opening a SQLite store does
not pay for them (about 0.15 s of `studio run`).

Times are floats (seconds since the epoch) as in the entities. JSON columns are JSONB on
PostgreSQL (indexable, `->>` extraction) and JSON text on SQLite (`json_extract`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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
)
from sqlalchemy.types import TypeEngine

from studio.entities import ArtifactSpec, Experiment, MetricSummary, Status, StatusEvent

# Stable constraint names, so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Resource needs copied out of `resources` into plain columns so `claim` can test the fit in SQL.
RESOURCE_NAMES = ("cpus", "gpus", "ram", "hdd")


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


def experiment_entity(row: Mapping[Any, Any], artifacts: Iterable[ArtifactSpec] = ()) -> Experiment:
    """The entity for a row of `experiments` (an ORM row's values or a Core result mapping)."""
    return Experiment(
        key=row["key"],
        project=row["project"],
        owner=row["owner"],
        script=row["script"],
        args=tuple(row["args"] or ()),
        module=bool(row["module"]),
        status=Status(row["status"]),
        returncode=row["returncode"],
        status_reason=row["status_reason"],
        queue=row["queue"],
        params=dict(row["params"] or {}),
        env=dict(row["env"] or {}),
        python_version=row["python_version"],
        pythonenv=tuple(row["pythonenv"] or ()),
        python_pkgs=tuple(row["python_pkgs"] or ()),
        git=dict(row["git"] or {}),
        host=dict(row["host"] or {}),
        resources=dict(row["resources"] or {}),
        metric=row["metric"],
        metric_value=row["metric_value"],
        max_duration=row["max_duration"],
        lifetime=row["lifetime"],
        time_added=row["time_added"],
        time_started=row["time_started"],
        time_last_checkpoint=row["time_last_checkpoint"],
        time_finished=row["time_finished"],
        heartbeat=row["heartbeat"],
        worker=row["worker"],
        lease_expires=row["lease_expires"],
        attempts=row["attempts"] or 0,
        stop_requested=bool(row["stop_requested"]),
        stop_status=Status(row["stop_status"]) if row["stop_status"] else None,
        stop_reason=row["stop_reason"],
        sweep=row["sweep"],
        artifacts={a.tag: a for a in artifacts},
    )


def artifact_entity(row: Mapping[Any, Any]) -> ArtifactSpec:
    return ArtifactSpec(
        tag=row["tag"],
        mutable=bool(row["mutable"]),
        local_path=row["local_path"],
        source=row["source"],
        tree=row["tree"],
        size=row["size"] or 0,
        files=row["files"] or 0,
        updated=row["updated"],
    )


def event_entity(row: Mapping[Any, Any]) -> StatusEvent:
    return StatusEvent(
        key=row["experiment_key"],
        status=Status(row["status"]),
        time=row["time"],
        reason=row["reason"],
        worker=row["worker"],
    )


def metric_entity(row: Mapping[Any, Any]) -> MetricSummary:
    return MetricSummary(
        key=row["name"],
        last=_nan_if_null(row["last"]),
        min=_nan_if_null(row["min"]),
        max=_nan_if_null(row["max"]),
        count=row["count"],
        last_step=row["last_step"],
        updated=row["updated"],
    )


def _nan_if_null(value: float | None) -> float:
    return math.nan if value is None else value


def null_if_nan(value: float | None) -> float | None:
    """How a float is stored: NaN as NULL, the same on SQLite (which has no NaN) and PostgreSQL."""
    return None if value is None or math.isnan(value) else value


def resource_needs(resources: dict[str, Any] | None) -> dict[str, float]:
    """`need_*` column values for an experiment's `resources` (missing or empty: 0)."""
    from studio.exceptions import UsageError

    needs: dict[str, float] = {}
    for name in RESOURCE_NAMES:
        value = (resources or {}).get(name)
        if value is None:
            needs[f"need_{name}"] = 0.0
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(
                f"resource `{name}` must be a number (bytes for ram/hdd), got {value!r}"
            )
        if value < 0:
            raise UsageError(f"resource `{name}` must not be negative, got {value!r}")
        needs[f"need_{name}"] = float(value)
    return needs
