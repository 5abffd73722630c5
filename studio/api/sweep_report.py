"""What a sweep tells its user: a live summary line, messages, warnings and the final ranking.

The default reporter writes progress to stderr (a bar of trials done with the summary line on
a terminal, one line per change otherwise) and the ranked table to stdout. Library callers pass
their own object with the same four methods (`trials(done, total)`, telling the bar's counts
before each `progress`, is optional).
"""

from __future__ import annotations

import re
import sys
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, TextIO

from studio.search.fitness import Objective
from studio.search.state import SweepState

if TYPE_CHECKING:
    from studio.api.context import Context

MAX_ROWS = 50


class SweepReporter:
    def __init__(self, err: TextIO | None = None, out: TextIO | None = None, min_interval: float = 1.0) -> None:
        self.err = err or sys.stderr
        self.out = out or sys.stdout
        self.tty = bool(getattr(self.err, "isatty", lambda: False)())
        # The terminal of the shared display (which replaces sys.stderr while it draws).
        self._on_display = self.tty and self.err is sys.stderr
        self.min_interval = min_interval
        self._last = 0.0
        self._open_line = False
        self._counts: tuple[int, int | None] = (0, None)
        self._bar: tuple[ExitStack, Any] | None = None  # on a terminal: (its closer, the task)

    def _end_line(self) -> None:
        if self._bar is not None:
            self._bar[0].close()
            self._bar = None
        if self._open_line:
            self.err.write("\n")
            self._open_line = False

    def message(self, text: str) -> None:
        self._end_line()
        self.err.write(f"studio: {text}\n")
        self.err.flush()

    def warn(self, text: str) -> None:
        self.message(f"warning: {text}")

    def trials(self, done: int, total: int | None) -> None:
        """The counts of the next `progress` line (the bar's position on a terminal)."""
        self._counts = (done, total)

    def progress(self, line: str, final: bool = False) -> None:
        from studio.progress import DISPLAY

        now = time.monotonic()
        bar = self._on_display and not final  # rich redraws at its own pace: every change goes in
        if not bar and not final and now - self._last < self.min_interval:
            return
        self._last = now
        if bar:
            if not DISPLAY.enabled:
                return  # --quiet
            done, total = self._counts
            if self._bar is None:
                stack = ExitStack()
                self._bar = (stack, stack.enter_context(DISPLAY.count(_without_counts(line), total, done)))
            self._bar[1].update(completed=done, total=total, description=_without_counts(line))
        elif self.tty:
            self._end_line()
            self.err.write("\r\x1b[2K" + line)
            self._open_line = True
            if final:
                self._end_line()
        else:
            self.err.write(line + "\n")
        self.err.flush()

    def ranking(self, state: SweepState, objective: Objective, rows: list[dict[str, Any]]) -> None:
        self._end_line()
        print_ranking(state, objective, rows, self.out)


def _without_counts(line: str) -> str:
    """`sweep P: 3/10 done (1 running), best ...` -> `sweep P: 1 running, best ...` (the bar shows 3/10)."""
    m = re.match(r"(sweep \S+): \d+/\S+ done(?: \(([^)]*)\))?(.*)$", line)
    if m is None:
        return line
    name, parts, rest = m.groups()
    return name + (f": {parts}" if parts else "") + rest


def format_params(params: dict[str, Any]) -> str:
    parts = []
    for name, value in params.items():
        if isinstance(value, list):
            shown = ", ".join(f"{v:.3g}" for v in value[:4]) + (", ..." if len(value) > 4 else "")
            parts.append(f"{name}=[{shown}]")
        elif isinstance(value, float):
            parts.append(f"{name}={value:.6g}")
        else:
            parts.append(f"{name}={value}")
    return " ".join(parts)


def print_ranking(state: SweepState, objective: Objective, rows: list[dict[str, Any]], out: TextIO | None = None,
                  limit: int = MAX_ROWS) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out or sys.stdout, width=max(100, Console().width))
    arrow = "higher is better" if objective.maximize else "lower is better"
    title = f"sweep {state.project}: {len(rows)} trial(s), ranked by {objective.spec} ({arrow})"
    table = Table(title=title)
    for col in ("rank", "experiment", "status", objective.name, "params"):
        table.add_column(col, overflow="fold")
    for row in rows[:limit]:
        value = "" if row["value"] is None else f"{row['value']:.6g}"
        table.add_row(str(row["rank"]), row["key"], row["status"], value, format_params(row["params"]))
    console.print(table)
    if len(rows) > limit:
        console.print(f"... {len(rows) - limit} more: `studio sweep show {state.project}` or "
                      f"`studio runs list project {state.project}`")
    best = next((r for r in rows if r["value"] is not None), None)
    if best is not None:
        console.print(f"best: {best['key']} {objective.name} = {best['value']:.6g} ({format_params(best['params'])})")


def ranked_rows(ctx: Context, state: SweepState, objective: Objective) -> list[dict[str, Any]]:
    """Trials (latest attempt each), best first; trials without a value last."""
    exps = {e.key: e for e in ctx.meta.get_experiments([t.key for t in state.trials])}
    rows: list[dict[str, Any]] = []
    for t in state.trials:
        exp = exps.get(t.key)
        status = exp.status.value if exp is not None else t.status
        value = t.value if t.value is not None else (exp.metric_value if exp is not None else None)
        rows.append({"key": t.key, "generation": t.generation + 1, "status": status, "value": value,
                     "params": t.params, "reason": exp.status_reason if exp is not None else None})
    sign = -1.0 if objective.maximize else 1.0
    rows.sort(key=lambda r: (r["value"] is None, sign * float(r["value"]) if r["value"] is not None else 0.0))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows
