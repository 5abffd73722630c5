"""``random``, ``tpe`` and ``cmaes``: Optuna's samplers behind the ask/tell interface.

Each optimizer keeps an in-memory Optuna study. Ranges map to ``FloatDistribution`` (``l``:
log scale), an array range of length N to N float dimensions ``name[0]`` ... ``name[N-1]``, a
value list to a ``CategoricalDistribution`` and a single value stays fixed. The study always
*maximizes* (the sweep hands over fitness, higher is better).

The checkpoint is the study's trials as JSON (params, distributions, values, system attributes:
CMA-ES keeps its covariance state there), so a resumed sweep rebuilds the same study. Samplers
are re-seeded with ``seed + number of trials`` on restore, so a resumed random sweep does not
replay the points it already tried.

Optuna keeps every bound: the ``u`` (unbounded) flag is honoured by plugins only. ``r``
(random start) and the range middle are CMA-ES's ``x0``.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from studio.exceptions import MissingDependencyError, install_hint
from studio.search.optimizers.base import Optimizer, OptimizerConfig, Params, Result, SearchSpace

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

SAMPLERS = ("random", "tpe", "cmaes")


def import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError(
            f"the random, tpe and cmaes optimizers need Optuna: {install_hint('search')}"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class OptunaOptimizer(Optimizer):
    """One of Optuna's samplers (``sampler`` in :data:`SAMPLERS`)."""

    def __init__(self, space: SearchSpace, config: OptimizerConfig, sampler: str = "tpe") -> None:
        super().__init__(space, config)
        self.name = sampler
        self.optuna = import_optuna()
        if sampler == "cmaes":
            try:
                import cmaes  # noqa: F401
            except ImportError:
                raise MissingDependencyError(
                    f"the cmaes optimizer needs the cmaes package: {install_hint('search')} (or pip install cmaes)"
                ) from None
        self.distributions = self._distributions()
        self.fixed = {p.name: p.values[0] for p in space.grid if len(p.values) == 1}
        self.pending: dict[int, str] = {}  # trial number -> canonical JSON of its point
        self.study = self._new_study(0)

    # -- the search space ----------------------------------------------------------------
    def _distributions(self) -> dict[str, Any]:
        dist = self.optuna.distributions
        result: dict[str, Any] = {}
        for p in self.space.grid:
            if len(p.values) > 1:
                result[p.name] = dist.CategoricalDistribution(list(p.values))
        for r in self.space.ranges:
            for name in _dims(r.name, r.length):
                if r.integer:
                    result[name] = dist.IntDistribution(int(r.low), int(r.high), log=r.log)
                else:
                    result[name] = dist.FloatDistribution(r.low, r.high, log=r.log)
        return result

    def _x0(self) -> dict[str, float]:
        import random

        rng = random.Random(self.config.seed)
        x0: dict[str, float] = {}
        for r in self.space.ranges:
            for name, value in zip(_dims(r.name, r.length), r.initial_values(rng), strict=True):
                x0[name] = value
        return x0

    def _sigma0(self) -> float | None:
        if self.config.sigma0 is None or not self.space.ranges:
            return None
        # sigma0 is a fraction of the ranges; CMA-ES works in the (log-)scaled box, so scale
        # by the widest dimension as Optuna's own default (span / 6) does.
        spans = [(math.log(r.high) - math.log(r.low)) if r.log else (r.high - r.low) for r in self.space.ranges]
        return self.config.sigma0 * max(max(spans), 1e-12)

    def _sampler(self, offset: int) -> Any:
        samplers = self.optuna.samplers
        seed = None if self.config.seed is None else self.config.seed + offset
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning for multivariate/constant_liar
            if self.name == "random":
                return samplers.RandomSampler(seed=seed)
            if self.name == "tpe":
                startup = self.config.n_startup_trials
                return samplers.TPESampler(
                    seed=seed,
                    n_startup_trials=10 if startup is None else startup,
                    multivariate=True,
                    constant_liar=True,
                    warn_independent_sampling=False,
                )
            return samplers.CmaEsSampler(
                x0=self._x0() or None,
                sigma0=self._sigma0(),
                seed=seed,
                n_startup_trials=0,
                popsize=self.config.popsize,
                warn_independent_sampling=False,
            )

    def _new_study(self, offset: int) -> optuna.Study:
        return self.optuna.create_study(direction="maximize", sampler=self._sampler(offset))

    # -- ask / tell ----------------------------------------------------------------------
    def default_popsize(self, workers: int) -> int:
        if self.name == "cmaes":
            return 4 + int(3 * math.log(max(1, len(self.distributions))))
        return max(1, workers)

    def ask(self, n: int) -> list[Params]:
        batch: list[Params] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(n):
                trial = self.study.ask(self.distributions)
                point = self._point(trial.params)
                self.pending[trial.number] = _canonical(point)
                batch.append(point)
        return batch

    def _point(self, flat: dict[str, Any]) -> Params:
        point: Params = {}
        for p in self.space.grid:
            point[p.name] = self.fixed[p.name] if p.name in self.fixed else flat[p.name]
        for r in self.space.ranges:
            if r.is_array:
                point[r.name] = [r.cast(flat[name]) for name in _dims(r.name, r.length)]
            else:
                point[r.name] = r.cast(flat[r.name])
        return point

    def tell(self, results: Sequence[Result]) -> None:
        TrialState = self.optuna.trial.TrialState
        for point, fitness in results:
            number = self._match(point)
            if number is None:
                log.warning("%s optimizer was told about a point it never asked: %s", self.name, point)
                continue
            del self.pending[number]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if fitness is None or not math.isfinite(fitness):
                    self.study.tell(number, state=TrialState.FAIL)
                else:
                    self.study.tell(number, float(fitness))

    def _match(self, point: Params) -> int | None:
        wanted = _canonical(point)
        for number, text in self.pending.items():
            if text == wanted:
                return number
        return None

    # -- checkpoints ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        from optuna.distributions import distribution_to_json

        trials = []
        for t in self.study.get_trials(deepcopy=False):
            trials.append({
                "number": t.number,
                "state": t.state.name,
                "value": t.value if t.state.name == "COMPLETE" else None,
                "params": t.params,
                "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
                "system_attrs": t.system_attrs,
                "user_attrs": t.user_attrs,
            })
        return {"sampler": self.name, "trials": trials, "pending": {str(k): v for k, v in self.pending.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        from optuna.distributions import json_to_distribution

        trials = state.get("trials") or []
        self.study = self._new_study(len(trials))
        TrialState = self.optuna.trial.TrialState
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for t in trials:
                trial_state = TrialState[t["state"]]
                if trial_state == TrialState.WAITING:
                    trial_state = TrialState.RUNNING
                frozen = self.optuna.trial.create_trial(
                    state=trial_state,
                    value=t.get("value") if trial_state == TrialState.COMPLETE else None,
                    params=t["params"],
                    distributions={k: json_to_distribution(d) for k, d in t["distributions"].items()},
                    system_attrs=t.get("system_attrs") or {},
                    user_attrs=t.get("user_attrs") or {},
                )
                self.study.add_trial(frozen)
        self.pending = {int(k): v for k, v in (state.get("pending") or {}).items()}


def _dims(name: str, length: int | None) -> list[str]:
    return [name] if length is None else [f"{name}[{i}]" for i in range(length)]


def _canonical(point: Params) -> str:
    return json.dumps(point, sort_keys=True, default=str)
