"""The local worker processes of a sweep, and the driver's interrupt handling.

A sweep starts its local workers once (`studio.runner.pool.start_worker`, the processes `drain`
uses) and keeps them for its whole life, replacing any that exit while work remains; idle
between generations, they cost one indexed claim query per poll.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

from studio.api.context import Context

log = logging.getLogger(__name__)


class LocalPool:
    """The sweep's local worker processes on its queue, for the sweep's whole life."""

    def __init__(self, ctx: Context, queue: str, size: int) -> None:
        self.ctx, self.queue, self.size = ctx, queue, size
        self.procs: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self._stamp = time.strftime("%Y%m%d-%H%M%S")
        self._numbers = itertools.count()

    def _spawn(self) -> None:
        from studio.runner.pool import start_worker

        idle = max(60.0, 3 * self.ctx.settings.lease_seconds)
        log_file = self.ctx.settings.home / "workers" / "logs" / f"{self.queue}-{self._stamp}-{next(self._numbers)}.log"
        self.procs.append(start_worker(self.ctx, self.queue, idle, False, log_file))

    def ensure_running(self) -> bool:
        """Start missing workers (replacing ones that exited); False once restarts are used up."""
        from studio.runner.pool import MAX_RESTARTS

        for proc in [p for p in self.procs if p.poll() is not None]:
            log.warning("local worker %d exited with %s", proc.pid, proc.returncode)
            self.procs.remove(proc)
        while len(self.procs) < self.size:
            if self.restarts >= MAX_RESTARTS + self.size:
                return bool(self.procs)
            self.restarts += 1
            self._spawn()
        return True

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        from studio.runner.pool import stop_workers

        stop_workers(self.procs)
        self.procs = []


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the driver the way Ctrl-C does (checkpoint saved, local workers stopped).
    SIGINT is handled explicitly too: a shell starting the driver in the background leaves it
    ignored, and the workers (which do handle it) would otherwise stop while the driver went on."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
