"""Metric series for charts: read an experiment's segments, cache them, bucket them.

Where the points are: a running experiment's `metrics` artifact has its live folder at
`local_path` (segments appear there as the script logs); otherwise the stored tree is
materialized once into `$STUDIOML_HOME/cache/metrics/<tree>` (trees never change, so that
copy is valid forever); a local folder that still exists is the last resort.

Bucketing keeps spikes: a range of n points is cut into `buckets` equal runs and each run
contributes its minimum and its maximum, in step order, so a single outlier among a million
points still draws a line to its value. Zooming asks for the same number of buckets over a
narrower step range, which gets finer until the points themselves are returned.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.api.context import Context
from studio.entities import Experiment, Status
from studio.tracking.segments import list_segments, read_segment

CACHE_ENTRIES = 512
#: Bytes of points the cache keeps (steps, values and wall times: 24 bytes a point); enough for
#: a runs+charts view of 100 runs of 100k points without reading segments again.
CACHE_BYTES = 512 * 1024 * 1024
#: Whole-range bucketed series kept by `SeriesCache.overview` (points, over all entries): what
#: a runs+charts view shows before any zoom, so a view of more runs than CACHE_BYTES holds
#: (500 runs of 100k points are 1.2 GB of points) is drawn again without reading segments.
VIEW_POINTS = 4_000_000
_INDEX_TYPES = {8: np.int8, 16: np.int16, 32: np.int32, 64: np.int64}


def warm_up() -> None:
    """Import what reading series needs (pyarrow: ~1 s) before the first chart asks."""
    import pyarrow  # noqa: F401
    import pyarrow.ipc  # noqa: F401


@dataclass
class KeySeries:
    steps: np.ndarray  # int64, sorted ascending
    values: np.ndarray  # float64
    times: np.ndarray | None = None  # float64 wall-clock seconds, when the segments have them

    @property
    def nbytes(self) -> int:
        return int(self.steps.nbytes + self.values.nbytes + (self.times.nbytes if self.times is not None else 0))


@dataclass
class _Entry:
    names: tuple[str, ...]
    keys: dict[str, KeySeries]


def metrics_dir(ctx: Context, exp: Experiment) -> Path | None:
    """The folder holding the experiment's segments, or None if it has none (yet)."""
    art = exp.artifacts.get("metrics")
    if art is None:
        return None
    local = Path(art.local_path) if art.local_path else None
    if exp.status in (Status.RUNNING, Status.QUEUED) and local is not None and local.is_dir():
        return local
    if art.tree:
        return _materialized(ctx, art.tree)
    return local if local is not None and local.is_dir() else None


def _materialized(ctx: Context, tree: str) -> Path:
    from studio.runner.materialize import cached_tree

    out = cached_tree(ctx, tree)
    return out if out.is_dir() else out.parent  # a single-file tree: the folder shape segments expect


def _numpy(arr: Any, dtype: Any) -> np.ndarray:
    """A primitive Arrow array as numpy, zero-copy. (`Array.to_numpy` imports pandas, which
    costs about a second on the first chart.)"""
    if arr.null_count == 0 and arr.type.bit_width == np.dtype(dtype).itemsize * 8:
        data = np.frombuffer(arr.buffers()[1], dtype=dtype, count=arr.offset + len(arr))
        return data[arr.offset :]
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=dtype)


Parts = tuple[np.ndarray, np.ndarray, np.ndarray]


def _split(table: Any) -> dict[str, Parts]:
    """One segment's points grouped by key: name -> (steps, values, wall times)."""
    import pyarrow as pa

    parts: dict[str, list[Parts]] = {}
    for batch in table.to_batches():
        if batch.num_rows == 0:
            continue
        keycol = batch.column(0)
        if not pa.types.is_dictionary(keycol.type):
            keycol = keycol.dictionary_encode()
        idx = _numpy(keycol.indices, _INDEX_TYPES[keycol.indices.type.bit_width])
        names = keycol.dictionary.to_pylist()
        steps = _numpy(batch.column(1), np.int64)
        values = _numpy(batch.column(2), np.float64)
        times = _numpy(batch.column(3), np.float64) if batch.num_columns > 3 else np.full(len(steps), np.nan)
        if len(names) == 1:
            parts.setdefault(names[0], []).append((steps, values, times))
            continue
        order = np.argsort(idx, kind="stable")
        bounds = np.cumsum(np.bincount(idx, minlength=len(names)))
        start = 0
        for code, end in enumerate(bounds):
            if end > start:
                sel = order[start:end]
                parts.setdefault(names[code], []).append((steps[sel], values[sel], times[sel]))
            start = int(end)
    return {
        name: (np.concatenate([p[0] for p in chunks]), np.concatenate([p[1] for p in chunks]),
               np.concatenate([p[2] for p in chunks]))
        for name, chunks in parts.items()
    }


