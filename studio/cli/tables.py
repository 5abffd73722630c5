"""Tables for people and for scripts: one set of rows, printed as a rich table on a terminal
and as tab-separated lines (full values, never cut) when piped, or as `--format csv|tsv|json`.

    emit(rows, [Col("key"), Col("status"), ...], fmt=None, title="...")

A terminal table taller than the screen goes through a pager (`$PAGER`, else `less -R`)
unless `--no-pager`; notes (how many rows were left out) go to stderr so pipes stay clean.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from studio.cli.common import F, fmt_time, fmt_value

FORMATS = ("table", "tsv", "csv", "json")
#: Rows a terminal table shows unless `--limit` says otherwise (`--limit 0` = all).
TERMINAL_LIMIT = 50


def format_options(f: F) -> F:
    f = click.option("--no-pager", is_flag=True, help="Never page a long table on a terminal.")(f)
    f = click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default=None,
        help="Output format (default: table on a terminal, tsv when piped).",
    )(f)
    return f


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def resolve_format(fmt: str | None, as_json: bool = False) -> str:
    if as_json:
        return "json"
    if fmt:
        return fmt
    return "table" if stdout_is_terminal() else "tsv"


@dataclass(frozen=True)
class Col:
    """A column: `name` is the row key (and the tsv/csv/json header); `show` formats a cell
    for people (times, durations); `no_wrap` keeps a cell whole on a terminal (keys)."""

    name: str
    header: str = ""
    show: Callable[[Any], str] | None = None
    no_wrap: bool = False
    numeric: bool = False
    #: dropped first (from the right) when a terminal is too narrow for every column
    optional: bool = False
    #: the cell for scripts (default `plain`)
    raw: Callable[[Any], str] | None = None


def plain(value: Any) -> str:
    """A cell for scripts: the whole value, one line."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def show_time(t: Any) -> str:
    return fmt_time(t)


def iso_time(t: Any) -> str:
    """A timestamp for scripts: local ISO 8601 with the offset, to the second."""
    if t is None:
        return ""
    import datetime as dt

    return dt.datetime.fromtimestamp(float(t)).astimezone().isoformat(timespec="seconds")


def show_duration(s: Any) -> str:
    from studio.units import format_duration

    return str(format_duration(s))


def show_list(v: Any) -> str:
    return ",".join(str(x) for x in v) if v else ""


def emit(
    rows: Sequence[dict[str, Any]], cols: Sequence[Col], fmt: str, *, title: str | None = None,
    json_rows: Sequence[Any] | None = None, pager: bool = True, note: str | None = None,
) -> None:
    """Print `rows` in `fmt`; `json_rows` (default: `rows`) is what `--format json` prints."""
    if fmt == "json":
        from studio.cli.common import print_json

        print_json(list(json_rows if json_rows is not None else rows))
    elif fmt in ("tsv", "csv"):
        buf = io.StringIO()
        if fmt == "csv":
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow([c.name for c in cols])
            for r in rows:
                writer.writerow([(c.raw or plain)(r.get(c.name)) for c in cols])
        else:
            buf.write("\t".join(c.name for c in cols) + "\n")
            for r in rows:
                buf.write("\t".join((c.raw or plain)(r.get(c.name)) for c in cols) + "\n")
        sys.stdout.write(buf.getvalue())
    else:
        _table(rows, cols, title, pager)
    if note and fmt == "table":
        click.echo(note, err=True)


def fit(cells: Sequence[Sequence[str]], cols: Sequence[Col], width: int) -> list[int]:
    """Indexes of the columns to show on a terminal `width` wide: every column when they fit,
    else optional columns are left out from the right until the rest fit."""
    # A cell's width, its padding (one space each side) and the column separator.
    need = [max([len(c.header or c.name), *(len(row[i]) for row in cells)]) + 3 for i, c in enumerate(cols)]
    keep = list(range(len(cols)))
    for i in reversed(range(len(cols))):
        if sum(need[j] for j in keep) + 1 <= width:
            break
        if cols[i].optional:
            keep.remove(i)
    return keep


def _table(rows: Sequence[dict[str, Any]], cols: Sequence[Col], title: str | None, pager: bool) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    cells = [[(c.show or fmt_value)(r.get(c.name)) for c in cols] for r in rows]
    keep = fit(cells, cols, console.size.width)
    fits = sum(max([len(cols[i].header or cols[i].name), *(len(r[i]) for r in cells)]) + 3 for i in keep) <= console.size.width
    left_out = len(cols) - len(keep)
    if left_out:
        title = f"{title or ''} ({left_out} more column(s): widen the terminal or use --format tsv)".strip()
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for i in keep:
        c = cols[i]
        table.add_column(c.header or c.name, no_wrap=c.no_wrap or fits, justify="right" if c.numeric else "left",
                         overflow="fold")
    for row in cells:
        table.add_row(*(row[i] for i in keep))
    terminal = stdout_is_terminal()
    if terminal and pager and len(rows) + 6 > console.size.height:
        with console.capture() as captured:
            console.print(table)
        os.environ.setdefault("LESS", "-RFX")  # colours, quit if one screen, keep it on exit
        click.echo_via_pager(captured.get())
        return
    console.print(table)


__all__ = ["FORMATS", "TERMINAL_LIMIT", "Col", "emit", "format_options", "plain", "resolve_format",
           "fit", "iso_time", "show_duration", "show_list", "show_time", "stdout_is_terminal"]
