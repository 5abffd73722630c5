"""The body of `studio run` (see `studio.cli.run` for the command and its options), without
click: `studio.cli.entry` calls `start_run` directly for `studio run SCRIPT ARGS...` with no
studio flags (the documented form), so that form imports no click at all."""

from __future__ import annotations

import gc
import sys
from typing import Any

from studio.cli.boundary import setup_logging
from studio.cli.common import context

#: What `studio run`'s options are when none is given (a unit test keeps it equal to click's).
DEFAULT_FLAGS: dict[str, Any] = {
    "project": None, "key": None, "capture_once": (), "capture": (), "reuse": (), "max_duration": None,
    "lifetime": None, "queue": None, "num_workers": None, "python_pkgs": (), "cpus": None, "gpus": None,
    "ram": None, "hdd": None, "hyperparams": (), "metric": None, "optimizer": None, "pruner": None,
    "force": False, "module": False, "guest": False, "cloud": None, "bid": None,
}


def say(text: str) -> None:
    """One line of studio's own on stderr."""
    print(text, file=sys.stderr, flush=True)


def start_run(script: str, args: tuple[str, ...] | list[str], config: str | None, verbose: str | None,
              quiet: bool, flags: dict[str, Any]) -> None:
    """`studio run`: everything after option parsing."""
    args = tuple(args)
    # What follows imports much (SQLAlchemy, the runner) and then allocates little: at CPython's
    # default gen-0 threshold of 700 the collector walks the freshly imported objects about 120
    # times, some 40 ms of a trivial run; at 10,000 it takes a few passes. Cycles are still
    # collected while the script runs (a supervisor may run for days).
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    reaper = warm_start(script, args, flags)
    try:
        _run(script, args, config, verbose, quiet, reaper, flags)
    finally:
        if reaper is not None:
            reaper.cancel()  # not used (bad input, or not a run here): nothing of the user's ran


def warm_start(script: str, args: tuple[str, ...], flags: dict[str, Any]) -> Any:
    """For a run here, the reaper and the script's own interpreter, started ahead (see
    `studio.runner._reaper`): the interpreter's start then overlaps the capture. Usually
    `studio.cli.entry` started them before click was imported; if it guessed another command
    line (or none), that one is cancelled and they start now. The command line is
    `command_for`'s for `resolve_target`'s target; if it differs after all, the reaper starts
    the script the usual way."""
    from studio.cli.entry import expected_command, take_early

    early = take_early()
    if any(flags[name] for name in ("queue", "num_workers", "hyperparams", "optimizer", "cloud")):
        expected = None
    else:
        expected = expected_command(script, args, flags["module"])
    if early is not None and early.expected == expected:
        return early
    if early is not None:
        early.cancel()
    if expected is None:
        return None
    from studio.runner.process import Prestarted

    return Prestarted.start(expected)


def _run(script: str, args: tuple[str, ...], config: str | None, verbose: str | None, quiet: bool,
         reaper: Any, flags: dict[str, Any]) -> None:
    setup_logging(verbose)
    from studio.api.run import RunOptions
    from studio.exceptions import UsageError
    from studio.runner.resources import parse_needs

    resources: dict[str, Any] = parse_needs({name: flags[name] for name in ("cpus", "gpus", "ram", "hdd")})
    if flags["num_workers"] is not None and flags["num_workers"] < 1:
        raise UsageError("--num-workers must be at least 1")
    opts = RunOptions(
        script=script,
        args=list(args),
        module=flags["module"],
        project=flags["project"],
        key=flags["key"],
        capture_once=list(flags["capture_once"]),
        capture=list(flags["capture"]),
        reuse=list(flags["reuse"]),
        max_duration=flags["max_duration"],
        lifetime=flags["lifetime"],
        queue=flags["queue"],
        python_pkgs=list(flags["python_pkgs"]),
        resources=resources,
        metric=flags["metric"],
    )
    talk = not quiet and sys.stderr.isatty()
    if quiet:
        from studio.progress import DISPLAY

        DISPLAY.silence()  # transfers to a studio server draw bars too
    if talk:
        opts.notice = lambda text: say(f"studio: {text}")
        opts.progress = capture_bar
    if flags["pruner"] and not (flags["hyperparams"] or flags["optimizer"]):
        raise UsageError("--pruner applies to sweeps only: add -hp NAME=SPEC")
    if flags["bid"] is not None and not flags["cloud"]:
        raise UsageError("--bid applies to cloud spot workers only: add --cloud=ec2spot")
    ctx = context(config)
    if flags["cloud"]:
        from studio.api.cloud import run_on_cloud

        sys.exit(run_on_cloud(ctx, opts, flags["cloud"], bid=flags["bid"], num_workers=flags["num_workers"],
                              hyperparams=list(flags["hyperparams"]), optimizer=flags["optimizer"],
                              force=flags["force"], pruner=flags["pruner"]))
    if flags["hyperparams"] or flags["optimizer"]:
        from studio.api.sweep import run_sweep

        code = run_sweep(ctx, opts, list(flags["hyperparams"]), optimizer=flags["optimizer"],
                         num_workers=flags["num_workers"], force=flags["force"], pruner=flags["pruner"])
        sys.exit(code)
    if opts.queue or flags["num_workers"]:
        from studio.api.submit import submit_and_maybe_work

        sys.exit(submit_and_maybe_work(ctx, opts, num_workers=flags["num_workers"]))
    from studio.api.local import Interrupted, run_local

    try:
        _exp, outcome = run_local(ctx, opts, reaper=reaper)
    except Interrupted as exc:
        say(f"studio: {exc}")
        sys.exit(128 + exc.signum)
    if outcome.status.value != "finished":
        say(f"studio: experiment {_exp.key} {outcome.status.value}"
            + (f" ({outcome.reason})" if outcome.reason else ""))
    elif talk:
        say(closing_line(_exp))
    exit_now(outcome.exit_code)


def exit_now(code: int) -> None:
    """End `studio run` once its outcome is recorded: what a normal exit does that matters
    (no thread of its own left running, the `atexit` handlers, standard streams flushed),
    without the interpreter's teardown, which frees every object of every module imported
    (~15-20 ms of every run). Everything of the run is committed by now; where the
    interpreter has no `atexit._run_exitfuncs`, a non-daemon thread still runs, or a
    profiler or tracer watches (`python -m cProfile -m studio run ...` writes its report
    after the command returns), it exits the usual way."""
    import atexit
    import os
    import threading

    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if run_exitfuncs is None or others or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


def capture_bar(total: int) -> tuple[Any, Any]:
    """A transient bar on stderr for capturing a large workspace: (advance(n), close())."""
    from contextlib import ExitStack

    from studio.progress import DISPLAY

    stack = ExitStack()
    task = stack.enter_context(DISPLAY.bar("capturing workspace", total, min_bytes=0))
    return task.advance, stack.close


def closing_line(exp: Any) -> str:
    """What a finished run leaves on the terminal: how long, its metric, where to look."""
    from studio.units import format_duration

    parts = [f"studio: experiment {exp.key} finished in {format_duration(exp.duration)}"]
    if exp.metric and exp.metric_value is not None:
        parts.append(f"{exp.metric} = {exp.metric_value:.6g}")
    return ", ".join(parts) + f"; see `studio runs show {exp.key}` or `studio ui`"

