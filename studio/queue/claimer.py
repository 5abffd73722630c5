"""Taking work from a queue: claim with a lease, poll cheaply when idle, recover lapsed leases.

The metadata store does the atomic part (`MetaStore.claim`: `FOR UPDATE SKIP LOCKED` on
PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so any number of workers on any number of machines
share a queue with no broker. This module adds the worker-side policy:

- idle polling every `poll_seconds` (0.2 s by default), so an idle worker starts a submitted
  experiment well within a second; a claim on an empty queue is one indexed query. On a
  SQLite database (one machine) the worker also looks every `PROBE_SECONDS` whether the
  database files changed (a commit by any process changes their size or mtime): a `stat`,
  no query. If they did, it claims at once, so a submitted experiment is picked up within
  a few tens of milliseconds rather than half a poll on average;
- every few seconds, `requeue_expired`: experiments whose worker stopped heartbeating go back
  on their queue (or become `lost` once `max_attempts` are used up), and queued experiments
  older than their `--lifetime` are discarded. Every worker does this for every queue, so a
  crashed worker's experiment comes back as long as any worker is alive anywhere;
- a transient store error (database restarting, network blip) is logged and retried with a
  growing pause instead of killing the worker.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from studio.config import Settings
from studio.entities import Experiment, Status
from studio.exceptions import ConflictError, StoreError
from studio.meta.base import MetaStore

log = logging.getLogger(__name__)

MAX_ERROR_PAUSE = 10.0
#: How often an idle worker on SQLite looks at the database files, and the least time between
#: two claims that such a change brings forward (a busy database must not turn idle workers'
#: polling into a claim, a short write transaction, per commit of every running experiment).
PROBE_SECONDS = 0.02
MIN_CLAIM_GAP = 0.05


class ChangeProbe:
    """`probe() -> changed?` for a SQLite database: whether its file or its WAL changed size or
    mtime since the last call. For other stores (or no file) it never reports a change."""

    def __init__(self, database_url: str | None) -> None:
        from studio.meta.lite import sqlite_file

        db = sqlite_file(database_url) if database_url else None
        self.files = [str(db), f"{db}-wal"] if db is not None else []
        self._last = self._state()

    def _state(self) -> tuple[tuple[int, int], ...]:
        state = []
        for path in self.files:
            try:
                st = os.stat(path)
                state.append((st.st_size, st.st_mtime_ns))
            except OSError:
                state.append((-1, -1))
        return tuple(state)

    def __call__(self) -> bool:
        if not self.files:
            return False
        now = self._state()
        changed, self._last = now != self._last, now
        return changed


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
        self.probe = ChangeProbe(getattr(settings, "database_url", None))

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
            self.probe()  # what the claim itself (and a sweep) wrote is no news
            _sleep(pause, should_stop, self.probe)
        return None


def _sleep(seconds: float, should_stop: Callable[[], bool], changed: Callable[[], bool] | None = None) -> None:
    """Sleep up to `seconds`; from MIN_CLAIM_GAP on, return early once `changed()` says so."""
    start = time.monotonic()
    end = start + seconds
    step = PROBE_SECONDS if changed is not None else 0.05
    seen = False
    while not should_stop():
        now = time.monotonic()
        left = end - now
        if left <= 0:
            return
        seen = seen or (changed is not None and changed())
        if seen and now - start >= MIN_CLAIM_GAP - PROBE_SECONDS:
            return
        time.sleep(min(left, step))
