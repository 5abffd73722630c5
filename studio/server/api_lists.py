"""Projects (counts, best metric, points for plots), users, and the comparison of runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from studio.entities import Experiment, ExperimentQuery
from studio.exceptions import NotFoundError, UsageError
from studio.server.api_runs import context, me, split_keys
from studio.server.responses import ERRORS, experiment_row

router = APIRouter(prefix="/api", tags=["lists"], responses=ERRORS)
MAX_POINTS = 5000


def maximizes(spec: str | None) -> bool:
    """`--metric name:max` asks for the largest value; `:min` and plain names the smallest."""
    return bool(spec) and str(spec).endswith(":max")


def best(extremes: tuple[Experiment, Experiment] | None) -> dict[str, Any] | None:
    """A project's best experiment by `metric_value`: the lowest, or the highest when the
    lowest one's metric spec says `:max`."""
    if extremes is None:
        return None
    low, high = extremes
    top = high if maximizes(low.metric) else low
    return {"key": top.key, "metric": top.metric, "value": top.metric_value, "maximize": maximizes(top.metric)}


@router.get("/projects", summary="Projects with counts and their best metric value")
def projects(request: Request) -> dict[str, Any]:
    ctx = context(request)
    rows = ctx.meta.projects()
    extremes = ctx.meta.metric_extremes()  # one query for every project's best
    return {"projects": [{**row, "best": best(extremes.get(row["name"]))} for row in rows]}


@router.get("/users", summary="Owners of experiments with counts")
def users(request: Request) -> dict[str, Any]:
    return {"users": context(request).meta.users(), "me": me(request)}


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)


@router.get("/projects/{name}/points", summary="Params and metrics of a project's experiments, for plots")
def project_points(
    request: Request, name: str, limit: int = Query(2000, ge=1, le=MAX_POINTS),
) -> dict[str, Any]:
    """One row per experiment (newest first) with its params, `metric_value` and the last value
    of every metric; `params` lists each parameter with whether all its values are numbers."""
    ctx = context(request)
    if not any(p["name"] == name for p in ctx.meta.projects()):
        raise NotFoundError(f"no project {name!r}; see /api/projects for the list")
    page = ctx.meta.query(ExperimentQuery(project=name, limit=limit))
    summaries = ctx.meta.metric_summaries([e.key for e in page.items]) if page.items else {}
    rows = [experiment_row(e, summaries.get(e.key)) for e in page.items]
    param_names = sorted({p for r in rows for p in r["params"]})
    metric_names = sorted({m for r in rows for m in r["metrics"]})
    metric_spec = next((r["metric"] for r in rows if r["metric"]), None)
    return {
        "project": name, "total": page.total, "rows": rows, "metric": metric_spec,
        "maximize": maximizes(metric_spec),
        "params": [{"name": p, "numeric": _numeric([r["params"].get(p) for r in rows])} for p in param_names],
        "metrics": metric_names,
    }


def _differs(values: list[Any]) -> bool:
    first = values[0]
    return any(v != first or type(v) is not type(first) for v in values[1:])


@router.get("/compare", summary="Params and metrics of 2-20 experiments side by side")
def compare(request: Request, keys: str = Query(..., max_length=10_000, description="Comma-separated keys")) -> dict[str, Any]:
    ctx = context(request)
    wanted = list(dict.fromkeys(split_keys(keys)))
    if not 2 <= len(wanted) <= 20:
        raise UsageError(f"compare needs 2 to 20 experiment keys, got {len(wanted)}")
    found: list[Experiment] = ctx.meta.get_experiments(wanted)
    missing = [k for k in wanted if k not in {e.key for e in found}]
    if missing:
        raise NotFoundError(f"no experiment {', '.join(repr(k) for k in missing)}")
    summaries = ctx.meta.metric_summaries(wanted)
    rows = [experiment_row(e, summaries.get(e.key)) for e in found]
    param_names = sorted({p for r in rows for p in r["params"]})
    metric_names = sorted({m for r in rows for m in r["metrics"]})
    params = []
    for p in param_names:
        values = [r["params"].get(p) for r in rows]
        params.append({"name": p, "values": values, "differs": _differs(values)})
    metrics = []
    for m in metric_names:
        values = [r["metrics"].get(m) for r in rows]
        metrics.append({"name": m, "values": values, "differs": _differs(values)})
    fields = []
    for f in ("project", "script", "status", "owner", "metric", "metric_value", "duration"):
        values = [r[f] for r in rows]
        fields.append({"name": f, "values": values, "differs": _differs(values)})
    return {"experiments": rows, "fields": fields, "params": params, "metrics": metrics}
