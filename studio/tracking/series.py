"""Read an experiment's metric series: long or wide DataFrames, summaries, spike-safe downsampling.

Works on a metrics directory of segment files (see `studio.tracking.segments`), live or
materialized: every complete segment is read, stray temp files are ignored. Tables and
summaries need only pyarrow (a core dependency); the DataFrame functions need pandas
(`pip install 'studio-experiments[workbook]'`). CSV segments (written by versions before pyarrow
was a core dependency) are read with pyarrow's CSV reader.

Order of rows: segments in name order (flush time), inside a segment each key's rows in the
order they were logged.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.entities import MetricSummary
from studio.exceptions import require
from studio.tracking.segments import (
    COLUMNS,
    SegmentId,
    list_segments,
    parts_of,
    read_segment,
    segment_id,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["downsample", "meld", "read_series", "read_table", "summarize", "wide"]

SUMMARY_STATE = ".summary-state.json"
_STATE_VERSION = 2  # 2: the writers' counters folded, for merged segments
_FILTER_ALONE_FROM = 20_000  # rows
_log = logging.getLogger(__name__)


def _empty_table() -> pa.Table:
    import pyarrow as pa

    return pa.table(
        {
            "key": pa.array([], pa.dictionary(pa.int32(), pa.string())),
            "step": pa.array([], pa.int64()),
            "value": pa.array([], pa.float64()),
            "time": pa.array([], pa.float64()),
        }
    )


def _select(table: pa.Table, wanted: pa.Array | None) -> pa.Table | None:
    """Rows of `table` whose key is in `wanted` (None: all); None if there are none.

    Works on the dictionary, not on the rows: which dictionary entries match, then one `take`
    of that small mask by the row indices (with one shared dictionary for all chunks).
    """
    if wanted is None:
        return table
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.column("key").num_chunks > 1:
        table = table.unify_dictionaries()
    column = table.column("key")
    if not column.num_chunks:
        return None
    hit = pc.is_in(column.chunk(0).dictionary, value_set=wanted)
    if not pc.any(hit).as_py():
        return None
    if pc.all(hit).as_py():
        return table
    if column.num_chunks == 1:
        indices: Any = column.chunk(0).indices
    else:
        indices = pa.chunked_array([chunk.indices for chunk in column.chunks])
    codes = pc.indices_nonzero(hit)
    if len(codes) == 1:  # the usual read of one key: a compare beats a gather
        mask = pc.equal(indices, pa.scalar(codes[0].as_py(), indices.type))
    else:
        mask = pc.take(hit, indices)
    selected = table.filter(mask)
    return selected if selected.num_rows else None


def read_table(
    metrics_dir: str | os.PathLike[str],
    keys: Sequence[str] | None = None,
    names: Iterable[str] | None = None,
    columns: Sequence[str] = COLUMNS,
) -> pa.Table:
    """The series as one pyarrow Table (key, step, value, time by default).

    keys: only these keys. names: only these segments. columns: only these columns (fewer
    columns, less copying).
    """
    import pyarrow as arrow

    root = Path(metrics_dir)
    wanted = None if keys is None else arrow.array(list(keys), arrow.string())
    needed = list(columns) if wanted is None or "key" in columns else ["key", *columns]
    out: list[pa.Table] = []
    run: list[pa.Table] = []  # consecutive small tables: one filter for all (per-call cost)

    def take(tables: list[pa.Table]) -> None:
        if tables:
            whole = tables[0] if len(tables) == 1 else arrow.concat_tables(tables)
            selected = _select(whole, wanted)
            if selected is not None:
                out.append(selected)

    for name in list_segments(root) if names is None else names:
        try:
            table = read_segment(root / name).select(needed)
        except FileNotFoundError:  # removed since listing (a directory being replaced)
            continue
        if table.num_rows < _FILTER_ALONE_FROM:
            run.append(table)
        else:
            take(run)
            run = []
            take([table])
    take(run)
    result = _empty_table().select(needed) if not out else out[0]
    if len(out) > 1:
        result = arrow.concat_tables(out)
    return result.select(list(columns))


def read_series(
    metrics_dir: str | os.PathLike[str], keys: Sequence[str] | None = None
) -> pd.DataFrame:
    """Long DataFrame: key (categorical), step (int64), value (float64), time (float64 unix s)."""
    require("pandas", "workbook")
    df = read_table(metrics_dir, keys).to_pandas()
    return df.reset_index(drop=True)


def wide(df: pd.DataFrame, index: str = "step") -> pd.DataFrame:
    """One column per key, indexed by `index` (step or time); a repeated (key, step) keeps the
    last value logged."""
    pd = require("pandas", "workbook")
    if df.empty:
        return pd.DataFrame(index=pd.Index([], name=index, dtype=df[index].dtype))
    flat = df.assign(key=df["key"].astype(str))
    flat = flat.drop_duplicates(["key", index], keep="last")
    out = flat.pivot(index=index, columns="key", values="value").sort_index()
    out.columns.name = None
    return out


def meld(
    metrics_dirs: Mapping[str, str | os.PathLike[str]] | Sequence[str | os.PathLike[str]],
    key: str,
    index: str = "step",
) -> pd.DataFrame:
    """One key across experiments: one column per experiment (label, or the path for a list),
    aligned on `index` (outer join, NaN where an experiment has no point; a repeated step
    keeps its last value)."""
    pd = require("pandas", "workbook")
    items = (
        list(metrics_dirs.items())
        if isinstance(metrics_dirs, Mapping)
        else [(str(p), p) for p in metrics_dirs]
    )
    labels, xs, ys = [], [], []
    for label, directory in items:
        table = read_table(directory, [key], columns=(index, "value"))
        x = table.column(index).to_numpy()
        y = table.column("value").to_numpy()
        if len(x) > 1 and not (x[1:] > x[:-1]).all():  # out of order or repeated steps
            order = np.argsort(x, kind="stable")
            x, y = x[order], y[order]
            last = np.r_[x[1:] != x[:-1], True]
            x, y = x[last], y[last]
        labels.append(label)
        xs.append(x)
        ys.append(y)
    if not labels:
        return pd.DataFrame()
    if all(len(x) == len(xs[0]) and np.array_equal(x, xs[0]) for x in xs):  # the usual case
        axis = xs[0]
        block = np.empty((len(axis), len(ys)), dtype=np.float64, order="F")
        for j, y in enumerate(ys):
            block[:, j] = y
    else:
        axis = np.unique(np.concatenate(xs))
        block = np.full((len(axis), len(ys)), np.nan, dtype=np.float64, order="F")
        for j, (x, y) in enumerate(zip(xs, ys, strict=True)):
            block[np.searchsorted(axis, x), j] = y
    # Fortran order: each column is contiguous, which is how pandas stores the block: no copy.
    return pd.DataFrame(block, index=pd.Index(axis, name=index), columns=labels, copy=False)


# -- summaries ------------------------------------------------------------------------------
def _fold_table(table: pa.Table) -> dict[str, list[float]]:
    """Per key [last, min, max, count, last_step, last_time, max_time] of one table.

    `last` is the value at the greatest step (ties: the later time, then the later row), so it
    does not depend on which process flushed first. min/max ignore NaN (NaN if all are NaN).
    """
    if not table.num_rows:
        return {}
    table = table.unify_dictionaries().combine_chunks()
    key = table.column("key").chunk(0)
    codes = key.indices.to_numpy(zero_copy_only=False)
    names = key.dictionary.to_pylist()
    step = table.column("step").to_numpy()
    value = table.column("value").to_numpy()
    when = table.column("time").to_numpy()
    order = np.lexsort((when, step, codes))
    codes_sorted = codes[order]
    starts = np.flatnonzero(np.r_[True, codes_sorted[1:] != codes_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)] - 1
    v_sorted = value[order]
    with np.errstate(invalid="ignore"):
        mins = np.fmin.reduceat(v_sorted, starts)
        maxs = np.fmax.reduceat(v_sorted, starts)
    max_time = np.fmax.reduceat(when[order], starts)
    out = {}
    for i, start in enumerate(starts):
        last_row = order[ends[i]]
        out[names[codes_sorted[start]]] = [
            float(value[last_row]),
            float(mins[i]),
            float(maxs[i]),
            int(ends[i] - start + 1),
            int(step[last_row]),
            float(when[last_row]),
            float(max_time[i]),
        ]
    return out


def _merge(old: list[float], new: list[float]) -> list[float]:
    last, last_step, last_time = old[0], old[4], old[5]
    if (new[4], new[5]) >= (last_step, last_time):
        last, last_step, last_time = new[0], new[4], new[5]
    return [
        last,
        float(np.fmin(old[1], new[1])),
        float(np.fmax(old[2], new[2])),
        int(old[3] + new[3]),
        last_step,
        last_time,
        float(np.fmax(old[6], new[6])),
    ]


def _load_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("version") != _STATE_VERSION:
        return None
    return state


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)
    except OSError:  # a read-only (materialized) directory: summaries are just not cached
        _log.debug("cannot save summary state %s", path, exc_info=True)
        try:
            tmp.unlink()
        except OSError:
            pass


def _add_span(spans: list[list[int]], first: int, last: int) -> None:
    """Add counters first..last to sorted, disjoint [first, last] spans (in place)."""
    spans.append([first, last])
    spans.sort()
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    spans[:] = merged


def _in_spans(spans: list[list[int]], counter: int) -> bool:
    return any(lo <= counter <= hi for lo, hi in spans)


def _writer_key(i: SegmentId) -> str:
    return "-".join(i.writer)


def _spanned(name: str, merges: list[SegmentId]) -> bool:
    """Whether a present merged segment holds segment `name` (so its points are still read)."""
    i = segment_id(name)
    return i is not None and any(
        m.writer == i.writer and m.first <= i.first and i.last <= m.last for m in merges
    )


def _unfolded_rows(root: Path, name: str, folded: list[list[int]]) -> pa.Table:
    """The rows of merged segment `name` that came from segments not folded yet."""
    import pyarrow as pa

    table = read_segment(root / name, keep_metadata=True)
    keep = np.concatenate(
        [np.full(rows, not _in_spans(folded, counter)) for counter, rows in parts_of(name, table)]
        or [np.zeros(0, dtype=bool)]
    )
    return table.replace_schema_metadata(None).filter(pa.array(keep))


def summarize(
    metrics_dir: str | os.PathLike[str], state_path: str | os.PathLike[str] | None = None
) -> list[MetricSummary]:
    """Per-key last/min/max/count/last_step of the series, sorted by key.

    Incremental: the folded segments, the writers' counters they hold and the running
    summaries are kept in `state_path` (default ``<metrics_dir>/.summary-state.json``;
    dot-names are not part of the series), so each call only reads segments that appeared
    since the last one. A merge of segments already folded is not folded again (only its rows
    from segments not seen yet are). If a folded segment disappeared otherwise, everything is
    folded again.
    """
    root = Path(metrics_dir)
    state_file = Path(state_path) if state_path is not None else root / SUMMARY_STATE
    present = list_segments(root)
    state = _load_state(state_file)
    merges = [i for i in map(segment_id, present) if i is not None and i.merged]
    if state is not None:
        vanished = set(state["segments"]) - set(present)
        if not all(_spanned(name, merges) for name in vanished):
            state = None
    if state is None:
        state = {"version": _STATE_VERSION, "segments": [], "keys": {}, "counters": {}}
    folded = set(state["segments"])
    new = [name for name in present if name not in folded]
    if new:
        counters: dict[str, list[list[int]]] = state["counters"]
        ids = {name: segment_id(name) for name in new}
        whole, partial = [], []
        for name, i in ids.items():
            seen = counters.get(_writer_key(i), []) if i is not None else []
            if i is not None and i.merged and any(lo <= i.last and i.first <= hi for lo, hi in seen):
                partial.append((name, seen))
            else:
                whole.append(name)
        tables = [read_table(root, names=whole)] if whole else []
        tables += [_unfolded_rows(root, name, seen) for name, seen in partial]
        keys: dict[str, list[float]] = state["keys"]
        for table in tables:
            for key, summary in _fold_table(table).items():
                keys[key] = summary if key not in keys else _merge(keys[key], summary)
        for i in ids.values():
            if i is not None:
                _add_span(counters.setdefault(_writer_key(i), []), i.first, i.last)
        state["segments"] = list(present)
        _save_state(state_file, state)
    elif set(state["segments"]) != set(present):
        state["segments"] = list(present)
        _save_state(state_file, state)
    return [
        MetricSummary(
            key=key,
            last=s[0],
            min=s[1],
            max=s[2],
            count=int(s[3]),
            last_step=int(s[4]),
            updated=s[6],
        )
        for key, s in sorted(state["keys"].items())
    ]


# -- downsampling ---------------------------------------------------------------------------
def _bucket_rows(x: np.ndarray, y: np.ndarray, buckets: int, lo: float, hi: float) -> np.ndarray:
    """Positions (into x sorted ascending) of each bucket's min and max row, ascending."""
    n = len(x)
    if n <= 2 * buckets:
        return np.arange(n)
    span = hi - lo
    b = np.zeros(n, dtype=np.int64) if span <= 0 else ((x - lo) * (buckets / span)).astype(np.int64)
    np.clip(b, 0, buckets - 1, out=b)
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    # NaN must neither win nor hide a real extreme; an all-NaN bucket still shows one NaN.
    low = np.where(np.isnan(y), np.inf, y)
    high = np.where(np.isnan(y), -np.inf, y)
    run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    mins = np.minimum.reduceat(low, starts)
    maxs = np.maximum.reduceat(high, starts)
    is_min = low == mins[run]
    is_max = high == maxs[run]
    both = np.concatenate([_first_true_per_run(is_min, run), _first_true_per_run(is_max, run)])
    return np.unique(both)


