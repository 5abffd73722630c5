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


def _matrix(dicts: Sequence[dict[str, Any]], width: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Values of same-keyed calls as an (n, width) float64 matrix, plus a validity mask."""
    n = len(dicts)
    try:
        flat = np.fromiter(
            chain.from_iterable(map(dict.values, dicts)), dtype=np.float64, count=n * width
        )
        return flat.reshape(n, width), None
    except (TypeError, ValueError, OverflowError):
        pass
    out = np.empty((n, width), dtype=np.float64)
    ok = np.ones((n, width), dtype=bool)
    for i, d in enumerate(dicts):
        for j, v in enumerate(d.values()):
            try:
                out[i, j] = float(v)
            except (TypeError, ValueError, OverflowError):
                ok[i, j] = False
                _warn_bad_value(v)
    return out, ok


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


class _KeyParts:
    __slots__ = ("order", "values", "times", "steps", "given")

    def __init__(self) -> None:
        self.order: list[np.ndarray | None] = []
        self.values: list[np.ndarray] = []
        self.times: list[np.ndarray] = []
        self.steps: list[np.ndarray] = []
        self.given: list[np.ndarray] = []


def fold(items: Sequence[Any], next_steps: dict[str, int]) -> Columns:
    """Columns (key, steps, values, times) of queued calls ``[t0, step0, values0, t1, ...]``.

    Updates `next_steps` (key -> next auto step) in place.
    """
    dicts: list[dict[str, Any]] = list(items[2::3])
    n = len(dicts)
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

    per_key: dict[str, _KeyParts] = {}
    for names, members, idx in _groups(dicts):
        if not names:
            continue
        matrix, ok = _matrix(members, len(names))
        where: Any = slice(None) if idx is None else idx
        times, steps, given = all_times[where], all_steps[where], all_given[where]
        for j, key in enumerate(names):
            parts = per_key.get(key)
            if parts is None:
                parts = per_key[key] = _KeyParts()
            sel: Any = slice(None) if ok is None or ok[:, j].all() else ok[:, j]
            parts.order.append(idx if idx is None else idx[sel])
            parts.values.append(matrix[sel, j])
            parts.times.append(times[sel])
            parts.steps.append(steps[sel])
            parts.given.append(given[sel])

    out: Columns = []
    for key, parts in per_key.items():
        values, times = _concat(parts.values), _concat(parts.times)
        steps, given = _concat(parts.steps), _concat(parts.given)
        if len(parts.order) > 1:  # the key came in several groups: back to call order
            perm = np.argsort(np.concatenate(parts.order), kind="stable")  # type: ignore[arg-type]
            values, times, steps, given = values[perm], times[perm], steps[perm], given[perm]
        if not len(values):
            continue
        steps = auto_steps(steps, given, next_steps.get(key, 0))
        next_steps[key] = int(steps[-1]) + 1
        out.append((key, steps, values, times))
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
