"""The queue on the experiments table: claim, heartbeat, stop requests, lease expiry.

Each function runs inside one write transaction (see `engine.Transactions`). On SQLite that
transaction holds the database's write lock from its first statement (`BEGIN IMMEDIATE`), so a
claim reads and updates with no other writer in between. On PostgreSQL the candidate row is
locked with `FOR UPDATE SKIP LOCKED`: concurrent claimers skip each other's rows instead of
waiting, and no row is handed out twice.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from studio.entities import Experiment, Status
from studio.exceptions import ConflictError, UsageError
from studio.meta.sql.models import RESOURCE_NAMES, SqlExperiment
from studio.meta.sql.rows import change_status, load, not_found


def _skip_locked(s: Session, stmt: Select[Any]) -> Select[Any]:
    # SQLite has no row locks (and no FOR UPDATE): its IMMEDIATE transaction serialises writers.
    if s.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update(skip_locked=True)
    return stmt


def _fits(resources: dict[str, Any] | None) -> list[Any]:
    """SQL conditions: the experiment needs no more than `resources` offers. A resource the
    worker does not list is not checked (workers list all four; see `studio.queue`)."""
    conds = []
    for name, value in (resources or {}).items():
        if name not in RESOURCE_NAMES or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise UsageError(
                f"worker resource `{name}` must be a non-negative number, got {value!r}"
            )
        conds.append(getattr(SqlExperiment, f"need_{name}") <= float(value))
    return conds


def claim(
    s: Session, queue: str, worker: str, lease_seconds: float, resources: dict[str, Any] | None
) -> Experiment | None:
    now = time.time()
    stmt = (
        select(SqlExperiment)
        .where(
            SqlExperiment.queue == queue,
            SqlExperiment.status == Status.QUEUED.value,
            # Past its lifetime it is discarded by requeue_expired, never started.
            or_(
                SqlExperiment.lifetime.is_(None),
                SqlExperiment.time_added + SqlExperiment.lifetime >= now,
            ),
            *_fits(resources),
        )
        .order_by(SqlExperiment.time_added, SqlExperiment.key)
        .limit(1)
        .options(selectinload(SqlExperiment.artifacts))
    )
    row = s.execute(_skip_locked(s, stmt)).scalar_one_or_none()
    if row is None:
        return None
    row.attempts = (row.attempts or 0) + 1
    row.lease_expires = now + lease_seconds
    row.time_started = now
    change_status(s, row, Status.RUNNING, now=now, worker=worker)
    return row.to_entity()


def heartbeat(s: Session, key: str, worker: str, lease_seconds: float) -> bool:
    now = time.time()
    stmt = (
        update(SqlExperiment)
        .where(
            SqlExperiment.key == key,
            SqlExperiment.status == Status.RUNNING.value,
            SqlExperiment.worker == worker,
        )
        .values(heartbeat=now, lease_expires=now + lease_seconds)
        .returning(SqlExperiment.stop_requested)
    )
    held = s.execute(stmt).first()
    if held is not None:
        return bool(held[0])
    current = s.execute(
        select(SqlExperiment.status, SqlExperiment.worker).where(SqlExperiment.key == key)
    ).first()
    if current is None:
        raise not_found(key)
    raise ConflictError(
        f"experiment {key} is no longer held by worker {worker} "
        f"(status {current[0]}, worker {current[1]}): stop running it"
    )


def request_stop(s: Session, key: str) -> Experiment:
    row = load(s, key, lock=True)
    if row.status == Status.QUEUED.value:
        change_status(
            s, row, Status.STOPPED, now=time.time(), reason="stop requested before it started"
        )
    elif row.status == Status.RUNNING.value:
        row.stop_requested = True
    return row.to_entity()


def requeue_expired(s: Session, now: float, max_attempts: int) -> list[str]:
    changed: list[str] = []
    lapsed = select(SqlExperiment).where(
        SqlExperiment.status == Status.RUNNING.value, SqlExperiment.lease_expires < now
    )
    for row in s.execute(_skip_locked(s, lapsed)).scalars().all():
        who = f"worker {row.worker}" if row.worker else "its supervisor"
        if row.queue is not None and row.attempts < max_attempts:
            reason = f"lease of {who} expired (attempt {row.attempts} of {max_attempts}); requeued"
            change_status(s, row, Status.QUEUED, now=now, reason=reason, worker=row.worker)
        else:
            tried = f" after {row.attempts} attempts" if row.queue is not None else ""
            reason = f"heartbeat of {who} lapsed{tried}"
            row.time_finished = row.heartbeat if row.heartbeat is not None else now
            change_status(s, row, Status.LOST, now=now, reason=reason, worker=row.worker)
        changed.append(row.key)
    stale = select(SqlExperiment).where(
        SqlExperiment.status == Status.QUEUED.value,
        SqlExperiment.lifetime.is_not(None),
        SqlExperiment.time_added + SqlExperiment.lifetime < now,
    )
    for row in s.execute(_skip_locked(s, stale)).scalars().all():
        reason = f"not started within its lifetime of {row.lifetime:g}s; discarded"
        change_status(s, row, Status.LOST, now=now, reason=reason)
        changed.append(row.key)
    return changed


def queue_counts(s: Session) -> dict[str, dict[str, int]]:
    rows = s.execute(
        select(SqlExperiment.queue, SqlExperiment.status, func.count())
        .where(SqlExperiment.queue.is_not(None))
        .group_by(SqlExperiment.queue, SqlExperiment.status)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for queue, status, n in rows:
        counts.setdefault(str(queue), {})[status] = int(n)
    return counts
