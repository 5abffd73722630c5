"""Queue inspection and clean-up: what `studio queue list|show|purge` call."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from studio.context import Context
from studio.entities import Experiment, ExperimentQuery, Status
from studio.exceptions import AccessError, ConflictError, NotFoundError

STATUS_ORDER = tuple(s.value for s in Status)


#: A worker not heard from for this long (and not running anything) no longer serves its queue.
PRESENCE_TTL = 60.0


@dataclass(frozen=True)
class QueueInfo:
    name: str
    counts: dict[str, int]
    workers: tuple[dict[str, object], ...] = ()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "total": self.total, "counts": dict(self.counts), "workers": list(self.workers)}


@dataclass(frozen=True)
class PurgeResult:
    queue: str
    deleted: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)  # other users' (a team server refused them)


def _refresh(ctx: Context) -> None:
    ctx.meta.requeue_expired(ctx.settings.max_attempts)


def live_workers(ctx: Context) -> list[dict[str, object]]:
    """Workers that serve a queue now: heard from within PRESENCE_TTL, or running an
    experiment that is still running (a busy worker reports again only when it finishes)."""
    rows = ctx.meta.workers()
    busy = [str(w["experiment"]) for w in rows if w["state"] == "busy" and w["experiment"]]
    running = {e.key for e in ctx.meta.get_experiments(busy) if e.status == Status.RUNNING} if busy else set()
    now = time.time()
    return [w for w in rows if now - float(w["last_seen"]) <= PRESENCE_TTL or w["experiment"] in running]


def list_queues(ctx: Context) -> list[QueueInfo]:
    """Every queue that holds experiments or has a live worker, with counts by status (lapsed
    leases resolved first) and the workers serving it."""
    _refresh(ctx)
    counts = ctx.meta.queue_counts()
    workers: dict[str, list[dict[str, object]]] = {}
    for w in live_workers(ctx):
        workers.setdefault(str(w["queue"]), []).append(w)
    return [
        QueueInfo(name, {s: counts.get(name, {})[s] for s in STATUS_ORDER if counts.get(name, {}).get(s)},
                  tuple(workers.get(name, ())))
        for name in sorted(set(counts) | set(workers))
    ]


def queue_experiments(ctx: Context, name: str, limit: int | None = None,
                      statuses: tuple[Status, ...] = ()) -> list[Experiment]:
    """The queue's experiments, oldest first. NotFoundError for a queue that holds none."""
    _refresh(ctx)
    page = ctx.meta.query(ExperimentQuery(queue=name, status=statuses, order_by="time_added", limit=limit))
    if page.total == 0 and not statuses:
        raise NotFoundError(f"no queue named {name!r}: list queues with `studio queue list`")
    return page.items


def purge_queue(ctx: Context, name: str) -> PurgeResult:
    """Delete the queue's queued experiments; running ones are left alone and reported.

    Each one is first moved queued -> stopped with a compare-and-set, so an experiment a
    worker claims at the same moment is never deleted under it. On a team server a user
    purges only their own; other users' are left alone and reported in `others`.
    """
    items = queue_experiments(ctx, name)
    result = PurgeResult(queue=name)
    for exp in items:
        if exp.status == Status.RUNNING:
            result.running.append(exp.key)
            continue
        if exp.status != Status.QUEUED:
            continue
        try:
            ctx.meta.set_status(exp.key, Status.STOPPED, expect=[Status.QUEUED], reason="purged from its queue")
        except AccessError:  # on a team server, only the owner (or an admin) may
            result.others.append(exp.key)
            continue
        except ConflictError:
            result.running.append(exp.key)  # claimed meanwhile
            continue
        except NotFoundError:
            continue
        try:
            ctx.meta.delete_experiment(exp.key)
        except NotFoundError:
            pass
        result.deleted.append(exp.key)
    return result
