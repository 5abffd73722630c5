"""Local worker pools: `studio run --num-workers N` (and sweeps) drain what they submitted.

Workers are separate processes (`python -m studio worker --queue Q`), exactly what a user
would start by hand: a script that crashes or leaks cannot take the pool down, a worker that
dies is noticed through its lapsed lease like any other, and the experiment is re-queued.
`drain` waits until every given experiment is terminal, starting a replacement worker when
one exits while work remains, then stops the pool (SIGTERM: idle workers exit at once).
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from studio.context import Context
from studio.entities import Experiment, Status
from studio.runner.executor import Outcome

log = logging.getLogger(__name__)

STOP_GRACE = 30.0  # seconds a worker gets to hand its experiment back after SIGTERM
MAX_RESTARTS = 20


def exit_code(exp: Experiment) -> int:
    """What `studio run` exits with for a terminal experiment (see `Outcome.exit_code`)."""
    return Outcome(exp.status, exp.returncode).exit_code


def worker_command(ctx: Context, queue: str, idle_timeout: float | None = None, echo: bool = False,
                   single_run: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "studio", "worker", "--queue", queue]
    if ctx.settings.config_path is not None:
        cmd += ["--config", str(ctx.settings.config_path)]
    if idle_timeout is not None:
        cmd += ["--timeout", f"{idle_timeout:g}"]
    if echo:
        cmd += ["--echo", "--quiet"]
    if single_run:
        cmd.append("--single-run")
    return cmd


def start_worker(ctx: Context, queue: str, idle_timeout: float | None = None, echo: bool = False,
                 log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """One local worker process on `queue`, with this process's environment and settings."""
    env = dict(os.environ)
    env["STUDIOML_HOME"] = str(ctx.settings.home)
    env.setdefault("PYTHONUNBUFFERED", "1")
    stderr = None
    if log_file is not None and not echo:  # echoing: the script's stderr belongs on the terminal
        log_file.parent.mkdir(parents=True, exist_ok=True)
        stderr = open(log_file, "ab")  # noqa: SIM115 - the child owns it from here
    try:
        return subprocess.Popen(
            worker_command(ctx, queue, idle_timeout, echo),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=None if echo else subprocess.DEVNULL,
            stderr=stderr,
        )
    finally:
        if stderr is not None:
            stderr.close()


def drain(
    ctx: Context,
    queue: str,
    num_workers: int,
    keys: Sequence[str],
    *,
    echo: bool | None = None,
    idle_timeout: float | None = None,
    poll: float = 0.2,
) -> dict[str, int]:
    """Run `num_workers` local workers on `queue` until every experiment in `keys` is terminal.

    Returns key -> exit code (the script's code, 128+N for signal N, 1 when lost or deleted).
    `echo` (default: when there is a single experiment) shows the output on this terminal.
    """
    if num_workers < 1:
        from studio.exceptions import UsageError

        raise UsageError("--num-workers must be at least 1")
    wanted = list(dict.fromkeys(keys))
    show = len(wanted) == 1 if echo is None else echo
    # Idle workers outlive a lapsed lease, so a crashed sibling's experiment is picked up again.
    idle = idle_timeout if idle_timeout is not None else max(60.0, 3 * ctx.settings.lease_seconds)
    logs = ctx.settings.home / "workers" / "logs"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    procs: list[subprocess.Popen[bytes]] = []
    restarts = 0

    numbers = itertools.count()

    def spawn() -> None:
        n = next(numbers)
        procs.append(start_worker(ctx, queue, idle, show, logs / f"{queue}-{stamp}-{n}.log"))

    for _ in range(num_workers):
        spawn()
    done: dict[str, Experiment] = {}
    pending = list(wanted)
    try:
        while True:
            found = {e.key: e for e in ctx.meta.get_experiments(pending)}  # only the unfinished
            for key in pending:
                exp = found.get(key)
                if exp is None or exp.status.terminal:  # None: deleted meanwhile
                    done[key] = exp if exp is not None else Experiment(key=key, status=Status.LOST)
            pending = [k for k in pending if k not in done]
            if not pending:
                break
            for p in [p for p in procs if p.poll() is not None]:
                log.warning("local worker %d exited with %s", p.pid, p.returncode)
                procs.remove(p)
            while len(procs) < num_workers and restarts < MAX_RESTARTS:
                restarts += 1
                spawn()
            if not procs:
                break  # workers keep dying: give up rather than spin
            time.sleep(poll)
    finally:
        stop_workers(procs)
    return {k: (exit_code(done[k]) if k in done else 1) for k in wanted}


def stop_workers(procs: Sequence[subprocess.Popen[bytes]], grace: float = STOP_GRACE) -> None:
    """SIGTERM (idle workers exit, busy ones hand back), then SIGKILL after `grace` seconds."""
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
