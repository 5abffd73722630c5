"""The queue on the experiments table: claim, heartbeat, stop requests, lease expiry.

Each function runs inside one write transaction (see `engine.Transactions`) and judges time by
the `now` its store gives (`SqlMetaStore.clock_skew`: the database's clock on PostgreSQL). On SQLite that
transaction holds the database's write lock from its first statement (`BEGIN IMMEDIATE`), so a
claim reads and updates with no other writer in between. On PostgreSQL the candidate row is
locked with `FOR UPDATE SKIP LOCKED`: concurrent claimers skip each other's rows instead of
waiting, and no row is handed out twice.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, Select, func, or_, select, update

from studio.entities import Experiment, Status
from studio.exceptions import UsageError
from studio.meta.records import ABANDONED_AFTER, lease_lost
from studio.meta.sql.rows import EXPERIMENTS as E
from studio.meta.sql.rows import change_status, entity, load, not_found, update_row
from studio.meta.sql.tables import RESOURCE_NAMES


def _skip_locked(s: Connection, stmt: Select[Any]) -> Select[Any]:
    # SQLite has no row locks (and no FOR UPDATE): its IMMEDIATE transaction serialises writers.
    if s.dialect.name == "postgresql":
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
        conds.append(E.c[f"need_{name}"] <= float(value))
    return conds


def claim(
    s: Connection, queue: str, worker: str, lease_seconds: float, resources: dict[str, Any] | None,
    now: float | None = None,
) -> Experiment | None:
    now = time.time() if now is None else now
    stmt = (
        select(E)
        .where(
            E.c.queue == queue,
            E.c.status == Status.QUEUED.value,
            # Past its lifetime it is discarded by requeue_expired, never started.
            or_(E.c.lifetime.is_(None), E.c.time_added + E.c.lifetime >= now),
            *_fits(resources),
        )
        .order_by(E.c.time_added, E.c.key)
        .limit(1)
    )
    row = s.execute(_skip_locked(s, stmt)).mappings().first()
    if row is None:
        return None
    fields = {
        "attempts": (row["attempts"] or 0) + 1,
        "lease_expires": now + lease_seconds,
        "time_started": now,  # of this attempt
        "stop_requested": False,
        "stop_status": None,
        "stop_reason": None,
    }
    changes = change_status(s, row, Status.RUNNING, now=now, worker=worker, fields=fields)
    return entity(s, row, changes)


def heartbeat(s: Connection, key: str, worker: str, lease_seconds: float, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    held = (E.c.key == key, E.c.status == Status.RUNNING.value, E.c.worker == worker)
    # UPDATE then SELECT rather than UPDATE ... RETURNING, which needs SQLite 3.35.
    result = s.execute(
        update(E).where(*held).values(heartbeat=now, lease_expires=now + lease_seconds)
    )
    if getattr(result, "rowcount", 0):
        return bool(s.execute(select(E.c.stop_requested).where(E.c.key == key)).scalar())
    current = s.execute(select(E.c.status, E.c.worker).where(E.c.key == key)).first()
    if current is None:
        raise not_found(key)
    raise lease_lost(key, worker, current[0], current[1])


def request_stop(
    s: Connection, key: str, status: Status = Status.STOPPED, reason: str | None = None,
    now: float | None = None,
) -> Experiment:
    row = load(s, key, lock=True)
    changes: dict[str, Any] = {}
    if row["status"] == Status.QUEUED.value:
        reason = reason or "stop requested before it started"
        changes = change_status(s, row, Status.STOPPED, now=time.time() if now is None else now, reason=reason)
    elif row["status"] == Status.RUNNING.value and not row["stop_requested"]:
        changes = {
            "stop_requested": True,
            "stop_status": Status(status).value,
            "stop_reason": reason,
        }
        update_row(s, key, changes)
    return entity(s, row, changes)


def requeue_expired(s: Connection, max_attempts: int, now: float | None = None) -> list[str]:
    # `now`: the store's clock (the database's, for a shared PostgreSQL; the server's, for
    # clients of a studio server), never a caller's.
    now = time.time() if now is None else now
    changed: list[str] = []
    lapsed = select(E).where(E.c.status == Status.RUNNING.value, E.c.lease_expires < now)
    for row in s.execute(_skip_locked(s, lapsed)).mappings().all():
        who = f"worker {row['worker']}" if row["worker"] else "its supervisor"
        attempts = row["attempts"] or 0
        if row["stop_requested"]:
            # Record what the stop asked for (e.g. `pruned`), not a rerun.
            stop = Status(row["stop_status"] or Status.STOPPED.value)
            reason = row["stop_reason"] or f"stop was requested and the lease of {who} expired"
            change_status(s, row, stop, now=now, reason=reason, worker=row["worker"])
        elif row["queue"] is not None and attempts < max_attempts:
            reason = f"lease of {who} expired (attempt {attempts} of {max_attempts}); requeued"
            change_status(s, row, Status.QUEUED, now=now, reason=reason, worker=row["worker"])
        else:
            tried = f" after {attempts} attempts" if row["queue"] is not None else ""
            # It was last known alive at its last heartbeat.
            end = {"time_finished": row["heartbeat"] if row["heartbeat"] is not None else now}
            reason = f"heartbeat of {who} lapsed{tried}"
            change_status(
                s, row, Status.LOST, now=now, reason=reason, worker=row["worker"], fields=end
            )
        changed.append(row["key"])
    # Queued with no queue: no worker serves it, and nothing studio writes now is born so
    # (local runs are born `running`): a preparation an older client abandoned.
    abandoned = select(E).where(
        E.c.status == Status.QUEUED.value,
        E.c.queue.is_(None),
        E.c.time_added < now - ABANDONED_AFTER,
    )
    for row in s.execute(_skip_locked(s, abandoned)).mappings().all():
        reason = "abandoned while being prepared (its supervisor never started it)"
        change_status(s, row, Status.LOST, now=now, reason=reason)
        changed.append(row["key"])
    stale = select(E).where(
        E.c.status == Status.QUEUED.value,
        E.c.lifetime.is_not(None),
        E.c.time_added + E.c.lifetime < now,
    )
    for row in s.execute(_skip_locked(s, stale)).mappings().all():
        reason = f"not started within its lifetime of {row['lifetime']:g}s; discarded"
        change_status(s, row, Status.LOST, now=now, reason=reason)
        changed.append(row["key"])
    return changed


def queue_counts(s: Connection) -> dict[str, dict[str, int]]:
    rows = s.execute(
        select(E.c.queue, E.c.status, func.count())
        .where(E.c.queue.is_not(None))
        .group_by(E.c.queue, E.c.status)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for queue, status, n in rows:
        counts.setdefault(str(queue), {})[status] = int(n)
    return counts
