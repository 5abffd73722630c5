"""The metadata schema's rows as plain values, shared by every SQL implementation.

Row -> entity conversions, entity -> column values, and the bookkeeping a status change
implies. Nothing here imports SQLAlchemy: the SQLAlchemy store (`studio.meta.sql`) and the
stdlib-sqlite3 fast path (`studio.meta.lite`) both build on it, so they store and return the
same values. The tables themselves are defined once, in `studio.meta.sql.tables`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from studio.entities import (
    ArtifactSpec,
    Experiment,
    MetricSummary,
    Status,
    StatusEvent,
    check_transition,
)
from studio.exceptions import ConflictError, NotFoundError, UsageError

#: The newest migration in `studio/meta/sql/migrations/versions` (a test checks they agree):
#: the schema these records describe.
HEAD_REVISION = "0008"

ABANDONED_AFTER = 60.0  # seconds a queued experiment without a queue may take to start

#: Resource needs copied out of `resources` into plain columns so `claim` can test the fit in SQL.
RESOURCE_NAMES = ("cpus", "gpus", "ram", "hdd")

# Times a client records that leases and lifetimes are judged against. Where machines with
# different clocks share one store (a team server, a shared PostgreSQL), they are moved to the
# store's clock by the difference between the two (`shift_times`); a difference under
# MIN_SKEW_S is latency, not a wrong clock, and moves nothing.
TIME_FIELDS = ("time_added", "time_started", "time_last_checkpoint", "time_finished", "heartbeat", "lease_expires")
MIN_SKEW_S = 1.0


def shift_times(fields: Mapping[str, Any], skew: float) -> dict[str, Any]:
    """`fields` with each of TIME_FIELDS that holds a number moved by `skew` seconds."""
    out = dict(fields)
    if not skew:
        return out
    for name in TIME_FIELDS:
        value = out.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value + skew
    return out


#: Columns of `experiments` holding JSON (JSONB on PostgreSQL, JSON text on SQLite).
JSON_LISTS = ("args", "pythonenv", "python_pkgs", "tags")
JSON_DICTS = ("params", "env", "git", "host", "resources")
JSON_COLUMNS = JSON_LISTS + JSON_DICTS

#: Fields `update_experiment` / `set_status(**fields)` may set.
UPDATABLE = frozenset(
    f.name
    for f in Experiment.__dataclass_fields__.values()
    if f.name not in ("key", "status", "artifacts")
)


def not_found(key: str) -> NotFoundError:
    return NotFoundError(f"no experiment {key!r}: list experiments with `studio runs list`")


def duplicate_key(key: str) -> str:
    """The message for an experiment key that already exists."""
    return (
        f"experiment {key!r} already exists: pick another key with --experiment, "
        f"or delete the old one with `studio runs kill {key}`"
    )


def column_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Entity field values -> column values (tuples to lists, resources to need_* columns)."""
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise UsageError(
            f"cannot set {', '.join(sorted(unknown))} on an experiment: "
            "status changes go through set_status, artifacts through put_artifact"
        )
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if name in JSON_LISTS:
            value = list(value or ())
        elif name in JSON_DICTS:
            value = dict(value or {})
        elif name in ("module", "stop_requested"):
            value = bool(value)
        elif name == "attempts":
            value = int(value or 0)
        elif name == "note":
            value = value or ""
        elif name == "stop_status":
            value = Status(value).value if value is not None else None
        values[name] = value
    if "resources" in values:
        values.update(resource_needs(values["resources"]))
    return values


def new_experiment_values(exp: Experiment, now: float) -> dict[str, Any]:
    """The `experiments` row inserting `exp` (`time_added` now if unset)."""
    if not exp.key or len(exp.key) > 255:
        raise UsageError(f"experiment key {exp.key!r} must be 1 to 255 characters")
    values = column_values({name: getattr(exp, name) for name in UPDATABLE})
    if values["time_added"] is None:
        values["time_added"] = now
    values["key"] = exp.key
    values["status"] = Status(exp.status).value
    return values


def artifact_values(key: str, a: ArtifactSpec) -> dict[str, Any]:
    return {
        "experiment_key": key,
        "tag": a.tag,
        "mutable": bool(a.mutable),
        "local_path": a.local_path,
        "source": a.source,
        "tree": a.tree,
        "size": int(a.size or 0),
        "files": int(a.files or 0),
        "updated": a.updated,
    }


def metric_values(key: str, m: MetricSummary, now: float) -> dict[str, Any]:
    return {
        "experiment_key": key,
        "name": m.key,
        "last": null_if_nan(m.last),
        "min": null_if_nan(m.min),
        "max": null_if_nan(m.max),
        "count": m.count,
        "last_step": m.last_step,
        "updated": now if m.updated is None else m.updated,
    }


def check_status_change(
    key: str, current: Status, new: Status, allowed: set[Status] | None
) -> None:
    """Raise ConflictError unless `current` is one of `allowed` (a compare-and-set; None: any)
    and current -> new is a legal change."""
    if allowed is not None and current not in allowed:
        expected = " or ".join(sorted(x.value for x in allowed)) or "nothing"
        raise ConflictError(f"experiment {key} is {current}, not {expected}: it changed meanwhile")
    check_transition(current, new)


def lease_lost(key: str, worker: str, status: str, holder: str | None) -> ConflictError:
    """The error of a heartbeat from a worker that no longer holds the experiment."""
    return ConflictError(
        f"experiment {key} is no longer held by worker {worker} "
        f"(status {status}, worker {holder}): stop running it"
    )


#: What an upsert of a metric summary replaces.
METRIC_UPDATES = ("last", "min", "max", "count", "last_step", "updated")


def status_changes(
    row: Mapping[str, Any],
    status: Status,
    *,
    now: float,
    reason: str | None = None,
    worker: str | None = None,
    fields: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The column values a status change writes (the caller checked the transition): the
    bookkeeping it implies, then `fields`.

    To `running`: heartbeat now, `time_started` now if unset, worker set; to `queued`: worker
    and lease cleared; to a terminal status: lease cleared, `time_finished` now if unset."""
    changes: dict[str, Any] = {"status": status.value, "status_reason": reason}
    if status is Status.RUNNING:
        changes.update(heartbeat=now, time_finished=None)
        if row["time_started"] is None:
            changes["time_started"] = now
        if worker is not None:
            changes["worker"] = worker
    elif status is Status.QUEUED:
        changes.update(worker=None, lease_expires=None)
    else:
        changes["lease_expires"] = None
        if row["time_finished"] is None:
            changes["time_finished"] = now
    changes.update(fields or {})
    return changes


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
        name=row["name"],
        tags=tuple(row["tags"] or ()),
        note=row["note"] or "",
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
