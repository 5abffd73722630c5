"""Queues on top of the metadata store: claim with a lease, heartbeat, requeue, inspect.

    Claimer       a worker's side of a queue: poll, claim, recover lapsed leases (claimer.py)
    list_queues   queues with counts by status; `queue_experiments`, `purge_queue` (admin.py)

The atomic claim itself is `MetaStore.claim`; there is no broker besides the database.
"""

from __future__ import annotations

from studio.queue.admin import PurgeResult, QueueInfo, list_queues, purge_queue, queue_experiments
from studio.queue.claimer import Claimer, requeue_interval

__all__ = [
    "Claimer",
    "PurgeResult",
    "QueueInfo",
    "list_queues",
    "purge_queue",
    "queue_experiments",
    "requeue_interval",
]
