"""ORM rows of the SQL metadata store, mapped onto the Core tables of `studio.meta.sql.tables`
(the one schema definition). They never leave `studio.meta.sql`: callers get the frozen
dataclasses of `studio.entities` through `to_entity()`.

The store and the migrations' environment use the Core tables and do not import this module,
so `sqlalchemy.orm` is loaded only by those who want mapped classes (tests, ad-hoc queries).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped, relationship

from studio.entities import ArtifactSpec, Experiment, MetricSummary, StatusEvent
from studio.meta.sql.tables import (
    ARTIFACTS,
    EVENTS,
    EXPERIMENTS,
    METRICS,
    NAMING,
    OUTPUT,
    RESOURCE_NAMES,
    JsonType,
    artifact_entity,
    event_entity,
    experiment_entity,
    metadata,
    metric_entity,
    resource_needs,
)

__all__ = [
    "NAMING",
    "RESOURCE_NAMES",
    "Base",
    "JsonType",
    "SqlArtifact",
    "SqlExperiment",
    "SqlMetricSummary",
    "SqlOutputChunk",
    "SqlStatusEvent",
    "artifact_entity",
    "experiment_entity",
    "resource_needs",
]


class Base(DeclarativeBase):
    metadata = metadata


class SqlExperiment(Base):
    __table__ = EXPERIMENTS

    key: Mapped[str]
    project: Mapped[str]
    owner: Mapped[str]
    script: Mapped[str]
    args: Mapped[list[str]]
    module: Mapped[bool]
    status: Mapped[str]
    returncode: Mapped[int | None]
    status_reason: Mapped[str | None]
    queue: Mapped[str | None]
    params: Mapped[dict[str, Any]]
    env: Mapped[dict[str, str]]
    python_version: Mapped[str | None]
    pythonenv: Mapped[list[str]]
    python_pkgs: Mapped[list[str]]
    git: Mapped[dict[str, Any]]
    host: Mapped[dict[str, Any]]
    resources: Mapped[dict[str, Any]]
    need_cpus: Mapped[float]
    need_gpus: Mapped[float]
    need_ram: Mapped[float]
    need_hdd: Mapped[float]
    metric: Mapped[str | None]
    metric_value: Mapped[float | None]
    max_duration: Mapped[float | None]
    lifetime: Mapped[float | None]
    time_added: Mapped[float]
    time_started: Mapped[float | None]
    time_last_checkpoint: Mapped[float | None]
    time_finished: Mapped[float | None]
    heartbeat: Mapped[float | None]
    worker: Mapped[str | None]
    lease_expires: Mapped[float | None]
    attempts: Mapped[int]
    stop_requested: Mapped[bool]
    stop_status: Mapped[str | None]
    stop_reason: Mapped[str | None]
    sweep: Mapped[str | None]
    name: Mapped[str | None]
    tags: Mapped[list[str]]
    note: Mapped[str]

    artifacts: Mapped[list[SqlArtifact]] = relationship(
        back_populates="experiment",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="SqlArtifact.tag",
    )

    def to_entity(self, artifacts: bool = True) -> Experiment:
        values = {c.key: getattr(self, c.key) for c in EXPERIMENTS.columns}
        arts = [a.to_entity() for a in self.artifacts] if artifacts else []
        return experiment_entity(values, arts)


class SqlArtifact(Base):
    __table__ = ARTIFACTS

    experiment_key: Mapped[str]
    tag: Mapped[str]
    mutable: Mapped[bool]
    local_path: Mapped[str | None]
    source: Mapped[str | None]
    tree: Mapped[str | None]
    size: Mapped[int]
    files: Mapped[int]
    updated: Mapped[float | None]

    experiment: Mapped[SqlExperiment] = relationship(back_populates="artifacts", lazy="raise")

    def to_entity(self) -> ArtifactSpec:
        return artifact_entity({c.key: getattr(self, c.key) for c in ARTIFACTS.columns})


class SqlStatusEvent(Base):
    __table__ = EVENTS

    id: Mapped[int]
    experiment_key: Mapped[str]
    status: Mapped[str]
    time: Mapped[float]
    reason: Mapped[str | None]
    worker: Mapped[str | None]

    def to_entity(self) -> StatusEvent:
        return event_entity({c.key: getattr(self, c.key) for c in EVENTS.columns})


class SqlOutputChunk(Base):
    __table__ = OUTPUT

    experiment_key: Mapped[str]
    attempt: Mapped[int]
    seq: Mapped[int]
    text: Mapped[str]
    time: Mapped[float]


class SqlMetricSummary(Base):
    __table__ = METRICS

    experiment_key: Mapped[str]
    name: Mapped[str]
    last: Mapped[float | None]
    min: Mapped[float | None]
    max: Mapped[float | None]
    count: Mapped[int]
    last_step: Mapped[int | None]
    updated: Mapped[float | None]

    def to_entity(self) -> MetricSummary:
        return metric_entity({c.key: getattr(self, c.key) for c in METRICS.columns})
