"""Lapsed runs: mark them (requeue or `lost`), and keep what a lost run left on this machine.

A supervisor that dies (kill -9, OOM killer, power loss) records nothing more: its lease
lapses and whoever looks next marks the run `lost` (`MetaStore.requeue_expired`). What the
script logged since the last checkpoint is still in the run's folder on the machine it ran on.
When that folder is reachable here (same host, same STUDIOML_HOME: the next `studio` command,
worker or dashboard on that machine), its metrics are summarized and folded (`--metric`) and
its mutable artifacts captured, exactly as the supervisor's final checkpoint would have done,
so `runs show`, the table, sorting by metric and `workbook.runs()` see them.

`LapseWatcher` does this periodically from a background thread, so a dashboard or worker that
is up notices a lost run within a fraction of the lease instead of at the next command.
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from studio.context import Context
from studio.entities import Experiment, Status
from studio.exceptions import StudioError

log = logging.getLogger(__name__)

_WORKER_FILES = {"output": "output.log"}  # see runner/remote.py: a worker's run directory


def retire_lapsed(ctx: Context) -> list[str]:
    """`requeue_expired` now, then salvage the runs it made `lost` whose data is here."""
    changed = ctx.meta.requeue_expired(ctx.settings.max_attempts)
    if changed:
        salvage(ctx, changed)
    return changed


def salvage(ctx: Context, keys: Iterable[str]) -> list[str]:
    """Store what the `lost` runs among `keys` left on this machine; returns the keys saved.
    Never raises: a run that cannot be salvaged stays as it was recorded."""
    saved = []
    try:
        experiments = ctx.meta.get_experiments(list(keys))
    except StudioError as exc:
        log.warning("could not look up lost experiments: %s", exc)
        return []
    for exp in experiments:
        if exp.status != Status.LOST:
            continue
        try:
            if salvage_one(ctx, exp):
                saved.append(exp.key)
        except Exception as exc:
            log.warning("could not store what lost experiment %s left: %s", exp.key, exc)
    return saved


def ran_here(exp: Experiment) -> bool:
    """Worker ids start with the host name (`api.run.worker_id`; workbook ones with `workbook:`)."""
    worker = (exp.worker or "").removeprefix("workbook:")
    return bool(worker) and worker.split(":", 1)[0] == socket.gethostname()


def run_paths(ctx: Context, exp: Experiment) -> tuple[dict[str, Path], Path | None]:
    """tag -> where the run kept each mutable artifact on this machine (existing paths only),
    and the worker's run directory if it ran under a worker here."""
    from studio.runner.worker import _safe

    workdir = ctx.settings.home / "workers" / _safe(exp.worker or "") / exp.key
    paths: dict[str, Path] = {}
    for tag, art in exp.artifacts.items():
        if not art.mutable or art.source or tag == "workspace":
            continue  # the workspace is the user's folder (or a copy): not what the run logged
        if workdir.is_dir():
            path = workdir / _WORKER_FILES.get(tag, tag)
        elif art.local_path:
            path = Path(art.local_path)
        else:
            continue
        if path.exists():
            paths[tag] = path
    return paths, (workdir if workdir.is_dir() else None)


def salvage_one(ctx: Context, exp: Experiment) -> bool:
    from studio.runner.checkpoint import Checkpointer, _private_name

    if not ran_here(exp):
        return False
    paths, workdir = run_paths(ctx, exp)
    if not paths:
        return False
    checkpointer = Checkpointer(ctx, exp.key, exp.artifacts, paths, ignore={"metrics": _private_name},
                                metric=exp.metric)
    checkpointer.checkpoint()
    log.info("stored what lost experiment %s left: %s", exp.key, ", ".join(sorted(paths)))
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
    return True


class LapseWatcher:
    """Calls `retire_lapsed` every `interval` seconds from a daemon thread until closed."""

    def __init__(self, ctx: Context, interval: float, after: Callable[[], object] | None = None) -> None:
        """`after()`: called after each look (workers tidy up run directories of dead ones)."""
        self.ctx = ctx
        self.interval = interval
        self.after = after
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="studio-lapse-watcher", daemon=True)

    def start(self) -> LapseWatcher:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        warned = False
        while not self._stop.wait(self.interval):
            try:
                retire_lapsed(self.ctx)
                if self.after is not None:
                    self.after()
                warned = False
            except Exception as exc:  # a store blip (or a read-only store): try again next time
                (log.debug if warned else log.warning)("could not look for lapsed experiments: %s", exc)
                warned = True
