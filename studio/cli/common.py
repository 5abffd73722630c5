"""Shared CLI plumbing: options, the console, JSON output."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


# click is imported by the decorators, not here: `studio run SCRIPT` takes `context` without it.
def config_option(f: F) -> F:
    import click

    return click.option("--config", type=click.Path(dir_okay=False), default=None, help="YAML config file.")(f)


def json_option(f: F) -> F:
    import click

    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def context(config: str | None) -> Any:
    import logging

    from studio.api.context import Context

    ctx = Context.from_env(config)
    level = ctx.settings.verbose
    root = logging.getLogger()
    # The config's `verbose:` applies when the command got no --verbose (the root logger is
    # then still at its default, WARNING).
    if level and root.getEffectiveLevel() == logging.WARNING:
        if not root.handlers:
            logging.basicConfig(format="studio %(levelname)s %(name)s: %(message)s")
        root.setLevel(level.upper())
    return ctx


def print_json(data: Any) -> None:
    """Strict JSON on stdout: NaN and infinities (metrics may hold them) print as null, as in
    the server's API, so that every JSON parser reads the output."""
    try:
        text = json.dumps(data, indent=2, default=str, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(data), indent=2, default=str, allow_nan=False)
    sys.stdout.write(text + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def console() -> Any:
    from rich.console import Console

    return Console()


def fmt_time(t: float | None) -> str:
    if t is None:
        return ""
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def fmt_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
