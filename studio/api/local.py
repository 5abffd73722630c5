"""Run an experiment on this machine, in the user's own directories (`studio run` without --queue)."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from studio.api import names
from studio.api.context import Context
from studio.api.run import (
    RunOptions,
    child_env,
    command_for,
    experiment_paths,
    prepare,
    worker_id,
    write_mapping,
)
from studio.entities import Experiment, Status
from studio.exceptions import ConflictError, NotFoundError
from studio.runner.checkpoint import capture_ignores
from studio.runner.executor import Executor, Launch, Outcome
from studio.runner.materialize import cached_tree
from studio.runner.process import Prestarted, stop_signals

log = logging.getLogger(__name__)


def local_paths(ctx: Context, exp: Experiment) -> dict[str, Path]:
    """tag -> local path for a run on the submitter's machine: the original locations."""
    paths = experiment_paths(ctx, exp.key)
    for tag, art in exp.artifacts.items():
        if art.source and art.tree:
            paths[tag] = cached_tree(ctx, art.tree, pin=True)
        elif art.local_path:
            paths[tag] = Path(art.local_path)
    for tag in ("modeldir", "tb", "metrics"):
        if not exp.artifacts.get(tag) or exp.artifacts[tag].mutable:
            paths[tag].mkdir(parents=True, exist_ok=True)
    return paths


def run_local(ctx: Context, opts: RunOptions, announce: bool = True,
              reaper: Prestarted | None = None) -> tuple[Experiment, Outcome]:
    """Prepare and supervise the run here. The experiment is recorded `running` under this
    process's lease (see `prepare`); a SIGINT/SIGTERM before the script starts records
    `stopped`/`killed` (the executor takes over signals once it starts the script).
    `reaper`: one the caller started ahead (`studio run`: with a warm start); used or
    cancelled here."""
    wid = worker_id()
    recording: list[str] = []
    exp: Experiment | None = None
    with startup_signals() as received:
        try:
            # Its interpreter starts on the other core while the workspace is captured.
            reaper = reaper or Prestarted.start()
            exp = prepare(ctx, opts, worker=wid, recording=recording)
            if announce:
                note = names.renamed(opts.key, exp.key)
                print(f"studio: experiment {exp.key} (project {exp.project}{note})", file=sys.stderr, flush=True)
            launch = _local_launch(ctx, exp, opts)
            outcome = Executor(ctx, wid).run(exp, launch, prestarted=reaper)
        except BaseException as exc:
            # A signal may have cut `prepare` short after it recorded the run: look it up.
            if recording and (received or exp is not None):
                _record_not_started(ctx, recording[-1], wid, received[0] if received else None, exc)
            raise
        finally:
            if reaper is not None:
                reaper.cancel()  # not used (an error before the script started): it exits
    return ctx.meta.get_experiment(exp.key), outcome


def _local_launch(ctx: Context, exp: Experiment, opts: RunOptions) -> Launch:
    paths = local_paths(ctx, exp)
    mapping = write_mapping(ctx, exp.key, paths)
    capture = {t: paths[t] for t, a in exp.artifacts.items() if a.mutable and t in paths}
    workspace = paths["workspace"]
    argv = command_for(exp)
    if not exp.module:
        argv[1] = str(workspace / exp.script)
    return Launch(
        argv=argv,
        cwd=opts.cwd,
        env=child_env(ctx, exp, mapping, paths),
        paths=paths,
        capture=capture,
        ignore=capture_ignores(workspace),
        echo=opts.echo,
    )


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP while a run was being prepared (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name} while starting")
        self.signum = signum


@contextlib.contextmanager
def startup_signals() -> Iterator[list[int]]:
    """SIGINT, SIGTERM and SIGHUP (see `stop_signals`) raise `Interrupted` until the executor
    installs its own handlers; the list yielded holds the signal received. Installed even
    where SIGINT was ignored (a background job of a shell): studio's stop request is a SIGINT
    and must never be lost."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handle(signum: int, frame: object) -> None:
        if not received:
            received.append(signum)
            raise Interrupted(signum)

    old = {sig: signal.signal(sig, handle) for sig in stop_signals()}
    try:
        yield received
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _record_not_started(ctx: Context, key: str, worker: str, signum: int | None, exc: BaseException) -> None:
    """Preparation ended early. If the run was recorded, record why: what a signal asked for
    (`stopped` for SIGINT, `killed` for SIGTERM) or `failed` with the error. Recorded only
    while still `running` under this supervisor: an outcome the executor recorded stands."""
    returncode: int | None = None
    if signum is not None:
        status = Status.STOPPED if signum == signal.SIGINT else Status.KILLED
        what = "interrupted (Ctrl-C)" if signum == signal.SIGINT else f"studio received {signal.Signals(signum).name}"
        reason, returncode = f"{what} while starting", -signum
    else:
        status = Status.FAILED
        reason = f"could not start: {str(exc)[:500] or type(exc).__name__}"
    try:
        ctx.meta.set_status(key, status, expect=[Status.RUNNING], worker=worker, reason=reason,
                            returncode=returncode, time_finished=time.time())
    except (NotFoundError, ConflictError):
        pass  # nothing was recorded, or the outcome already was
    except Exception as store_exc:  # the store itself may be what failed
        log.warning("could not record how %s ended: %s", key, store_exc)
