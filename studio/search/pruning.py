"""Early stopping of unpromising trials: Optuna's pruners fed with live metric series.

``--pruner median`` (Optuna's ``MedianPruner``) stops a trial whose best value so far is worse
than the median of finished trials at the same step; ``--pruner halving``
(``SuccessiveHalvingPruner``) keeps the best ``1/reduction_factor`` of trials at each rung.
``none`` (the default) never prunes.

The pruner works with any optimizer, plugins included: it keeps its own in-memory Optuna study
in which every experiment of the sweep is one trial (no parameters, only intermediate values).
While a trial runs the sweep reports each new ``(step, value)`` point of its metric series;
when it ends the remaining points are reported and the trial is completed (or marked pruned or
failed), so later trials are compared with it. On resume, finished experiments are replayed
into a fresh study from their recorded series.

Values are the objective's own (a loss stays a loss); the study's direction follows the
objective. Steps are the series' steps (``studio.log`` / TensorBoard) or, for metrics printed as
``name: value`` lines, the line's position (0, 1, 2, ...).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from studio.exceptions import UsageError
from studio.search.fitness import Objective
from studio.search.optimizers.base import OptimizerConfig

log = logging.getLogger(__name__)

PRUNERS = ("none", "median", "halving")

Point = tuple[int, float]


@dataclass
class _Live:
    trial: Any
    reported: set[int] = field(default_factory=set)
    last_step: int = -1


@dataclass(frozen=True)
class PruneDecision:
    key: str
    step: int
    value: float
    reason: str


def check_pruner(name: str | None) -> str:
    """Normalize ``--pruner``; UsageError for unknown names."""
    value = (name or "none").strip().lower()
    if value not in PRUNERS:
        raise UsageError(f"unknown --pruner {name!r}: choose one of {', '.join(PRUNERS)}")
    return value


class TrialPruner:
    """Decides, from reported intermediate values, which running trials to stop."""

    def __init__(self, kind: str, objective: Objective, config: OptimizerConfig) -> None:
        from studio.search.optimizers.optuna_samplers import import_optuna

        self.kind = check_pruner(kind)
        self.objective = objective
        self.optuna = import_optuna()
        pruners = self.optuna.pruners
        if self.kind == "median":
            pruner = pruners.MedianPruner(
                n_startup_trials=config.pruner_startup_trials,
                n_warmup_steps=config.pruner_warmup_steps,
            )
        elif self.kind == "halving":
            pruner = pruners.SuccessiveHalvingPruner()
        else:
            pruner = pruners.NopPruner()
        self.study = self.optuna.create_study(
            direction=objective.direction, pruner=pruner, sampler=self.optuna.samplers.RandomSampler(seed=0)
        )
        self.live: dict[str, _Live] = {}
        self.decided: dict[str, PruneDecision] = {}

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def _trial(self, key: str) -> _Live:
        if key not in self.live:
            self.live[key] = _Live(self.study.ask())
        return self.live[key]

    def _report(self, live: _Live, points: Sequence[Point]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for step, value in points:
                if step in live.reported or step < 0 or not math.isfinite(value):
                    continue
                live.trial.report(float(value), int(step))
                live.reported.add(step)
                live.last_step = max(live.last_step, step)

    def update(self, key: str, points: Sequence[Point]) -> PruneDecision | None:
        """Report ``key``'s series so far; a decision when the trial should be stopped now."""
        if not self.active or key in self.decided:
            return None
        live = self._trial(key)
        before = len(live.reported)
        self._report(live, points)
        log.debug("pruner: %s reported %d step(s), last %d", key, len(live.reported), live.last_step)
        if len(live.reported) == before or not live.trial.should_prune():
            return None
        step = live.last_step
        value = dict(points).get(step, float("nan"))
        reason = (f"pruned by the {self.kind} pruner at step {step}: {self.objective.name} = {value:.6g} "
                  f"is not promising compared with {len(self._completed())} finished trial(s)")
        decision = PruneDecision(key, step, value, reason)
        self.decided[key] = decision
        return decision

    def finish(self, key: str, points: Sequence[Point], value: float | None, pruned: bool = False) -> None:
        """The experiment ended: report what is left and close its trial."""
        if not self.active:
            return
        live = self._trial(key)
        self._report(live, points)
        log.debug("pruner: %s finished with %s after %d step(s)", key, value, len(live.reported))
        TrialState = self.optuna.trial.TrialState
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.kind == "halving" and live.reported:
                # Successive halving keeps its rungs in the trials it was asked about: a trial
                # that ended between two polls still has to take its place on them.
                live.trial.should_prune()
            if pruned or key in self.decided:
                self.study.tell(live.trial, state=TrialState.PRUNED, skip_if_finished=True)
            elif value is None or not math.isfinite(value):
                self.study.tell(live.trial, state=TrialState.FAIL, skip_if_finished=True)
            else:
                self.study.tell(live.trial, float(value), skip_if_finished=True)

    def replay(self, key: str, points: Sequence[Point], value: float | None, pruned: bool = False) -> None:
        """Add an experiment that finished before a resume (same effect as running it here)."""
        self.finish(key, points, value, pruned)

    def _completed(self) -> list[Any]:
        TrialState = self.optuna.trial.TrialState
        return list(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


__all__ = ["PRUNERS", "PruneDecision", "TrialPruner", "check_pruner"]
