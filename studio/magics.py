"""Jupyter: ``%load_ext studio``, then a cell recorded as an experiment with ``%%studio_run``.

    %load_ext studio

    %%studio_run --project mnist --param lr=0.01 --metric loss:min
    for epoch in range(3):
        loss = train(lr=0.01)
        studio.log(epoch, loss=loss)
        print(epoch, loss)

The cell runs in the notebook's own namespace (its variables stay, as with any cell) while
studio records it as one experiment: the cell's source (``cell.py`` in the `workbook`
artifact), its params, everything it prints (``output.txt``, shown as it happens), what it
logs with `studio.log`/`log_image`/..., and how it ends: finished, failed (the exception) or
stopped (interrupted). The experiment's key is printed first and left in ``_studio_key``.
For a whole notebook as one experiment, call ``studio.init()`` in a cell instead: it stays
`running`, live in the dashboard, until the kernel stops or ``exp.close()``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import IO, Any

from studio.entities import Status


class _Tee:
    def __init__(self, stream: IO[str], sink: IO[str]) -> None:
        self.stream, self.sink = stream, sink

    def write(self, text: str) -> int:
        self.sink.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.sink.flush()
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%%studio_run", add_help=False)
    p.add_argument("--project", "-p")
    p.add_argument("--experiment", "-e", dest="name")
    p.add_argument("--metric")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    return p


def parse_line(line: str) -> argparse.Namespace:
    from studio.exceptions import UsageError

    try:
        args, extra = _parser().parse_known_args(shlex.split(line))
    except SystemExit:
        raise UsageError(f"%%studio_run {line}: usage: %%studio_run [--project P] [--experiment NAME] "
                         "[--metric NAME[:min|:max]] [--param KEY=VALUE]...") from None
    if extra:
        raise UsageError(f"%%studio_run: unknown options {' '.join(extra)}; it takes --project, --experiment, --metric, --param")
    params: dict[str, Any] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"%%studio_run: --param {item!r} must be KEY=VALUE")
        params[key] = _value(value)
    args.params = params
    return args


def _value(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def studio_run(line: str, cell: str, shell: Any) -> str:
    """Run `cell` in `shell`'s namespace as one experiment; returns its key."""
    from studio.workbook.training import new_experiment

    args = parse_line(line)
    exp = new_experiment(args.project, args.name, params=args.params, metric=args.metric)
    exp.save_text("cell.py", cell)
    shell.user_ns["_studio_key"] = exp.tag
    output = open(exp.directory / "output.txt", "a", encoding="utf-8")  # noqa: SIM115 - closed below
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(out, output), _Tee(err, output)  # type: ignore[assignment]
    status, reason = Status.FINISHED, None
    try:
        result = shell.run_cell(cell, store_history=False)
        error = result.error_before_exec or result.error_in_exec
        if isinstance(error, KeyboardInterrupt):
            status, reason = Status.STOPPED, "interrupted (KeyboardInterrupt)"
        elif error is not None:
            status, reason = Status.FAILED, f"{type(error).__name__}: {error}"[:500]
    finally:
        sys.stdout, sys.stderr = out, err
        output.close()
        exp.close(status, reason)
    return exp.tag


def load_ipython_extension(ipython: Any) -> None:
    def magic(line: str, cell: str) -> None:
        studio_run(line, cell, ipython)

    ipython.register_magic_function(magic, magic_kind="cell", magic_name="studio_run")


__all__ = ["load_ipython_extension", "parse_line", "studio_run"]