def _merge(old: KeySeries | None, parts: list[Parts]) -> KeySeries:
    if old is not None:
        old_times = old.times if old.times is not None else np.full(len(old.steps), np.nan)
        parts = [(old.steps, old.values, old_times), *parts]
    steps = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    values = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
    times = parts[0][2] if len(parts) == 1 else np.concatenate([p[2] for p in parts])
    if len(steps) > 1 and np.any(steps[1:] < steps[:-1]):
        order = np.argsort(steps, kind="stable")
        steps, values, times = steps[order], values[order], times[order]
    return KeySeries(steps, values, times)


class SeriesCache:
    """Loaded series per metrics folder; new segments of a live folder are read incrementally."""

    def __init__(self, entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._views: OrderedDict[tuple[Any, ...], _View] = OrderedDict()
        self._view_points = 0

    def load(self, folder: Path) -> dict[str, KeySeries]:
        names = tuple(list_segments(folder))
        path = str(folder)
        with self._lock:
            entry = self._cache.get(path)
            if entry is not None:
                self._cache.move_to_end(path)
        if entry is not None and entry.names == names:
            return entry.keys
        known = set(entry.names) if entry is not None else set()
        if entry is not None and known <= set(names):
            keys = dict(entry.keys)
            todo = [n for n in names if n not in known]
        else:
            keys, todo = {}, list(names)
        new: dict[str, list[Parts]] = {}
        for name in todo:
            try:
                table = read_segment(folder / name)
            except FileNotFoundError:
                continue
            for key, columns in _split(table).items():
                new.setdefault(key, []).append(columns)
        for key, parts in new.items():
            keys[key] = _merge(keys.get(key), parts)
        with self._lock:
            self._cache[path] = _Entry(names, keys)
            self._cache.move_to_end(path)
            while len(self._cache) > self.entries or (
                len(self._cache) > 1 and self._bytes() > self.max_bytes
            ):
                self._cache.popitem(last=False)
        return keys


    def _bytes(self) -> int:
        return sum(s.nbytes for e in self._cache.values() for s in e.keys.values())

    def overview(self, folder: Path, names: list[str], buckets: int,
                 with_time: bool = False) -> tuple[dict[str, dict[str, Any]], float | None]:
        """`bucketed(series, buckets)` over the whole range for each of `names` the folder has,
        and the run's start (`run_start`). Kept per state of the folder (its segment names), so
        revisiting a view costs no segment reads even when the points were evicted."""
        key = (str(folder), tuple(list_segments(folder)), buckets, with_time)
        with self._lock:
            view = self._views.get(key)
            if view is not None:
                self._views.move_to_end(key)
        if view is not None and all(n in view.series or n in view.absent for n in names):
            return {n: view.series[n] for n in names if n in view.series}, view.start
        loaded = self.load(folder)
        fresh = _View(start=run_start(loaded)) if view is None else view
        added = 0
        for name in names:
            if name in fresh.series or name in fresh.absent:
                continue
            if name not in loaded:
                fresh.absent.add(name)
                continue
            fresh.series[name] = bucketed(loaded[name], buckets, with_time=with_time)
            added += len(fresh.series[name]["x"])
        with self._lock:
            current = self._views.get(key)
            if current is None:  # a live folder's older states go: they are never asked for again
                for stale in [k for k in self._views if k[0] == key[0] and k[2:] == key[2:]]:
                    self._view_points -= _points(self._views.pop(stale))
                self._views[key] = fresh
            if current is None or current is fresh:
                self._view_points += added
            self._views.move_to_end(key)
            while len(self._views) > 1 and self._view_points > VIEW_POINTS:
                self._view_points -= _points(self._views.popitem(last=False)[1])
        return {n: fresh.series[n] for n in names if n in fresh.series}, fresh.start


def _points(view: _View) -> int:
    return sum(len(v["x"]) for v in view.series.values())


@dataclass
class _View:
    start: float | None
    series: dict[str, dict[str, Any]] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)


