"""Segment files: the on-disk unit of a metric series.

A metrics directory holds immutable, append-only segment files, each a complete table with the
long-format columns ``key`` (string, dictionary-encoded), ``step`` (int64), ``value`` (float64)
and ``time`` (float64, unix seconds):

    seg-<flush time ns:019d>-<pid>-<counter:06d>-<random>.arrow   Arrow IPC file (Feather v2)
    seg-<...>.csv              read only: written by versions that wrote CSV without pyarrow

Contract:
- A segment appears under its final name only when complete: it is written to a hidden temp
  file (name starting with ``.``) in the same directory, fsynced, then renamed. Readers list
  ``seg-*`` names only, so a writer killed mid-write leaves at worst a stray ``.*.tmp`` file,
  never a corrupt segment.
- Names never collide: pid + per-writer counter + random suffix, so two processes (or two
  loggers in one process) can write into one directory at the same time.
- Sorting names sorts segments by flush time (then pid, then counter).
- Names starting with ``.`` are private (temp files, reader state) and are not part of the
  series; the checkpointer may skip them.
- A writer merges its own segments (`studio.tracking.compaction`): a merged segment's name
  spans counters (``...-<last>-<token>-c<first>.arrow``) and hides every segment of the same
  writer within that span from `list_segments`, whether or not it has been deleted yet.

One format is written (Arrow; pyarrow is a core dependency) and one reader reads both. This
module imports pyarrow only inside the functions that need it (`import studio` stays cheap).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

SEGMENT_PREFIX = "seg-"
ARROW_SUFFIX = ".arrow"
CSV_SUFFIX = ".csv"
COLUMNS = ("key", "step", "value", "time")
FORMAT_TAG = b"studio.metrics/1"
PARTS_KEY = b"parts"  # a merged segment's raw segments, in row order: [[counter, rows], ...]
MERGED_MARK = "c"


def warm_up() -> None:
    """Import what writing a segment needs (numpy, the fold, pyarrow and its IPC writer):
    the metrics flusher does it as it starts, off the training thread (importing pyarrow takes
    0.1-1 s: the first `studio.log` must not pay that)."""
    import pyarrow.ipc  # noqa: F401

    import studio.tracking.fold  # noqa: F401 - numpy


def is_segment_name(name: str) -> bool:
    return name.startswith(SEGMENT_PREFIX) and (
        name.endswith(ARROW_SUFFIX) or name.endswith(CSV_SUFFIX)
    )


@dataclass(frozen=True)
class SegmentId:
    """What a writer's segment name says: who wrote it and which of its counters it holds
    (one for a flushed segment, a span for a merged one)."""

    writer: tuple[str, str]  # (pid, token)
    first: int
    last: int
    merged: bool


def segment_id(name: str) -> SegmentId | None:
    """The id in a writer's segment name; None for other names (e.g. TensorBoard imports)."""
    if not is_segment_name(name):
        return None
    parts = name[len(SEGMENT_PREFIX) :].rsplit(".", 1)[0].split("-")
    if len(parts) == 4:
        stamp, pid, last, token = parts
        first = last
    elif len(parts) == 5 and parts[4].startswith(MERGED_MARK):
        stamp, pid, last, token, mark = parts
        first = mark[len(MERGED_MARK) :]
    else:
        return None
    if not (stamp.isdigit() and pid.isdigit() and last.isdigit() and first.isdigit()):
        return None
    return SegmentId((pid, token), int(first), int(last), len(parts) == 5)


def merged_name(newest: str, first: int, last: int) -> str:
    """The name of a merge of one writer's counters `first`..`last`, whose newest input is
    named `newest` (the merge sorts where its newest input did)."""
    stamp, pid, _, token = newest[len(SEGMENT_PREFIX) :].rsplit(".", 1)[0].split("-")[:4]
    return f"{SEGMENT_PREFIX}{stamp}-{pid}-{last:06d}-{token}-{MERGED_MARK}{first:06d}{ARROW_SUFFIX}"


def hidden_by_merges(names: Sequence[str]) -> set[str]:
    """The names a merged segment among `names` spans (the same writer, within its counters)."""
    ids = {n: segment_id(n) for n in names}
    spans: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
    for n, i in ids.items():
        if i is not None and i.merged:
            spans.setdefault(i.writer, []).append((i.first, i.last, n))
    if not spans:
        return set()
    hidden = set()
    for n, i in ids.items():
        if i is None:
            continue
        for first, last, merged in spans.get(i.writer, ()):
            if merged != n and first <= i.first and i.last <= last:
                hidden.add(n)
                break
    return hidden


