"""A sweep's (or any project's) optimisation history and parameter importance, for its page.

History: the project's finished runs in the order they were added, each with its metric value
and the best value so far (in the metric's direction). Importance: Optuna's evaluators over the
same runs rebuilt as an in-memory study (fANOVA when scikit-learn is installed, PED-ANOVA
otherwise); numeric params become float/int distributions, others categorical.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request

from studio.entities import Experiment, ExperimentQuery, Status
from studio.exceptions import NotFoundError
from studio.server.api_lists import maximizes
from studio.server.api_runs import context
from studio.server.responses import ERRORS

router = APIRouter(prefix="/api", tags=["lists"], responses=ERRORS)
MAX_TRIALS = 5000


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def history(runs: list[Experiment], maximize: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    best: float | None = None
    for n, e in enumerate(runs):
        v = e.metric_value
        assert v is not None
        if best is None or (v > best if maximize else v < best):
            best = v
        out.append({"number": n, "key": e.key, "name": e.display_name, "value": v, "best": best,
                    "time": e.time_added})
    return out


def importance(runs: list[Experiment], maximize: bool) -> tuple[dict[str, float] | None, str, str]:
    """(param -> importance, evaluator name, why not) for runs with a finite metric value."""
    try:
        import optuna
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    except ImportError:
        return None, "", "parameter importance needs Optuna: pip install 'studio-experiments[search]'"
    names = sorted({p for e in runs for p, v in e.params.items() if isinstance(v, (int, float, str, bool))})
    dists: dict[str, Any] = {}
    for p in names:
        values: list[Any] = [e.params.get(p) for e in runs]
        if any(v is None for v in values) or len({repr(v) for v in values}) < 2:
            continue  # missing in some runs, or never varied: nothing to attribute
        if all(_finite(v) for v in values):
            lo, hi = min(values), max(values)
            if all(isinstance(v, int) for v in values):
                dists[p] = IntDistribution(int(lo), int(hi))
            else:
                dists[p] = FloatDistribution(float(lo), float(hi), log=lo > 0 and hi / lo > 100)
        else:
            dists[p] = CategoricalDistribution(sorted({str(v) for v in values}))
    if len(runs) < 3 or not dists:
        return None, "", "needs at least 3 finished runs with a metric value and a param that varies"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    for e in runs:
        params = {p: (e.params[p] if not isinstance(d, CategoricalDistribution) else str(e.params[p]))
                  for p, d in dists.items()}
        if any(isinstance(d, FloatDistribution) for d in dists.values()):
            params = {p: float(v) if isinstance(dists[p], FloatDistribution) else v for p, v in params.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=e.metric_value))
    try:
        import sklearn  # noqa: F401

        evaluator: Any = optuna.importance.FanovaImportanceEvaluator(seed=0)
        label = "fANOVA"
    except ImportError:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        label = "PED-ANOVA"
    try:
        result = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:
        return None, label, f"importance could not be computed: {exc}"
    return {k: float(v) for k, v in result.items()}, label, ""


@router.get("/projects/{name}/sweep", summary="Optimisation history and parameter importance of a project")
def sweep(request: Request, name: str) -> dict[str, Any]:
    ctx = context(request)
    if not any(p["name"] == name for p in ctx.meta.projects()):
        raise NotFoundError(f"no project {name!r}; see /api/projects for the list")
    page = ctx.meta.query(ExperimentQuery(project=name, status=(Status.FINISHED,), order_by="time_added",
                                          where=(("metric_value", "!=", None),), limit=MAX_TRIALS))
    runs = [e for e in page.items if _finite(e.metric_value)]
    spec = next((e.metric for e in runs if e.metric), None)
    maximize = maximizes(spec)
    scores, evaluator, why = importance(runs, maximize)
    return {"project": name, "metric": spec, "maximize": maximize, "history": history(runs, maximize),
            "importance": scores, "evaluator": evaluator, "importance_note": why}
