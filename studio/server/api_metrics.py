"""Metric summaries and bucketed series of one experiment (charts, zoom, system metrics)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request

from studio.exceptions import UsageError
from studio.server.api_runs import context, load, split_keys
from studio.server.responses import ERRORS, summary_dict
from studio.server.series import (
    KeySeries,
    SeriesCache,
    bucketed,
    metrics_dir,
    run_start,
    step_range,
)

router = APIRouter(prefix="/api/experiments", tags=["metrics"], responses=ERRORS)
runs_router = APIRouter(prefix="/api", tags=["metrics"], responses=ERRORS)
MAX_RUNS = 500
SYSTEM_PREFIX = "sys/"


def cache(request: Request) -> SeriesCache:
    state = request.app.state
    if not hasattr(state, "series_cache"):
        state.series_cache = SeriesCache()
    return state.series_cache  # type: ignore[no-any-return]


@router.get("/{key}/metrics", summary="Metric names and summaries (last, min, max, count)")
def metrics(request: Request, key: str) -> dict[str, Any]:
    """`keys`: every metric name, from the stored summaries and the series itself (a running
    experiment's newest keys may not be summarized yet). `system`: names starting `sys/`."""
    ctx = context(request)
    exp = load(ctx, key)
    summaries = {s.key: summary_dict(s) for s in ctx.meta.metric_summaries([exp.key]).get(exp.key, [])}
    folder = metrics_dir(ctx, exp)
    names = set(summaries) | (set(cache(request).load(folder)) if folder is not None else set())
    return {
        "summaries": summaries,
        "keys": sorted(n for n in names if not n.startswith(SYSTEM_PREFIX)),
        "system": sorted(n for n in names if n.startswith(SYSTEM_PREFIX)),
        "status": exp.status.value,
    }


@router.get("/{key}/series", summary="Min/max-bucketed points of some metrics within a step range")
def series(
    request: Request,
    key: str,
    keys: str = Query(..., min_length=1, max_length=10_000, description="Comma-separated metric names"),
    buckets: int = Query(1000, ge=10, le=20_000, description="Buckets across the range (2 points each)"),
    x_min: float | None = Query(None, description="First step of the range (zoom)"),
    x_max: float | None = Query(None, description="Last step of the range (zoom)"),
    time: bool = Query(False, description="Also return `t`: each point's wall-clock time"),
) -> dict[str, Any]:
    """For each name: `x` (steps) and `y` (values). Ranges of more than 2*buckets points come
    back as each bucket's min and max in step order (`sampled: true`), so spikes survive;
    narrower ranges (zooming in) come back finer, down to the points themselves."""
    ctx = context(request)
    exp = load(ctx, key)
    names = split_keys(keys)
    if len(names) > 50:
        raise UsageError(f"at most 50 metrics per request, got {len(names)}")
    folder = metrics_dir(ctx, exp)
    loaded = cache(request).load(folder) if folder is not None else {}
    out = {name: bucketed(loaded[name], buckets, x_min, x_max, with_time=time) for name in names if name in loaded}
    return {
        "series": out,
        "missing": [n for n in names if n not in loaded],
        "status": exp.status.value,
        "terminal": exp.status.terminal,
    }


@runs_router.get("/charts/series", summary="Bucketed series of many runs at once (the runs+charts view)")
def many_series(
    request: Request,
    keys: str = Query(..., min_length=1, max_length=100_000, description="Comma-separated experiment keys"),
    metrics: str = Query(..., min_length=1, max_length=10_000, description="Comma-separated metric names"),
    buckets: int = Query(500, ge=10, le=20_000, description="Buckets per series (2 points each)"),
    x_min: float | None = Query(None, description="Start of the range (zoom), on the `x_axis`"),
    x_max: float | None = Query(None, description="End of the range (zoom), on the `x_axis`"),
    x_axis: Literal["step", "time", "relative"] = Query(
        "step", description="What x_min/x_max are: steps, wall-clock seconds (epoch), or seconds since the run's start"),
    time: bool = Query(False, description="Also return `t`: each point's wall-clock time"),
) -> dict[str, Any]:
    """`runs`: key -> metric -> points, as `/api/experiments/{key}/series` gives them; one
    request for every run a chart view shows. Runs without a metric are left out of its map;
    unknown keys are listed in `missing`. With `time`, `starts`: key -> the run's first
    wall-clock time (zero of the relative axis). A range on a time axis selects, in each run,
    the steps logged within it, then buckets those as a step range would."""
    ctx = context(request)
    wanted = list(dict.fromkeys(split_keys(keys)))
    names = split_keys(metrics)
    if len(names) > 50:
        raise UsageError(f"at most 50 metrics per request, got {len(names)}")
    found = ctx.meta.get_experiments(wanted)
    runs: dict[str, Any] = {}
    starts: dict[str, float | None] = {}
    for exp in found:
        folder = metrics_dir(ctx, exp)
        if folder is None:
            runs[exp.key], starts[exp.key] = {}, None
        elif x_min is None and x_max is None:  # the whole range: what every view first shows
            runs[exp.key], starts[exp.key] = cache(request).overview(folder, names, buckets, with_time=time)
        else:
            loaded = cache(request).load(folder)
            start = starts[exp.key] = run_start(loaded) if time or x_axis == "relative" else None
            runs[exp.key] = {
                name: bucketed(loaded[name], buckets, *_steps(loaded[name], x_axis, x_min, x_max, start), with_time=time)
                for name in names if name in loaded
            }
    out: dict[str, Any] = {"runs": runs, "missing": [k for k in wanted if k not in runs]}
    if time:
        out["starts"] = starts
    return out


def _steps(s: KeySeries, x_axis: str, x_min: float | None, x_max: float | None,
           start: float | None) -> tuple[float | None, float | None]:
    """The step range of a range on `x_axis` in series `s` of a run that started at `start`."""
    if x_axis == "step" or (x_min is None and x_max is None):
        return x_min, x_max
    offset = 0.0 if x_axis == "time" else start
    if offset is None:  # no times logged: no relative axis to zoom on
        return None, None
    return step_range(s, None if x_min is None else x_min + offset, None if x_max is None else x_max + offset)
