"""CSV artifacts into Arrow tables and pandas, fast, with parsed copies kept for next time.

Parsing is pyarrow's multi-threaded CSV reader (types inferred; ``Date`` and other ISO times
become timestamps; ``nan``/``inf``/``-inf`` are floats, empty cells missing). A file whose
types the reader cannot settle from its first block (a column empty for the first thousands
of rows, integers that later turn into floats) is read again as text and converted column
by column.

Two caches spare parsing the same bytes twice:

- a stored file is content-addressed, so its parsed copy can never go stale: it is kept as an
  Arrow IPC file ``<blob cache>/tables/<hash[:2]>/<hash>-<selection>.arrow`` (written by
  rename, memory-mapped when read again). A bulk reader (`meld_csv`) defers these writes
  until its result is ready (`write_deferred`, on a background thread that the interpreter
  joins at exit); meanwhile the parsed tables are served from memory;
- a live file (the workbook folder of a running experiment) only grows: `TableReader`
  remembers the rows it parsed and their byte offset, so re-reading it parses only the rows
  appended since (live monitoring of a long log costs the new rows only).

A trailing partial line (a file caught in the middle of an append) is left out.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

DATE = "Date"
LIVE_ENTRIES = 64
#: A file up to this size parsed on one thread is read as one block: one chunk per column, so
#: numpy and pandas get the parsed buffers without a copy (`meld.align`).
ONE_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class FileRef:
    """A readable copy of one artifact file. `blob` is its hash when stored (immutable),
    None for a live file that may still grow."""

    name: str
    path: Path
    blob: str | None = None
    size: int | None = None


# -- parsing -------------------------------------------------------------------------------
def _options(
    columns: Sequence[str] | None,
    delimiter: str,
    types: dict[str, Any] | None = None,
    text: bool = False,
    threads: bool = True,
    block_size: int | None = None,
) -> dict[str, Any]:
    import pyarrow.csv as pcsv

    read = pcsv.ReadOptions(use_threads=threads)
    if block_size is not None:
        read.block_size = block_size
    return {
        "read_options": read,
        "parse_options": pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=text),
        "convert_options": pcsv.ConvertOptions(
            include_columns=list(columns) if columns is not None else None,
            column_types=types,
            strings_can_be_null=True,
        ),
    }


def header_names(first_line: bytes, delimiter: str = ",") -> list[str]:
    import csv

    text = first_line.decode("utf-8", "replace").rstrip("\r\n")
    return next(csv.reader([text], delimiter=delimiter), [])


def _convert_text_column(arr: Any) -> Any:
    """A column read as text -> int64, float64 or timestamp if every value converts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    for target in (pa.int64(), pa.float64(), pa.timestamp("ns")):
        try:
            return pc.cast(arr, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return arr


def parse(
    source: Path | bytes,
    columns: Sequence[str] | None = None,
    delimiter: str = ",",
    types: dict[str, Any] | None = None,
    threads: bool = True,
) -> pa.Table:
    """Parse CSV from a path or bytes (complete lines only). `threads=False` parses on this
    thread only: cheaper when the caller parses several files in parallel; a source of up to
    ONE_BLOCK_BYTES is then read as one block (one chunk per column)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    def reader() -> Any:
        return pa.BufferReader(source) if isinstance(source, bytes) else str(source)

    block = None
    if not threads:
        size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
        if size < ONE_BLOCK_BYTES:
            block = max(size + 1, 2**20)
    try:
        return pcsv.read_csv(reader(), **_options(columns, delimiter, types, threads=threads, block_size=block))
    except pa.ArrowInvalid:
        if types:
            raise  # the caller re-reads the whole file
    if isinstance(source, bytes):
        head = source.split(b"\n", 1)[0]
    else:
        with open(source, "rb") as f:
            head = f.readline()
    names = header_names(head, delimiter)
    text = pcsv.read_csv(
        reader(),
        **_options(
            columns, delimiter, {n: pa.string() for n in names}, text=True, threads=threads,
            block_size=block,
        ),
    )
    return pa.table({n: _convert_text_column(text.column(n)) for n in text.column_names})


def _complete_bytes(path: Path, start: int = 0) -> bytes:
    """The file's bytes from `start` up to and including its last newline."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    cut = data.rfind(b"\n")
    return data[: cut + 1] if cut >= 0 else b""


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        try:
            f.seek(-1, os.SEEK_END)
        except OSError:  # empty file
            return True
        return f.read(1) == b"\n"


def parse_file(
    path: Path, columns: Sequence[str] | None = None, delimiter: str = ",", threads: bool = True
) -> pa.Table:
    if _ends_with_newline(path):
        return parse(path, columns, delimiter, threads=threads)
    return parse(_complete_bytes(path), columns, delimiter, threads=threads)


def read_csv_table(
    path: Path, columns: Sequence[str] | None = None, delimiter: str = ","
) -> pa.Table:
    """One CSV file, uncached (what a user-registered `.csv` loader would call)."""
    return parse_file(Path(path), columns, delimiter)


# -- caches --------------------------------------------------------------------------------
@dataclass
class _Live:
    inode: int
    offset: int  # bytes parsed (whole lines)
    header: bytes
    table: pa.Table


class TableReader:
    """Reads `FileRef`s into tables through the two caches (see the module docstring)."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.cache_dir = cache_dir
        self._live: collections.OrderedDict[tuple[str, str], _Live] = collections.OrderedDict()
        self._live_lock = threading.Lock()
        # Parsed copies not yet on disk: cache file -> table, and those not yet handed to the
        # writer thread.
        self._pending: dict[Path, pa.Table] = {}
        self._deferred: list[Path] = []
        self._pending_lock = threading.Lock()
        self._writer: ThreadPoolExecutor | None = None

    def read(
        self,
        ref: FileRef,
        columns: Sequence[str] | None = None,
        delimiter: str = ",",
        threads: bool = True,
        defer_cache: bool = False,
    ) -> pa.Table:
        """The file as a table (only `columns`, if given). Thread-safe. With `defer_cache`, a
        stored file's parsed copy is written only at the next `write_deferred()`: a caller
        parsing many files keeps the cores on parsing until its result is ready."""
        if ref.blob is not None:
            return self._stored(ref, columns, delimiter, threads, defer_cache)
        with self._live_lock:
            return self._grown(ref.path, columns, delimiter)

    def write_deferred(self) -> None:
        """Write the parsed copies deferred so far, on a background thread (the interpreter
        waits for it at exit). Until written they are served from memory."""
        with self._pending_lock:
            batch, self._deferred = self._deferred, []
            if not batch:
                return
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="studio-table-cache")
            writer = self._writer
        writer.submit(self._write_pending, batch)

    def _write_pending(self, paths: list[Path]) -> None:
        for path in paths:
            with self._pending_lock:
                table = self._pending.get(path)
            if table is not None:
                _write_ipc(path, table)
            with self._pending_lock:
                self._pending.pop(path, None)

    def _cache_file(self, blob: str, columns: Sequence[str] | None, delimiter: str) -> Path | None:
        if self.cache_dir is None:
            return None
        selection = hashlib.sha256(json.dumps([columns, delimiter]).encode()).hexdigest()[:16]
        return self.cache_dir / "tables" / blob[:2] / f"{blob}-{selection}.arrow"

    def _stored(
        self, ref: FileRef, columns: Sequence[str] | None, delimiter: str, threads: bool,
        defer: bool = False,
    ) -> pa.Table:
        assert ref.blob is not None
        whole = self._cached(self._cache_file(ref.blob, None, delimiter))
        if whole is not None:  # every column was parsed before: select from that
            return whole if columns is None else whole.select(list(columns))
        cached = self._cache_file(ref.blob, columns, delimiter)
        if columns is not None:
            table = self._cached(cached)
            if table is not None:
                return table
        table = parse_file(ref.path, columns, delimiter, threads)
        if cached is None:
            return table
        if defer:
            with self._pending_lock:
                self._pending[cached] = table
                self._deferred.append(cached)
        else:
            _write_ipc(cached, table)
        return table

    def _cached(self, path: Path | None) -> pa.Table | None:
        import pyarrow as pa

        if path is None:
            return None
        with self._pending_lock:
            table = self._pending.get(path)
        if table is not None:
            return table
        if not path.is_file():
            return None
        try:
            with pa.memory_map(str(path)) as source:
                return pa.ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid):
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def _grown(self, path: Path, columns: Sequence[str] | None, delimiter: str) -> pa.Table:
        import pyarrow as pa

        key = (str(path), json.dumps([columns, delimiter]))
        st = os.stat(path)
        entry = self._live.get(key)
        if entry is not None and entry.inode == st.st_ino and st.st_size >= entry.offset:
            self._live.move_to_end(key)
            if st.st_size == entry.offset:
                return entry.table
            tail = _complete_bytes(path, entry.offset)
            if not tail:
                return entry.table
            types = {f.name: f.type for f in entry.table.schema if not pa.types.is_null(f.type)}
            try:
                more = parse(entry.header + tail, columns, delimiter, types)
                table = pa.concat_tables([entry.table, more], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                table = None  # the new rows changed a column's type: parse everything again
            if table is not None:
                entry.offset += len(tail)
                entry.table = table
                return table
        data = _complete_bytes(path)
        table = parse(data, columns, delimiter)
        header = data.split(b"\n", 1)[0] + b"\n"
        self._live[key] = _Live(st.st_ino, len(data), header, table)
        while len(self._live) > LIVE_ENTRIES:
            self._live.popitem(last=False)
        return table


def _write_ipc(path: Path, table: pa.Table) -> None:
    import pyarrow as pa

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the next read a parse
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


# -- pandas --------------------------------------------------------------------------------
def frame(table: pa.Table) -> pd.DataFrame:
    """A table as a DataFrame indexed by its first column, `Date` as datetimes."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):  # a column with no value yet: floats, all NaN
            table = table.set_column(i, field.name, pa.nulls(table.num_rows, pa.float64()))
    df = table.to_pandas()
    if len(df.columns):
        df = df.set_index(df.columns[0])
    if DATE in df.columns and df[DATE].dtype.kind != "M":
        import pandas as pd

        with contextlib.suppress(ValueError, TypeError):
            df[DATE] = pd.to_datetime(df[DATE])
    return df
