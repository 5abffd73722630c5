"""Turn a batch of queued `log` calls into per-key columns, vectorised with numpy.

`Logger.log` queues each call as three items, ``time, step, values`` (one `deque.extend` of a
tuple: atomic under the GIL, lock-free, and nothing the garbage collector has to track). This
module does the per-point work in the flusher thread: calls are grouped by their key tuple (a
training loop logs the same keys call after call), each group's values become one float64
matrix through `numpy.fromiter` at C speed, and auto-increment steps are computed per key with
a "last explicit step" scan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

_log = logging.getLogger("studio.tracking.metrics")
_warned_bad_value = False

Columns = list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]  # key, steps, values, times


def _floats(dicts: Sequence[dict[str, Any]], count: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The `count` values of `dicts` as float64, and a validity mask (None: all numbers)."""
    try:
        flat = np.fromiter(
            chain.from_iterable(map(dict.values, dicts)), dtype=np.float64, count=count
        )
        return flat, None
    except (TypeError, ValueError, OverflowError):
        pass
    out = np.empty(count, dtype=np.float64)
    ok = np.ones(count, dtype=bool)
    for i, v in enumerate(chain.from_iterable(map(dict.values, dicts))):
        try:
            out[i] = float(v)
        except (TypeError, ValueError, OverflowError):
            ok[i] = False
            _warn_bad_value(v)
    return out, ok


def _matrix(dicts: Sequence[dict[str, Any]], width: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Values of same-keyed calls as an (n, width) float64 matrix, plus a validity mask."""
    n = len(dicts)
    flat, ok = _floats(dicts, n * width)
    return flat.reshape(n, width), None if ok is None else ok.reshape(n, width)


def _warn_bad_value(value: Any) -> None:
    global _warned_bad_value
    if not _warned_bad_value:
        _warned_bad_value = True
        _log.warning("studio.log: dropped a value that is not a number: %r", value)


Group = tuple[tuple[str, ...], list[dict[str, Any]], "np.ndarray | None"]


def _groups(dicts: list[dict[str, Any]]) -> list[Group]:
    """(key tuple, member dicts, their positions or None for "all, in order") per key tuple."""
    keytuples = list(map(tuple, dicts))
    uniq = list(dict.fromkeys(keytuples))
    if len(uniq) == 1:
        return [(uniq[0], dicts, None)]
    ids = {ks: i for i, ks in enumerate(uniq)}
    gid = np.fromiter(map(ids.__getitem__, keytuples), dtype=np.intp, count=len(dicts))
    order = np.argsort(gid, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(gid, minlength=len(uniq)))])
    out: list[Group] = []
    for i, ks in enumerate(uniq):
        idx = order[bounds[i] : bounds[i + 1]]
        out.append((ks, [dicts[j] for j in idx.tolist()], idx))
    return out


KeyPoints = tuple[str, "np.ndarray | None", np.ndarray]  # key, call positions (None: all), values


def _by_groups(dicts: list[dict[str, Any]]) -> list[KeyPoints]:
    """Wide calls (several values each): one value matrix per distinct key tuple."""
    order: dict[str, list[np.ndarray | None]] = {}
    values: dict[str, list[np.ndarray]] = {}
    for names, members, idx in _groups(dicts):
        if not names:
            continue
        matrix, ok = _matrix(members, len(names))
        for j, key in enumerate(names):
            if ok is None or ok[:, j].all():
                positions, column = idx, matrix[:, j]
            else:  # some values were not numbers: drop those points
                mask = ok[:, j]
                positions = (np.arange(len(members)) if idx is None else idx)[mask]
                column = matrix[mask, j]
            order.setdefault(key, []).append(positions)
            values.setdefault(key, []).append(column)
    out: list[KeyPoints] = []
    for key, parts in order.items():
        vals = _concat(values[key])
        if len(parts) == 1:
            out.append((key, parts[0], vals))
            continue
        positions = np.concatenate(parts)  # type: ignore[arg-type]
        perm = np.argsort(positions, kind="stable")  # the key came in several groups
        out.append((key, positions[perm], vals[perm]))
    return out


def _by_pairs(dicts: list[dict[str, Any]], lengths: np.ndarray, total: int) -> list[KeyPoints]:
    """Narrow calls (a value or two each): flatten all (key, value) pairs, sort by key."""
    keys = list(chain.from_iterable(dicts))
    values, ok = _floats(dicts, total)
    names = list(dict.fromkeys(keys))
    index = {k: i for i, k in enumerate(names)}
    codes = np.fromiter(map(index.__getitem__, keys), dtype=np.intp, count=total)
    call = np.repeat(np.arange(len(dicts)), lengths)
    if ok is not None:
        codes, call, values = codes[ok], call[ok], values[ok]
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(names)))])
    out: list[KeyPoints] = []
    for i, key in enumerate(names):
        sel = order[bounds[i] : bounds[i + 1]]
        if len(sel):
            out.append((key, call[sel], values[sel]))
    return out


def fold(items: Sequence[Any], next_steps: dict[str, int]) -> Columns:
    """Columns (key, steps, values, times) of queued calls ``[t0, step0, values0, t1, ...]``.

    Updates `next_steps` (key -> next auto step) in place.
    """
    dicts: list[dict[str, Any]] = list(items[2::3])
    n = len(dicts)
    lengths = np.fromiter(map(len, dicts), dtype=np.intp, count=n)
    total = int(lengths.sum())
    if not total:
        return []
    all_times = np.array(items[0::3], dtype=np.float64)
    raw_steps = list(items[1::3])
    missing = raw_steps.count(None)
    if missing == n:
        all_steps, all_given = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    elif missing == 0:
        all_steps, all_given = np.array(raw_steps, dtype=np.int64), np.ones(n, dtype=bool)
    else:
        all_given = np.array([s is not None for s in raw_steps], dtype=bool)
        all_steps = np.array([0 if s is None else s for s in raw_steps], dtype=np.int64)

    # Grouping costs per call, flattening per value: pick the cheaper for this batch.
    per_key = _by_pairs(dicts, lengths, total) if total <= 3 * n else _by_groups(dicts)
    out: Columns = []
    for key, calls, values in per_key:
        if not len(values):
            continue
        where: Any = slice(None) if calls is None else calls
        steps = auto_steps(all_steps[where], all_given[where], next_steps.get(key, 0))
        next_steps[key] = int(steps[-1]) + 1
        out.append((key, steps, values, all_times[where]))
    return out


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def auto_steps(explicit: np.ndarray, given: np.ndarray, start: int) -> np.ndarray:
    """Fill in steps: an explicit step is kept, a missing one is the previous step + 1."""
    if given.all():
        return explicit
    pos = np.arange(len(given), dtype=np.int64)
    if not given.any():
        return pos + start
    last = np.maximum.accumulate(np.where(given, pos, -1))
    anchor = np.maximum(last, 0)
    return np.where(last >= 0, explicit[anchor] + (pos - anchor), start + pos)
