"""Time-series logs: ``log = exp.time_series_log("Training loss", ["step", "loss"])``.

Each log is one CSV file, ``<name>.csv``: a header with the declared fields plus ``Date``, then
one line per row, ``Date`` being the row's UTC time (``2026-11-22 10:31:07.250``). Missing
values are empty cells; floats are written with ``repr`` (exact round trip), so NaN and
infinities come back as ``nan``, ``inf`` and ``-inf``.

The file is append-only, and safe to read, capture and write from several processes at once:

- it appears complete with its header (written to a temp file, then hard-linked into place),
  so nobody ever sees or appends to a file without one;
- a flush appends whole rows in one ``write()`` on an ``O_APPEND`` descriptor, so rows of two
  processes logging into the same file never interleave mid-row;
- nothing is ever rewritten: a flush costs the new rows only (upstream re-uploaded the whole
  file every ``saveEvery`` rows: O(n^2) bytes);
- rows wait in memory until ``save_every`` of them are pending, ``flush()`` is called, the
  experiment's background thread finds them older than a couple of seconds, or the process
  exits. A process killed with SIGKILL loses only rows it had not flushed yet; readers drop a
  trailing partial line, should they catch a write half-done.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import io
import math
import numbers
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

DATE = "Date"
_PLAIN = (float, int, str)


def csv_name(name: str) -> str:
    return name if name.endswith(".csv") else f"{name}.csv"


def check_fields(name: str, fields: Iterable[str]) -> tuple[str, ...]:
    if isinstance(fields, str):
        raise TypeError(
            f"time_series_log({name!r}): fields must be a list of names, not one string"
        )
    out = tuple(fields)
    if not out:
        raise ValueError(f"time_series_log({name!r}): declare at least one field")
    for f in out:
        if not isinstance(f, str) or not f or any(c in f for c in "\r\n"):
            raise ValueError(
                f"time_series_log({name!r}): field {f!r} must be a non-empty one-line string"
            )
        if f == DATE:
            raise ValueError(
                f"time_series_log({name!r}): `Date` is added to every row; do not declare it"
            )
    dupes = sorted({f for f in out if out.count(f) > 1})
    if dupes:
        raise ValueError(f"time_series_log({name!r}): field(s) declared twice: {', '.join(dupes)}")
    return out


def header_line(fields: tuple[str, ...]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([*fields, DATE])
    return buf.getvalue().encode("utf-8")


def open_for_append(path: Path, header: bytes) -> int:
    """An O_APPEND descriptor on `path`, creating it atomically with `header` if needed.

    ValueError if the file exists with another header (a log of the same name with other
    fields)."""
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            pass
        else:
            try:
                _check_header(path, header)
            except BaseException:
                os.close(fd)
                raise
            return fd
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(header)
            try:
                os.link(tmp, path)  # atomic, and fails if another process got there first
            except FileExistsError:
                continue
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _check_header(path: Path, header: bytes) -> None:
    with open(path, "rb") as f:
        first = f.readline()
    if first != header:
        existing = first.decode("utf-8", "replace").strip() or "(empty)"
        raise ValueError(
            f"{path.name} already exists with the fields {existing}; "
            f"log with those fields or choose another name"
        )


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _DateFormatter:
    """UTC `YYYY-MM-DD HH:MM:SS.mmm`, formatting the seconds part once per second."""

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def __call__(self, t: float) -> str:
        ms = math.floor(t * 1000)
        sec = ms // 1000
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{ms - sec * 1000:03d}"


_VECTOR_DATES = 32  # rows per flush from which numpy formats the dates
_PLAIN_CELLS = frozenset({float, int, str, type(None)})


def _dates(times: list[float]) -> list[str]:
    """`_DateFormatter` for many rows at once (numpy: half the cost per row)."""
    import numpy as np

    ms = (
        np.floor(np.asarray(times, dtype=np.float64) * 1000)
        .astype(np.int64)
        .astype("datetime64[ms]")
    )
    return [d.replace("T", " ") for d in np.datetime_as_string(ms, unit="ms").tolist()]


def _cell(value: Any) -> Any:
    if value is None or type(value) in _PLAIN:
        return value
    item = getattr(value, "item", None)  # numpy scalars and 0-d arrays, torch scalars
    if callable(item) and not isinstance(value, str):
        try:
            return item()
        except (TypeError, ValueError, RuntimeError):
            pass
    return value


MetricsSink = Callable[[list[Any]], None]


class TimeSeriesLog:
    """A callable that appends one row: ``log(step=3, loss=0.2)``, ``log(3, 0.2)`` or
    ``log({"step": 3, "loss": 0.2})`` (the seed's ``log{...}``).

    A field that was not declared raises ValueError listing the declared ones; a declared
    field left out is an empty cell. Thread-safe.
    """

    def __init__(
        self,
        path: Path,
        fields: Iterable[str],
        save_every: int = 1,
        *,
        metrics: MetricsSink | None = None,
        on_flush: Callable[[], None] | None = None,
        guard: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.fields = check_fields(self.name, fields)
        if isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1:
            raise ValueError(
                f"time_series_log({self.name!r}): save_every must be a positive integer"
            )
        self.save_every = save_every
        self.rows_written = 0
        self._width = len(self.fields)
        self._positions = {f: i for i, f in enumerate(self.fields)}
        self._header = header_line(self.fields)
        self._pending: collections.deque[tuple[float, list[Any]]] = collections.deque()
        self._lock = threading.Lock()
        self._metrics = metrics
        self._on_flush = on_flush
        self._guard = guard
        self._date = _DateFormatter()
        self._fd: int | None = open_for_append(self.path, self._header)

    # -- the hot path --------------------------------------------------------------------
    def __call__(self, *values: Any, **row: Any) -> None:
        if row:
            if values:
                raise TypeError(
                    f"{self.name}: pass the row's values by name or by position, not both"
                )
            cells = self._by_name(row)
        elif len(values) == 1 and isinstance(values[0], Mapping) and self._width > 1:
            cells = self._by_name(values[0])
        else:
            if len(values) > self._width:
                raise ValueError(
                    f"{self.name}: {len(values)} values for {self._width} declared fields "
                    f"({', '.join(self.fields)})"
                )
            cells = [*values, *([None] * (self._width - len(values)))]
        self._pending.append((time.time(), cells))  # deque.append: atomic, no lock
        if self._metrics is not None:
            self._metrics(cells)
        if len(self._pending) >= self.save_every:
            self.flush()

    def _by_name(self, row: Mapping[str, Any]) -> list[Any]:
        if len(row) == self._width and tuple(row) == self.fields:
            return list(row.values())
        cells: list[Any] = [None] * self._width
        positions = self._positions
        for key, value in row.items():
            i = positions.get(key)
            if i is None:
                raise ValueError(
                    f"{self.name}: field {key!r} was not declared; declared fields: "
                    f"{', '.join(self.fields)}"
                )
            cells[i] = value
        return cells

    # -- flushing ------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._pending)

    def oldest_pending(self) -> float | None:
        """Time the oldest unflushed row was logged (None: nothing pending)."""
        try:
            return self._pending[0][0]
        except IndexError:
            return None

    def flush(self) -> int:
        """Append every pending row to the file now; returns how many."""
        with self._lock, self._guard():
            queue = self._pending
            n = len(queue)
            if not n:
                return 0
            if self._fd is None:
                self._fd = open_for_append(self.path, self._header)
            rows = [queue.popleft() for _ in range(n)]  # rows logged meanwhile wait their turn
            dates = (
                _dates([t for t, _ in rows])
                if n >= _VECTOR_DATES
                else map(self._date, (t for t, _ in rows))
            )
            plain = _PLAIN_CELLS
            out = [
                [c if type(c) in plain else _cell(c) for c in cells] + [d]
                for (_, cells), d in zip(rows, dates, strict=True)
            ]
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(out)
            write_all(self._fd, buf.getvalue().encode("utf-8"))
            self.rows_written += n
        if self._on_flush is not None:
            self._on_flush()
        return n

    def close(self) -> None:
        """Flush, then release the file (a later row opens it again)."""
        self.flush()
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def __repr__(self) -> str:
        return f"<TimeSeriesLog {self.name!r} fields={list(self.fields)} rows={self.rows_written}>"


def metrics_sink(
    fields: tuple[str, ...], log: Callable[..., None], prefix: str = ""
) -> MetricsSink:
    """Rows -> ``log(step, **numbers)`` of studio's metric series.

    An integer first field is the step (and not logged itself); otherwise steps count up per
    key and the first field is logged like the others. Values that are not numbers (text,
    empty cells) are left out of the series; they are still in the CSV.
    """
    names = [prefix + f for f in fields]
    rest = range(1, len(fields))
    everything = range(len(fields))
    real, integral = numbers.Real, numbers.Integral

    def sink(cells: list[Any]) -> None:
        first = cells[0]
        if isinstance(first, integral) and not isinstance(first, bool):
            step: int | None = int(first)
            columns = rest
        else:
            step, columns = None, everything
        values = {}
        for i in columns:
            v = cells[i]
            if isinstance(v, real):
                values[names[i]] = v
            elif v is not None and not isinstance(v, str):
                v = _cell(v)
                if isinstance(v, real):
                    values[names[i]] = v
        if values:
            log(step, **values)

    return sink
