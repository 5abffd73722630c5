"""Helpers shared by the store's modules: entity -> row values, locked row lookups, events."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from studio.entities import ArtifactSpec, Experiment, Status
from studio.exceptions import NotFoundError, UsageError
from studio.meta.sql.models import SqlArtifact, SqlExperiment, SqlStatusEvent, resource_needs

_JSON_LISTS = ("args", "pythonenv", "python_pkgs")
_JSON_DICTS = ("params", "env", "git", "host", "resources")
#: Fields `update_experiment` / `set_status(**fields)` may set.
UPDATABLE = frozenset(
    f.name
    for f in Experiment.__dataclass_fields__.values()
    if f.name not in ("key", "status", "artifacts")
)


def not_found(key: str) -> NotFoundError:
    return NotFoundError(f"no experiment {key!r}: list experiments with `studio runs list`")


def column_values(fields: dict[str, Any]) -> dict[str, Any]:
    """Entity field values -> column values (tuples to lists, resources to need_* columns)."""
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise UsageError(
            f"cannot set {', '.join(sorted(unknown))} on an experiment: "
            "status changes go through set_status, artifacts through put_artifact"
        )
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if name in _JSON_LISTS:
            value = list(value or ())
        elif name in _JSON_DICTS:
            value = dict(value or {})
        elif name in ("module", "stop_requested"):
            value = bool(value)
        elif name == "attempts":
            value = int(value or 0)
        values[name] = value
    if "resources" in values:
        values.update(resource_needs(values["resources"]))
    return values


def experiment_row(exp: Experiment, now: float) -> SqlExperiment:
    if not exp.key or len(exp.key) > 255:
        raise UsageError(f"experiment key {exp.key!r} must be 1 to 255 characters")
    fields = {name: getattr(exp, name) for name in UPDATABLE}
    if fields["time_added"] is None:
        fields["time_added"] = now
    row = SqlExperiment(key=exp.key, status=Status(exp.status).value, **column_values(fields))
    row.artifacts = [artifact_row(exp.key, a.replace(tag=tag)) for tag, a in exp.artifacts.items()]
    return row


def artifact_row(key: str, a: ArtifactSpec) -> SqlArtifact:
    return SqlArtifact(
        experiment_key=key,
        tag=a.tag,
        mutable=a.mutable,
        local_path=a.local_path,
        source=a.source,
        tree=a.tree,
        size=a.size,
        files=a.files,
        updated=a.updated,
    )


def load(s: Session, key: str, *, artifacts: bool = True, lock: bool = False) -> SqlExperiment:
    """The row for `key` (locked FOR UPDATE on PostgreSQL with `lock`); NotFoundError if absent."""
    stmt = select(SqlExperiment).where(SqlExperiment.key == key)
    if artifacts:
        stmt = stmt.options(selectinload(SqlExperiment.artifacts))
    if lock:
        stmt = stmt.with_for_update()
    row = s.execute(stmt).scalar_one_or_none()
    if row is None:
        raise not_found(key)
    return row


def exists(s: Session, key: str) -> bool:
    return s.execute(select(SqlExperiment.key).where(SqlExperiment.key == key)).first() is not None


def add_event(
    s: Session,
    key: str,
    status: Status | str,
    *,
    at: float | None = None,
    reason: str | None = None,
    worker: str | None = None,
) -> None:
    s.add(
        SqlStatusEvent(
            experiment_key=key,
            status=Status(status).value,
            time=time.time() if at is None else at,
            reason=reason,
            worker=worker,
        )
    )


def change_status(
    s: Session,
    row: SqlExperiment,
    status: Status,
    *,
    now: float,
    reason: str | None = None,
    worker: str | None = None,
) -> None:
    """Apply the bookkeeping every status change implies, and record the event.
    The caller has checked the transition."""
    row.status = status.value
    row.status_reason = reason
    if status is Status.RUNNING:
        row.heartbeat = now
        row.time_finished = None
        if worker is not None:
            row.worker = worker
    elif status is Status.QUEUED:
        row.worker = None
        row.lease_expires = None
    else:
        row.lease_expires = None
        if row.time_finished is None:
            row.time_finished = now
    add_event(s, row.key, status, at=now, reason=reason, worker=worker)
