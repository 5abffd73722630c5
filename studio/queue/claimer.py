"""Taking work from a queue: claim with a lease, poll cheaply when idle, recover lapsed leases.

The metadata store does the atomic part (`MetaStore.claim`: `FOR UPDATE SKIP LOCKED` on
PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so any number of workers on any number of machines
share a queue with no broker. This module adds the worker-side policy:

- idle polling every `poll_seconds` (0.2 s by default), so an idle worker starts a submitted
  experiment well within a second; a claim on an empty queue is one indexed query;
- every few seconds, `requeue_expired`: experiments whose worker stopped heartbeating go back
  on their queue (or become `lost` once `max_attempts` are used up), and queued experiments
  older than their `--lifetime` are discarded. Every worker does this for every queue, so a
  crashed worker's experiment comes back as long as any worker is alive anywhere;
- a transient store error (database restarting, network blip) is logged and retried with a
  growing pause instead of killing the worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from studio.config import Settings
from studio.entities import Experiment, Status
from studio.exceptions import ConflictError, StoreError
from studio.meta.base import MetaStore

log = logging.getLogger(__name__)

MAX_ERROR_PAUSE = 10.0


def requeue_interval(settings: Settings) -> float:
    """How often a worker looks for lapsed leases: a fraction of the lease, 0.5-5 s."""
    return min(5.0, max(0.5, settings.lease_seconds / 4))


class Claimer:
    def __init__(
        self,
        meta: MetaStore,
        settings: Settings,
        queue: str,
        worker: str,
        resources: dict[str, Any] | None = None,
        on_retired: Callable[[list[str]], object] | None = None,
    ) -> None:
        """`on_retired(keys)`: called with what a sweep requeued or marked lost (the worker
        stores what lost runs left on its machine)."""
        self.on_retired = on_retired
        self.meta = meta
        self.settings = settings
        self.queue = queue
        self.worker = worker
        self.resources = resources
        self._next_sweep = 0.0
        self.requeued: list[str] = []

    def sweep(self, force: bool = False) -> list[str]:
        """Run `requeue_expired` if it is due (or `force`); returns the keys it changed."""
        now = time.monotonic()
        if not force and now < self._next_sweep:
            return []
        self._next_sweep = now + requeue_interval(self.settings)
        changed = self.meta.requeue_expired(self.settings.max_attempts)
        if changed:
            log.info("requeued or retired after a lapsed lease or lifetime: %s", ", ".join(changed))
            self.requeued.extend(changed)
            if self.on_retired is not None:
                self.on_retired(changed)
        return changed

    def try_claim(self) -> Experiment | None:
        """One attempt: the oldest fitting queued experiment, now running under our lease."""
        self.sweep()
        while True:
            exp = self.meta.claim(self.queue, self.worker, self.settings.lease_seconds, self.resources)
            if exp is None:
                return None
            if not self._expired(exp):
                return exp

    def _expired(self, exp: Experiment) -> bool:
        """A claim can race the lifetime sweep; an experiment past its lifetime is discarded."""
        if exp.lifetime is None or exp.time_added is None:
            return False
        age = time.time() - exp.time_added
        if age <= exp.lifetime:
            return False
        try:
            self.meta.set_status(
                exp.key, Status.LOST, expect=[Status.RUNNING], worker=self.worker,
                reason=f"lifetime of {exp.lifetime:g}s exceeded while queued ({age:.0f}s old)",
                time_finished=time.time(),
            )  # fmt: skip
        except ConflictError:
            pass
        return True

    def wait_claim(
        self,
        idle_timeout: float | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Experiment | None:
        """Poll until an experiment is claimed; None after `idle_timeout` s or when told to stop."""
        deadline = None if idle_timeout is None else time.monotonic() + idle_timeout
        pause = self.settings.poll_seconds
        while not should_stop():
            try:
                exp = self.try_claim()
                pause = self.settings.poll_seconds
            except StoreError as exc:
                exp = None
                pause = min(MAX_ERROR_PAUSE, max(pause * 2, 0.5))
                log.warning("queue %s: %s; retrying in %.1fs", self.queue, exc, pause)
            if exp is not None:
                return exp
            if deadline is not None and time.monotonic() >= deadline:
                return None
            _sleep(pause, should_stop)
        return None


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    end = time.monotonic() + seconds
    while not should_stop():
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))
