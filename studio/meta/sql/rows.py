"""Core-statement helpers shared by the store's modules: entity -> column values, locked row
reads, status changes with their events. Everything runs inside the caller's transaction."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from studio.entities import ArtifactSpec, Experiment, Status
from studio.exceptions import ConflictError
from studio.meta.records import (  # noqa: F401 - re-exported for the store's modules
    UPDATABLE,
    artifact_entity,
    artifact_values,
    column_values,
    duplicate_key,
    experiment_entity,
    new_experiment_values,
    not_found,
    status_changes,
)
from studio.meta.sql.tables import ARTIFACTS, EVENTS, EXPERIMENTS

# Statements built once: building and hashing a statement costs about as much as running it.
_INSERT_EXPERIMENT = insert(EXPERIMENTS)
_INSERT_ARTIFACTS = insert(ARTIFACTS)
_INSERT_EVENT = insert(EVENTS)
_SELECT_ROW = select(EXPERIMENTS).where(EXPERIMENTS.c.key == bindparam("k"))
_SELECT_ROW_LOCKED = _SELECT_ROW.with_for_update()  # no-op on SQLite: writers hold the db lock
_SELECT_KEY = select(EXPERIMENTS.c.key).where(EXPERIMENTS.c.key == bindparam("k"))
_SELECT_ARTIFACTS = (
    select(ARTIFACTS).where(ARTIFACTS.c.experiment_key == bindparam("k")).order_by(ARTIFACTS.c.tag)
)
# SET clause from the parameters given at execution; `_k` cannot clash with a column name.
_UPDATE_ROW = update(EXPERIMENTS).where(EXPERIMENTS.c.key == bindparam("_k"))

def is_unique_violation(exc: IntegrityError) -> bool:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) == "23505" or "UNIQUE constraint failed" in str(orig)


def insert_experiment(s: Connection, exp: Experiment, now: float) -> Experiment:
    values = new_experiment_values(exp, now)
    try:
        s.execute(_INSERT_EXPERIMENT, values)
    except IntegrityError as e:
        if is_unique_violation(e):
            raise ConflictError(duplicate_key(exp.key)) from e
        raise
    artifacts = [a.replace(tag=tag) for tag, a in exp.artifacts.items()]
    if artifacts:
        s.execute(_INSERT_ARTIFACTS, [artifact_values(exp.key, a) for a in artifacts])
    add_event(
        s,
        exp.key,
        values["status"],
        at=values["time_added"],
        reason=exp.status_reason,
        worker=exp.worker,
    )
    return experiment_entity(values, artifacts)


def load(s: Connection, key: str, *, lock: bool = False) -> RowMapping:
    """The `experiments` row for `key` (locked FOR UPDATE on PostgreSQL with `lock`)."""
    row = s.execute(_SELECT_ROW_LOCKED if lock else _SELECT_ROW, {"k": key}).mappings().first()
    if row is None:
        raise not_found(key)
    return row


def load_artifacts(s: Connection, keys: Sequence[str]) -> dict[str, list[ArtifactSpec]]:
    found: dict[str, list[ArtifactSpec]] = {k: [] for k in keys}
    stmt = (
        select(ARTIFACTS)
        .where(ARTIFACTS.c.experiment_key.in_(list(keys)))
        .order_by(ARTIFACTS.c.tag)
    )
    for row in s.execute(stmt).mappings():
        found[row["experiment_key"]].append(artifact_entity(row))
    return found


def entity(
    s: Connection, row: Mapping[Any, Any], changes: Mapping[str, Any] | None = None
) -> Experiment:
    """The entity for `row` updated with `changes`, with its artifacts."""
    values = {**row, **(changes or {})}
    artifacts = s.execute(_SELECT_ARTIFACTS, {"k": row["key"]}).mappings()
    return experiment_entity(values, [artifact_entity(a) for a in artifacts])


def exists(s: Connection, key: str) -> bool:
    return s.execute(_SELECT_KEY, {"k": key}).first() is not None


def update_row(s: Connection, key: str, values: Mapping[str, Any]) -> None:
    if values:
        s.execute(_UPDATE_ROW, {"_k": key, **values})


def add_event(
    s: Connection,
    key: str,
    status: Status | str,
    *,
    at: float | None = None,
    reason: str | None = None,
    worker: str | None = None,
) -> None:
    s.execute(
        _INSERT_EVENT,
        {
            "experiment_key": key,
            "status": Status(status).value,
            "time": time.time() if at is None else at,
            "reason": reason,
            "worker": worker,
        },
    )


def change_status(
    s: Connection,
    row: Mapping[Any, Any],
    status: Status,
    *,
    now: float,
    reason: str | None = None,
    worker: str | None = None,
    fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the status change (the caller checked the transition) with the bookkeeping it
    implies (`records.status_changes`), then `fields`; record the event. Returns the changed
    column values."""
    changes = status_changes(row, status, now=now, reason=reason, worker=worker, fields=fields)
    update_row(s, row["key"], changes)
    add_event(s, row["key"], status, at=now, reason=reason, worker=worker)
    return changes
