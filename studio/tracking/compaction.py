"""Compaction: a writer merges its own segments, so a long run keeps tens of files, not one per
flush (a day of `studio.log` at one flush a second would otherwise leave 86,400 files for every
capture to scan and every reader to open).

A log-structured merge: each writer (one `Logger`) merges its oldest 16 segments of a level
into one segment of the next level, so each point is rewritten about log16(flushes) times and
a writer keeps at most 15 segments per level. Merges run on the logger's background thread.

Protocol (see `segments` for names): a merged segment is named after the counters it spans,
``seg-<time of its newest input>-<pid>-<last:06d>-<token>-c<first:06d>.arrow``, and records the
raw segments it holds, in row order, as ``parts`` ([counter, rows] pairs) in its schema
metadata. It is written like any segment (temp file, fsync, rename). From that moment
`segments.list_segments` hides every segment of the same writer whose counters it spans, so a
reader sees each point exactly once whether or not the inputs are still there. Inputs are
deleted `keep_seconds` later (a capture that listed them a moment before the merge can still
read them), or when the logger closes. A writer killed in between leaves hidden inputs behind:
extra bytes, never a repeated point.

Only consecutive counters are merged: a segment still being written (or one whose write
failed, reported with `skipped`) holds back the merges that would span it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from studio.tracking import segments

_log = logging.getLogger(__name__)

FANIN = 16
MAX_MERGE_BYTES = 256 * 2**20  # larger runs stay as they are (a merge reads its inputs whole)
KEEP_SECONDS = 30.0


def merge(metrics_dir: Path, names: list[str], fsync: bool = True) -> tuple[str, int]:
    """Write one segment holding `names` (consecutive segments of one writer, oldest first);
    returns its name and size. The inputs are left in place (hidden by the new name)."""
    import pyarrow as pa

    ids = [segments.segment_id(n) for n in names]
    if any(i is None for i in ids) or len({i.writer for i in ids if i}) != 1:
        raise ValueError(f"not the segments of one writer: {names}")
    tables, parts = [], []
    for name in names:
        table = segments.read_segment(metrics_dir / name, keep_metadata=True)
        parts.extend(segments.parts_of(name, table))
        tables.append(table.replace_schema_metadata(None))
    merged = pa.concat_tables(tables).unify_dictionaries()
    merged = merged.replace_schema_metadata(
        {b"format": segments.FORMAT_TAG, segments.PARTS_KEY: json.dumps(parts).encode()}
    )
    first, last = ids[0], ids[-1]
    assert first is not None and last is not None
    name = segments.merged_name(names[-1], first.first, last.last)
    path = metrics_dir / name
    segments.write_arrow_segment(path, merged, fsync)
    return name, path.stat().st_size


class Compactor:
    """The merge schedule of one writer. Thread-safe: `written`/`skipped` from any flushing
    thread, `run` from the logger's background thread, `close` at the end."""

    def __init__(
        self,
        metrics_dir: Path,
        *,
        fanin: int = FANIN,
        max_bytes: int = MAX_MERGE_BYTES,
        keep_seconds: float = KEEP_SECONDS,
        fsync: bool = True,
    ) -> None:
        self.metrics_dir = metrics_dir
        self.fanin = fanin
        self.max_bytes = max_bytes
        self.keep_seconds = keep_seconds
        self.fsync = fsync
        self._lock = threading.Lock()
        self._arrived: dict[int, tuple[str, int] | None] = {}  # counter -> (name, size); None: skipped
        self._next = 0  # the next counter level 0 is waiting for
        self._levels: list[list[tuple[str, int]]] = []
        self._superseded: list[tuple[float, list[str]]] = []
        self.merges = 0

    def written(self, name: str) -> None:
        """A segment of this writer is complete under `name`."""
        i = segments.segment_id(name)
        if i is None or i.merged:
            return
        try:
            size = (self.metrics_dir / name).stat().st_size
        except OSError:
            size = 0
        with self._lock:
            self._arrived[i.first] = (name, size)

    def skipped(self, counter: int) -> None:
        """The segment numbered `counter` will never exist (its write failed)."""
        with self._lock:
            self._arrived[counter] = None

    def run(self) -> None:
        """Merge what is due and delete inputs superseded long enough ago."""
        with self._lock:
            self._take_arrivals()
            self._merge_due()
            self._delete_superseded(time.monotonic() - self.keep_seconds)

    def close(self) -> None:
        with self._lock:
            self._delete_superseded(float("inf"))

    def _take_arrivals(self) -> None:
        # A counter may be reserved before the segment numbered below it is written: level 0
        # only takes consecutive counters (a writer's counters start at 0).
        while self._next in self._arrived:
            entry = self._arrived.pop(self._next)
            self._next += 1
            if entry is not None:
                self._push(0, entry)

    def _push(self, level: int, entry: tuple[str, int]) -> None:
        while len(self._levels) <= level:
            self._levels.append([])
        self._levels[level].append(entry)

    def _merge_due(self) -> None:
        level = 0
        while level < len(self._levels):
            run = self._levels[level]
            if len(run) < self.fanin:
                level += 1
                continue
            batch = run[: self.fanin]
            if sum(size for _, size in batch) > self.max_bytes:
                # Merging bigger runs costs more than the files it saves. Stop tracking what
                # is there (it stays as it is); later merges span only later counters, so they
                # never hide these.
                self._levels = []
                return
            names = [name for name, _ in batch]
            try:
                merged = merge(self.metrics_dir, names, self.fsync)
            except Exception:  # e.g. a full disk: the inputs are intact, stop merging them
                _log.warning("could not merge metric segments in %s", self.metrics_dir, exc_info=True)
                self._levels = []
                return
            del run[: self.fanin]
            self._push(level + 1, merged)
            self._superseded.append((time.monotonic(), names))
            self.merges += 1

    def _delete_superseded(self, before: float) -> None:
        keep = []
        for when, names in self._superseded:
            if when > before:
                keep.append((when, names))
                continue
            for name in names:
                try:
                    os.unlink(self.metrics_dir / name)
                except FileNotFoundError:
                    pass
                except OSError:
                    _log.debug("could not delete merged segment %s", name, exc_info=True)
        self._superseded = keep
