"""The `studio` command's first step, before click or anything else of studio is imported.

`studio run SCRIPT ARGS...` with no studio flag (the documented form) goes straight to the
command's body (`studio.cli.running`), without click. For `studio run` here, the run's reaper
and the script's own interpreter start now (a warm start: `studio.runner._reaper`), so the interpreter's start overlaps studio's
imports as well as the capture. The command line is read with a table of `studio run`'s
options (a unit test keeps it equal to the click command's); whatever it cannot read for
certain, it leaves to `studio.cli.run`, which starts the reaper after parsing, and a guess that
turns out different from the run's command line only costs the warm start (see `take_early`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: `studio run` options that take a value / that take none / that mean "not a run here".
RUN_VALUE_OPTIONS = frozenset({
    "--config", "--project", "--experiment", "-e", "--capture-once", "-co", "--capture", "-c", "--reuse", "-r",
    "--max-duration", "--lifetime", "--python-pkg", "--cpus", "--gpus", "--ram", "--hdd", "--metric",
    "--pruner", "--bid", "--verbose",
})
RUN_FLAGS = frozenset({"--module", "-m", "--guest", "--quiet", "--force"})
RUN_ELSEWHERE = frozenset({
    "--queue", "-q", "--num-workers", "--hyperparam", "-hp", "--hp", "--optimizer", "-opt", "--cloud",
    "--help", "-h",
})

_early: dict[str, Any] = {}


def expected_command(script: str, args: list[str] | tuple[str, ...], module: bool) -> list[str]:
    """The command line `studio run` gives SCRIPT (`command_for` of `resolve_target`'s target)."""
    if module or "::" in script:
        return [sys.executable, "-m", script.replace("::", "."), *args]
    path = os.path.realpath(os.path.join(os.getcwd(), os.path.expanduser(script)))
    return [sys.executable, path, *args]


def read_run_args(argv: list[str]) -> list[str] | None:
    """The expected command line of `studio run ARGV...` run here, or None if not certain."""
    module = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, _value = arg.partition("=")
        if name in RUN_VALUE_OPTIONS:
            i += 1 if eq else 2
        elif name in RUN_FLAGS and not eq:
            module = module or name in ("--module", "-m")
            i += 1
        else:  # a run elsewhere, help, or a spelling this table does not read
            return None
    if i >= len(argv):
        return None
    return expected_command(argv[i], argv[i + 1:], module)


def take_early() -> Any:
    """The reaper `main` started ahead (a `Prestarted`, with `.expected`), once; or None."""
    return _early.pop("reaper", None)


def main(argv: list[str] | None = None) -> Any:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run"]:
        import gc

        # `studio run` imports much and then allocates little: see `running.start_run`.
        gc.set_threshold(10_000, *gc.get_threshold()[1:])
    if args[:1] == ["run"] and sys.platform.startswith("linux"):
        expected = read_run_args(args[1:])
        if expected is not None:
            from studio.runner.process import Prestarted

            _early["reaper"] = Prestarted.start(expected)
    try:
        if args[:1] == ["run"] and len(args) > 1 and not args[1].startswith("-"):
            return _plain_run(args[1], args[2:])
        from studio.cli.main import main as studio_main

        return studio_main(argv)
    finally:
        reaper = take_early()
        if reaper is not None:  # not taken by `studio run` (an error first): it runs nothing
            reaper.cancel()


def _plain_run(script: str, args: list[str]) -> Any:
    """`studio run SCRIPT ARGS...` with no studio flag: what click would call, without click
    (the options' defaults are `running.DEFAULT_FLAGS`; a unit test keeps them click's)."""
    import gc

    from studio.cli.boundary import guarded
    from studio.cli.running import DEFAULT_FLAGS, start_run

    try:
        return guarded(lambda: start_run(script, args, None, None, False, dict(DEFAULT_FLAGS)))
    finally:
        gc.freeze()  # as `studio.cli.main.main` does: the exit need not walk what was imported
