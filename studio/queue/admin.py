"""Queue inspection and clean-up: what `studio queue list|show|purge` call."""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.context import Context
from studio.entities import Experiment, ExperimentQuery, Status
from studio.exceptions import ConflictError, NotFoundError

STATUS_ORDER = tuple(s.value for s in Status)


@dataclass(frozen=True)
class QueueInfo:
    name: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "total": self.total, "counts": dict(self.counts)}


@dataclass(frozen=True)
class PurgeResult:
    queue: str
    deleted: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)


def _refresh(ctx: Context) -> None:
    ctx.meta.requeue_expired(ctx.settings.max_attempts)


def list_queues(ctx: Context) -> list[QueueInfo]:
    """Every queue that holds experiments, with counts by status (lapsed leases resolved first)."""
    _refresh(ctx)
    counts = ctx.meta.queue_counts()
    return [
        QueueInfo(name, {s: counts[name][s] for s in STATUS_ORDER if counts[name].get(s)})
        for name in sorted(counts)
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
    worker claims at the same moment is never deleted under it.
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