def _finite_list(a: np.ndarray) -> list[float | None]:
    if np.isfinite(a).all():
        return a.tolist()  # type: ignore[no-any-return]
    return [v if np.isfinite(v) else None for v in a.tolist()]


def run_start(loaded: dict[str, KeySeries]) -> float | None:
    """A run's first wall-clock time over all its series: zero of the relative-time axis."""
    firsts = [float(np.nanmin(s.times)) for s in loaded.values()
              if s.times is not None and len(s.times) and not np.isnan(s.times).all()]
    return min(firsts) if firsts else None


def step_range(s: KeySeries, t_min: float | None, t_max: float | None) -> tuple[float | None, float | None]:
    """The steps of the points whose wall-clock times fall in [t_min, t_max] (a chart zoomed on a
    time axis asks for those steps). With no point inside, the points on either side, so the
    line still crosses the view; a series without times: everything (None, None)."""
    if s.times is None or not len(s.steps):
        return None, None
    t = s.times
    lo = -np.inf if t_min is None else t_min
    hi = np.inf if t_max is None else t_max
    known = ~np.isnan(t)
    inside = np.flatnonzero(known & (t >= lo) & (t <= hi))
    if len(inside):
        return float(s.steps[inside[0]]), float(s.steps[inside[-1]])
    before = np.flatnonzero(known & (t < lo))
    after = np.flatnonzero(known & (t > hi))
    first = s.steps[before[-1]] if len(before) else s.steps[0]
    last = s.steps[after[0]] if len(after) else s.steps[-1]
    return float(first), float(last)


def bucketed(
    s: KeySeries, buckets: int, x_min: float | None = None, x_max: float | None = None, with_time: bool = False
) -> dict[str, Any]:
    """Points of `s` within [x_min, x_max] (one more on each side, so lines reach the edges),
    reduced to each bucket's min and max (and both ends) in step order when there are more than
    2*buckets. `with_time` adds `t`: each point's wall-clock time (seconds; null if unknown)."""
    out = _bucketed(s, buckets, x_min, x_max)
    if with_time:
        idx = out.pop("_idx")
        out["t"] = _finite_list(s.times[idx]) if s.times is not None else [None] * len(idx)
    else:
        out.pop("_idx")
    return out


def _bucketed(s: KeySeries, buckets: int, x_min: float | None, x_max: float | None) -> dict[str, Any]:
    steps, values = s.steps, s.values
    n_all = len(steps)
    lo = 0 if x_min is None or not np.isfinite(x_min) else int(np.searchsorted(steps, x_min, "left"))
    hi = n_all if x_max is None or not np.isfinite(x_max) else int(np.searchsorted(steps, x_max, "right"))
    lo, hi = max(0, lo - 1), min(n_all, max(hi + 1, lo))
    st, va = steps[lo:hi], values[lo:hi]
    n = len(st)
    if n <= 2 * buckets:
        return {"x": st.tolist(), "y": _finite_list(va), "count": n, "total": n_all, "sampled": False,
                "_idx": np.arange(lo, hi)}
    per = -(-n // buckets)  # points per bucket, rounded up
    rows = -(-n // per)
    pad = rows * per - n
    low = np.where(np.isnan(va), np.inf, va)
    high = np.where(np.isnan(va), -np.inf, va)
    if pad:
        low = np.concatenate([low, np.full(pad, np.inf)])
        high = np.concatenate([high, np.full(pad, -np.inf)])
    base = np.arange(rows) * per
    imin = np.minimum(low.reshape(rows, per).argmin(axis=1) + base, n - 1)
    imax = np.minimum(high.reshape(rows, per).argmax(axis=1) + base, n - 1)
    # Each bucket's min and max, plus both ends so lines reach the edges of the range.
    idx = np.unique(np.concatenate([imin, imax, [0, n - 1]]))
    return {
        "x": st[idx].tolist(), "y": _finite_list(va[idx]), "count": n, "total": n_all, "sampled": True,
        "_idx": idx + lo,
    }
