"""Metric summaries and bucketed series of one experiment (charts, zoom, system metrics)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from studio.exceptions import UsageError
from studio.server.api_runs import context, load, split_keys
from studio.server.responses import ERRORS, summary_dict
from studio.server.series import SeriesCache, bucketed, metrics_dir

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
    x_min: float | None = Query(None, description="First step of the range (zoom)"),
    x_max: float | None = Query(None, description="Last step of the range (zoom)"),
    time: bool = Query(False, description="Also return `t`: each point's wall-clock time"),
) -> dict[str, Any]:
    """`runs`: key -> metric -> points, as `/api/experiments/{key}/series` gives them; one
    request for every run a chart view shows. Runs without a metric are left out of its map;
    unknown keys are listed in `missing`."""
    ctx = context(request)
    wanted = list(dict.fromkeys(split_keys(keys)))
    names = split_keys(metrics)
    if len(names) > 50:
        raise UsageError(f"at most 50 metrics per request, got {len(names)}")
    found = ctx.meta.get_experiments(wanted)
    runs: dict[str, Any] = {}
    for exp in found:
        folder = metrics_dir(ctx, exp)
        loaded = cache(request).load(folder) if folder is not None else {}
        runs[exp.key] = {
            name: bucketed(loaded[name], buckets, x_min, x_max, with_time=time) for name in names if name in loaded
        }
    return {"runs": runs, "missing": [k for k in wanted if k not in runs]}
