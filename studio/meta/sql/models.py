"""ORM rows of the SQL metadata store. They never leave `studio.meta.sql`: callers get the
frozen dataclasses of `studio.entities` through `to_entity()`.

Times are floats (seconds since the epoch) as in the entities. JSON columns are JSONB on
PostgreSQL (indexable, `->>` extraction) and JSON text on SQLite (`json_extract`).

The store's hot paths run Core statements on these tables (the ORM unit of work costs about
2 ms per transaction, Core about 0.3 ms); `experiment_entity` / `artifact_entity` convert their
result rows, and the ORM rows' `to_entity()` goes through the same functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from studio.entities import (
    ArtifactSpec,
    Experiment,
    MetricSummary,
    Status,
    StatusEvent,
)

# Stable constraint names, so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonType = JSON().with_variant(JSONB(), "postgresql")

#: Resource needs copied out of `resources` into plain columns so `claim` can test the fit in SQL.
RESOURCE_NAMES = ("cpus", "gpus", "ram", "hdd")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SqlExperiment(Base):
    __tablename__ = "experiments"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    project: Mapped[str] = mapped_column(String(255))
    owner: Mapped[str] = mapped_column(String(255))
    script: Mapped[str] = mapped_column(Text, default="")
    args: Mapped[list[str]] = mapped_column(JsonType, default=list)
    module: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    returncode: Mapped[int | None] = mapped_column(Integer)
    status_reason: Mapped[str | None] = mapped_column(Text)
    queue: Mapped[str | None] = mapped_column(String(255))
    params: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    env: Mapped[dict[str, str]] = mapped_column(JsonType, default=dict)
    python_version: Mapped[str | None] = mapped_column(String(64))
    pythonenv: Mapped[list[str]] = mapped_column(JsonType, default=list)
    python_pkgs: Mapped[list[str]] = mapped_column(JsonType, default=list)
    git: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    host: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    resources: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    need_cpus: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    need_gpus: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    need_ram: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    need_hdd: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    metric: Mapped[str | None] = mapped_column(String(255))
    metric_value: Mapped[float | None] = mapped_column(Double)
    max_duration: Mapped[float | None] = mapped_column(Double)
    lifetime: Mapped[float | None] = mapped_column(Double)
    time_added: Mapped[float] = mapped_column(Double)
    time_started: Mapped[float | None] = mapped_column(Double)
    time_last_checkpoint: Mapped[float | None] = mapped_column(Double)
    time_finished: Mapped[float | None] = mapped_column(Double)
    heartbeat: Mapped[float | None] = mapped_column(Double)
    worker: Mapped[str | None] = mapped_column(String(255))
    lease_expires: Mapped[float | None] = mapped_column(Double)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    stop_status: Mapped[str | None] = mapped_column(String(16))
    stop_reason: Mapped[str | None] = mapped_column(Text)
    sweep: Mapped[str | None] = mapped_column(String(255))

    artifacts: Mapped[list[SqlArtifact]] = relationship(
        back_populates="experiment",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="SqlArtifact.tag",
    )

    __table_args__ = (
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

    def to_entity(self, artifacts: bool = True) -> Experiment:
        values = {c.key: getattr(self, c.key) for c in self.__table__.columns}
        arts = [a.to_entity() for a in self.artifacts] if artifacts else []
        return experiment_entity(values, arts)


class SqlArtifact(Base):
    __tablename__ = "artifacts"

    experiment_key: Mapped[str] = mapped_column(
        String(255), ForeignKey("experiments.key", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(255), primary_key=True)
    mutable: Mapped[bool] = mapped_column(Boolean, default=True)
    local_path: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    tree: Mapped[str | None] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    files: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[float | None] = mapped_column(Double)

    experiment: Mapped[SqlExperiment] = relationship(back_populates="artifacts", lazy="raise")

    __table_args__ = (Index("ix_artifacts_tree", "tree"),)

    def to_entity(self) -> ArtifactSpec:
        return artifact_entity({c.key: getattr(self, c.key) for c in self.__table__.columns})


class SqlStatusEvent(Base):
    __tablename__ = "status_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    experiment_key: Mapped[str] = mapped_column(
        String(255), ForeignKey("experiments.key", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16))
    time: Mapped[float] = mapped_column(Double)
    reason: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (Index("ix_status_events_experiment_key_id", "experiment_key", "id"),)

    def to_entity(self) -> StatusEvent:
        return StatusEvent(
            key=self.experiment_key,
            status=Status(self.status),
            time=self.time,
            reason=self.reason,
            worker=self.worker,
        )


class SqlOutputChunk(Base):
    __tablename__ = "output_chunks"

    experiment_key: Mapped[str] = mapped_column(
        String(255), ForeignKey("experiments.key", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    time: Mapped[float] = mapped_column(Double)


class SqlMetricSummary(Base):
    __tablename__ = "metric_summaries"

    experiment_key: Mapped[str] = mapped_column(
        String(255), ForeignKey("experiments.key", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    last: Mapped[float] = mapped_column(Double)
    min: Mapped[float] = mapped_column(Double)
    max: Mapped[float] = mapped_column(Double)
    count: Mapped[int] = mapped_column(BigInteger)
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    updated: Mapped[float | None] = mapped_column(Double)

    # No (name, last) index: see migration 0004 (the primary key serves listings' joins).

    def to_entity(self) -> MetricSummary:
        return MetricSummary(
            key=self.name,
            last=self.last,
            min=self.min,
            max=self.max,
            count=self.count,
            last_step=self.last_step,
            updated=self.updated,
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
