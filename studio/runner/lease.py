"""Keeping an experiment's lease alive while its supervisor is busy with something else."""

from __future__ import annotations

import logging
import threading

from studio.context import Context
from studio.exceptions import ConflictError, StoreError

log = logging.getLogger(__name__)


class LeaseKeeper:
    """Renews an experiment's lease from a background thread while its supervisor is busy
    with something other than the child (materializing, building an environment, the final
    checkpoint). `lost`: someone else holds the experiment now; `stop_requested`: a user
    asked to stop it."""

    def __init__(self, ctx: Context, key: str, worker: str) -> None:
        self.ctx, self.key, self.worker = ctx, key, worker
        self.lost = False
        self.stop_requested = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="studio-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def renew(self) -> bool:
        """One heartbeat now; False if the lease is lost (store errors count as held)."""
        try:
            if self.ctx.meta.heartbeat(self.key, self.worker, self.ctx.settings.lease_seconds):
                self.stop_requested = True
        except ConflictError:
            self.lost = True
        except Exception as exc:
            log.warning("heartbeat of %s failed; will retry: %s", self.key, exc,
                        exc_info=not isinstance(exc, StoreError))
        return not self.lost

    def _loop(self) -> None:
        while not self._done.wait(self.ctx.settings.heartbeat_seconds):
            if not self.renew():
                return
