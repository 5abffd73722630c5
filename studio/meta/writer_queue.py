"""`WriterQueue`: the writers of one SQLite file queue on an `flock` before they BEGIN.

Shared by both SQLite implementations (`studio.meta.sql`, `studio.meta.lite`), so the two
queue alike when processes of either kind write to one database.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # Windows: the thread lock and SQLite's own locking remain
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: How long a SQLite connection waits for the database lock before "database is locked".
BUSY_TIMEOUT_S = 30.0
#: How often a transaction is retried after a transient error (lock, serialization, dropped).
RETRIES = 5


def retry_delay(attempt: int) -> float:
    """Seconds to wait before retry `attempt` (0-based): exponential, jittered, at most 3 s."""
    return min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())


class WriterQueue:
    """Serialises the write transactions of this machine's processes on one SQLite file: a
    thread lock within the process, an `flock` across processes. Purely a fairness and speed
    measure; correctness rests on BEGIN IMMEDIATE (writers that skip the queue are still safe).
    Where `fcntl` or the lock file is unavailable, only the thread lock is used."""

    def __init__(self, database: str | None) -> None:
        self.path = f"{database}-writers" if database else None
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _descriptor(self) -> int | None:
        # A forked child must not share the parent's open file: flock would not exclude them.
        if self._pid != os.getpid():
            self._fd, self._pid = None, os.getpid()
            if self.path is None:
                return None
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                log.debug("no writer queue at %s: %s", self.path, exc)
        return self._fd

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            fd = self._descriptor()
            if fd is None or fcntl is None:
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