def _first_true_per_run(flags: np.ndarray, run: np.ndarray) -> np.ndarray:
    """Position of the first True of each run (every run has one)."""
    hits = np.flatnonzero(flags)
    runs = run[hits]
    return hits[np.r_[True, runs[1:] != runs[:-1]]]


def downsample(
    df: pd.DataFrame,
    buckets: int,
    x_range: tuple[float, float] | None = None,
    x: str = "step",
) -> pd.DataFrame:
    """At most ``2 * buckets`` rows per key, keeping each bucket's min and max row.

    The x axis (`x`, default step) over `x_range` (default: the key's own range) is cut into
    `buckets` equal-width buckets; each bucket keeps its lowest and highest value, so a single
    spike among millions of points survives. Rows outside `x_range` are dropped. Columns and
    dtypes are those of `df` (long format); rows come out per key, in x order.
    """
    pd = require("pandas", "workbook")
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    parts = []
    for _, group in df.groupby("key", observed=True, sort=False):
        xs = group[x].to_numpy()
        if x_range is not None:
            inside = (xs >= x_range[0]) & (xs <= x_range[1])
            group, xs = group[inside], xs[inside]
        if not len(group):
            continue
        order = np.argsort(xs, kind="stable")
        xs = xs[order]
        lo, hi = (float(xs[0]), float(xs[-1])) if x_range is None else map(float, x_range)
        keep = _bucket_rows(
            xs.astype(np.float64), group["value"].to_numpy()[order], buckets, lo, hi
        )
        parts.append(group.iloc[order[keep]])
    if not parts:
        return df.iloc[0:0]
    return pd.concat(parts, ignore_index=True)
