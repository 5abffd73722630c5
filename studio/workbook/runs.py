"""`wb.runs()`: experiments as one DataFrame, filtered and sorted by the metadata store.

One query for the page of experiments (filter, sort and limit run in the database) and one
for their metric summaries, whatever the number of rows. Columns:

    project status owner script time_added time_started time_finished duration
    metric metric_value returncode   params.<name>...   metrics.<name>.{last,min,max,count}...

indexed by `key`, in the order of the query (default: newest first). Times are UTC
datetimes, `duration` seconds.

`where` is any of:
- a filter expression, as for `studio runs list`: ``"lr < 0.01 and status = finished"``;
- a dict: ``{"lr": 0.01}`` (equality) or ``{"lr": ("<", 0.01), "status": "finished"}``;
- the metadata store's triples: ``[("params.lr", "<", 0.01)]``.
Bare names mean parameters (``lr`` is ``params.lr``); ``metrics.x`` is the last value of a
metric. `order_by` is a column, ``params.x`` or ``metrics.x``, ``-`` for descending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from studio.entities import ExperimentQuery, Status
from studio.exceptions import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from studio.meta.base import MetaStore

Where = str | Mapping[str, Any] | Sequence[tuple[str, str, Any]] | None
SUMMARY_FIELDS = ("last", "min", "max", "count")
_TIMES = ("time_added", "time_started", "time_finished")


def build_query(
    project: str | None = None,
    where: Where = None,
    order_by: str | None = None,
    limit: int | None = None,
    status: str | Status | Sequence[str | Status] | None = None,
) -> ExperimentQuery:
    from studio.api.query_parser import parse_filter, parse_sort, resolve_name

    conditions: list[tuple[str, str, Any]] = []
    statuses: set[Status] | None = None
    if isinstance(where, str):
        parsed = parse_filter(where)
        conditions.extend(parsed.where)
        statuses = set(parsed.status) if parsed.status is not None else None
    elif isinstance(where, Mapping):
        for name, value in where.items():
            op, operand = value if isinstance(value, tuple) and len(value) == 2 else ("=", value)
            conditions.append((resolve_name(str(name)), str(op), operand))
    elif where is not None:
        for cond in where:
            if not isinstance(cond, tuple | list) or len(cond) != 3:
                raise UsageError(f"filter {cond!r} must be (field, operator, value)")
            conditions.append((resolve_name(str(cond[0])), str(cond[1]), cond[2]))
    # `status` is a column the store filters on directly; lift it out for its index.
    for cond in [c for c in conditions if c[0] == "status" and c[1] in ("=", "==")]:
        conditions.remove(cond)
        chosen = {_status(cond[2])}
        statuses = chosen if statuses is None else statuses & chosen
    if status is not None:
        chosen = {_status(s) for s in ([status] if isinstance(status, str | Status) else status)}
        statuses = chosen if statuses is None else statuses & chosen
    if statuses is not None and not statuses:
        statuses = None
        conditions.append(("key", "=", None))  # contradictory statuses: nothing matches
    return ExperimentQuery(
        project=project,
        status=tuple(sorted(statuses, key=lambda s: s.value)) if statuses else (),
        where=tuple(conditions),
        order_by=parse_sort(order_by),
        limit=limit,
    )


def _status(value: Any) -> Status:
    try:
        return Status(str(value).lower())
    except ValueError:
        names = ", ".join(s.value for s in Status)
        raise UsageError(f"unknown status {value!r}; statuses are {names}") from None


def runs_frame(meta: MetaStore, q: ExperimentQuery) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    items = meta.query(q).items
    keys = [e.key for e in items]
    summaries = meta.metric_summaries(keys) if keys else {}
    n = len(items)
    columns: dict[str, Any] = {
        "project": [e.project for e in items],
        "status": [e.status.value for e in items],
        "owner": [e.owner for e in items],
        "script": [e.script for e in items],
    }
    for name in _TIMES:
        columns[name] = _utc_times([getattr(e, name) for e in items])
    columns["duration"] = np.array([e.duration for e in items], dtype=np.float64)
    columns["metric"] = [e.metric for e in items]
    columns["metric_value"] = np.array([e.metric_value for e in items], dtype=np.float64)
    columns["returncode"] = pd.array([e.returncode for e in items], dtype="Int64")
    param_names = sorted({p for e in items for p in e.params})
    for p in param_names:
        columns[f"params.{p}"] = _param_column([e.params.get(p) for e in items])
    metric_names = sorted({s.key for lst in summaries.values() for s in lst})
    if metric_names:
        position = {m: i for i, m in enumerate(metric_names)}
        table = np.full((len(SUMMARY_FIELDS), len(metric_names), n), np.nan)
        for row, key in enumerate(keys):
            for s in summaries.get(key, ()):
                col = position[s.key]
                table[0, col, row], table[1, col, row] = s.last, s.min
                table[2, col, row], table[3, col, row] = s.max, s.count
        for m, col in position.items():
            for f, field in enumerate(SUMMARY_FIELDS):
                values = table[f, col]
                columns[f"metrics.{m}.{field}"] = (
                    pd.array(values, dtype="Float64").astype("Int64")
                    if field == "count"
                    else values
                )
    return pd.DataFrame(columns, index=pd.Index(keys, name="key"))


def _utc_times(values: list[float | None]) -> Any:
    """Unix seconds -> tz-aware UTC datetimes (NaT for None), without pandas' parser."""
    import numpy as np
    import pandas as pd

    raw = np.array(values, dtype=np.float64)
    ns = np.full(len(raw), np.iinfo(np.int64).min, dtype=np.int64)  # NaT
    ok = ~np.isnan(raw)
    ns[ok] = np.round(raw[ok] * 1e9).astype(np.int64)
    return pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")


def _param_column(values: list[Any]) -> Any:
    """Integers as int64, other numbers as float64 (None -> NaN), anything else as objects."""
    import numpy as np

    if all(type(v) is int for v in values) and all(-(2**63) <= v < 2**63 for v in values):
        return np.array(values, dtype=np.int64)
    if all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return values