def list_segments(metrics_dir: Path) -> list[str]:
    """Names of the complete segments in `metrics_dir` that hold the series, oldest first
    (segments a merge spans are left out); [] if it does not exist."""
    try:
        with os.scandir(metrics_dir) as entries:
            names = [e.name for e in entries if is_segment_name(e.name)]
    except FileNotFoundError:
        return []
    names.sort()
    hidden = hidden_by_merges(names)
    return [n for n in names if n not in hidden] if hidden else names


class SegmentNamer:
    """Unique, sortable segment names for one writer (re-create after fork)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.token = os.urandom(4).hex()
        self._counter = itertools.count()

    def next_name(self, suffix: str) -> str:
        return (
            f"{SEGMENT_PREFIX}{time.time_ns():019d}-{self.pid}-{next(self._counter):06d}"
            f"-{self.token}{suffix}"
        )


def _atomic_write(path: Path, write: Any, fsync: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.urandom(3).hex()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# One entry per key: (key, steps, values, times).
Columns = Sequence[tuple[str, "np.ndarray", "np.ndarray", "np.ndarray"]]


def _numeric_array(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    # from_buffers, not pa.array: pa.array imports pandas (seconds, and impossible at exit).
    import numpy as np
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def _string_array(names: Sequence[str]) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    encoded = [n.encode("utf-8") for n in names]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def arrow_table(columns: Columns) -> pa.Table:
    """A segment table from per-key columns (rows grouped by key, each key in log order)."""
    import numpy as np
    import pyarrow as pa

    lengths = [len(c[1]) for c in columns]
    codes = np.repeat(np.arange(len(columns), dtype=np.int32), lengths)
    key = pa.DictionaryArray.from_arrays(
        _numeric_array(codes, pa.int32()), _string_array([c[0] for c in columns])
    )

    def cat(i: int, dtype: Any, arrow_type: pa.DataType) -> pa.Array:
        parts: list[np.ndarray] = [c[i] for c in columns]  # type: ignore[misc]
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return _numeric_array(joined.astype(dtype, copy=False), arrow_type)

    return pa.table(
        {
            "key": key,
            "step": cat(1, np.int64, pa.int64()),
            "value": cat(2, np.float64, pa.float64()),
            "time": cat(3, np.float64, pa.float64()),
        }
    ).replace_schema_metadata({b"format": FORMAT_TAG})


def write_arrow_segment(path: Path, table: pa.Table, fsync: bool = True) -> None:
    import pyarrow as pa

    def write(fh: Any) -> None:
        with pa.ipc.new_file(fh, table.schema) as writer:
            writer.write_table(table)

    _atomic_write(path, write, fsync)


def write_segment_to(path: Path, columns: Columns, fsync: bool = True) -> None:
    """Write one (Arrow) segment."""
    if not path.name.endswith(ARROW_SUFFIX):
        raise ValueError(f"segments are written as Arrow files ({ARROW_SUFFIX}), not {path.name}")
    write_arrow_segment(path, arrow_table(columns), fsync)


def _csv_table(path: Path) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    options = pcsv.ConvertOptions(
        column_types={
            "key": pa.string(),
            "step": pa.int64(),
            "value": pa.float64(),
            "time": pa.float64(),
        },
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    table = pcsv.read_csv(path, convert_options=options)
    return table.set_column(0, "key", table.column("key").dictionary_encode())


_MMAP_FROM = 1 << 16  # smaller files are cheaper to read than to map


def parts_of(name: str, table: pa.Table) -> list[list[int]]:
    """[[counter, rows], ...]: the writer's flushed segments that `table` (read from segment
    `name` with its metadata) holds, in row order."""
    metadata = table.schema.metadata or {}
    if PARTS_KEY in metadata:
        return [[int(c), int(r)] for c, r in json.loads(metadata[PARTS_KEY])]
    i = segment_id(name)
    if i is None or i.merged:
        raise ValueError(f"segment {name} does not say which segments it holds")
    return [[i.first, table.num_rows]]


def read_segment(path: Path, keep_metadata: bool = False) -> pa.Table:
    """One segment as a pyarrow Table with the canonical schema (big files memory-mapped);
    its schema metadata only with `keep_metadata`."""
    import pyarrow as pa

    if path.name.endswith(CSV_SUFFIX):
        table = _csv_table(path)
    else:
        name = str(path)
        if os.stat(name).st_size >= _MMAP_FROM:
            with pa.memory_map(name) as source:
                table = pa.ipc.open_file(source).read_all()
        else:
            with open(name, "rb") as fh:
                table = pa.ipc.open_file(pa.py_buffer(fh.read())).read_all()
    selected = table.select(list(COLUMNS))
    return selected if keep_metadata else selected.replace_schema_metadata(None)
