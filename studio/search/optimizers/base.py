"""The optimizer plugin interface: ask for points, tell their fitness, checkpoint as JSON.

A sweep drives an optimizer in generations::

    while not optimizer.done:
        batch = optimizer.ask(popsize)         # up to popsize points, [] when exhausted
        ... run one experiment per point ...
        optimizer.tell([(point, fitness), ...])  # fitness: higher is better; None = no result
        checkpoint(optimizer.state())          # JSON, so `studio sweep resume` can continue

Contract for implementations:

* ``__init__(space, config)``: ``space`` is the :class:`SearchSpace` built from the ``-hp``
  flags, ``config`` the validated ``optimizer:`` config section (:class:`OptimizerConfig`).
* ``ask(n)`` returns at most ``n`` new points, each a dict with one entry per parameter of the
  space: a float for a range, a list of ``length`` floats for an array range (``a`` flag), one of
  the values for a list. Returning ``[]`` ends the sweep.
* ``tell(results)`` receives every point of the last ``ask`` exactly once (order not
  guaranteed), paired with its fitness: **higher is better** (the sweep flips minimized
  metrics), ``None`` when the trial failed, was pruned or never reported a value.
* ``done`` may turn true to end the sweep early (converged, budget spent).
* ``state()`` returns JSON-serializable data; ``restore(state)`` on a freshly constructed
  optimizer with the same space and config brings it back to that point. Points asked but not
  yet told at checkpoint time are part of the state.

Implementations are used from one thread; nothing here needs to be thread-safe.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from studio.exceptions import ConfigError
from studio.search.grammar import HyperParameter
from studio.search.ranges import RangeParameter

Params = dict[str, Any]
Result = tuple[Params, "float | None"]


@dataclass(frozen=True)
class SearchSpace:
    """The parameters of a sweep: value lists (grid grammar) and ranges (optimizer grammar)."""

    grid: tuple[HyperParameter, ...] = ()
    ranges: tuple[RangeParameter, ...] = ()

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.grid] + [r.name for r in self.ranges]

    @property
    def arrays(self) -> list[RangeParameter]:
        return [r for r in self.ranges if r.is_array]

    @property
    def dimensions(self) -> int:
        return len(self.grid) + sum(r.size for r in self.ranges)


#: `optimizer:` config keys -> (type, description); `timeout` is the skip-generation timeout.
CONFIG_KEYS: dict[str, tuple[type, str]] = {
    "popsize": (int, "trials per generation"),
    "generations": (int, "number of generations (ask/tell rounds)"),
    "target": (float, "stop once the best metric value reaches this"),
    "skip_gen_thresh": (float, "fraction of a generation that must finish before the timeout starts"),
    "timeout": (float, "seconds to wait for stragglers once skip_gen_thresh is reached"),
    "seed": (int, "random seed of the sampler"),
    "sigma0": (float, "initial step size of CMA-ES, as a fraction of each range"),
    "n_startup_trials": (int, "random trials before TPE models the results"),
    "pruner_startup_trials": (int, "finished trials before the pruner prunes anything"),
    "pruner_warmup_steps": (int, "steps of each trial the pruner never prunes"),
}
#: Upstream's nested spelling, accepted for old config files.
_UPSTREAM = {
    ("termination_criterion", "generation"): "generations",
    ("termination_criterion", "fitness"): "target",
    ("termination_criterion", "skip_gen_thresh"): "skip_gen_thresh",
    ("termination_criterion", "skip_gen_timeout"): "timeout",
    ("cmaes_config", "popsize"): "popsize",
    ("cmaes_config", "sigma0"): "sigma0",
}
_UPSTREAM_IGNORED = {"load_checkpoint_file", "visualization", "result_dir", "checkpoint_interval",
                     "load_best_only"}


@dataclass(frozen=True)
class OptimizerConfig:
    """The validated ``optimizer:`` section of the config file (None: the optimizer's default)."""

    popsize: int | None = None
    generations: int | None = None
    target: float | None = None
    skip_gen_thresh: float = 1.0
    timeout: float = 30.0
    seed: int | None = None
    sigma0: float | None = None
    n_startup_trials: int | None = None
    pruner_startup_trials: int = 5
    pruner_warmup_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # plugin-specific keys under `plugin:`

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None) -> OptimizerConfig:
        """Validate ``data``; unknown keys or bad values raise ConfigError naming the key."""
        flat: dict[str, Any] = {}
        for key, value in (data or {}).items():
            if key in ("termination_criterion", "cmaes_config") and isinstance(value, dict):
                for sub, subvalue in value.items():
                    if (key, sub) in _UPSTREAM:
                        flat[_UPSTREAM[(key, sub)]] = subvalue
                    elif sub not in _UPSTREAM_IGNORED:
                        raise ConfigError(_unknown(f"{key}.{sub}"))
            elif key in _UPSTREAM_IGNORED:
                continue
            elif key == "plugin":
                if not isinstance(value, dict):
                    raise ConfigError("config `optimizer.plugin` must be a mapping of plugin options")
            elif key not in CONFIG_KEYS:
                raise ConfigError(_unknown(key))
            else:
                flat[key] = value
        values: dict[str, Any] = {}
        for key, value in flat.items():
            kind, _ = CONFIG_KEYS[key]
            values[key] = _coerce(key, value, kind)
        config = cls(**values, extra=dict((data or {}).get("plugin") or {}))
        config._check()
        return config

    def _check(self) -> None:
        for name in ("popsize", "generations"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"config `optimizer.{name}` must be at least 1, got {value}")
        if not 0.0 < self.skip_gen_thresh <= 1.0:
            raise ConfigError(
                f"config `optimizer.skip_gen_thresh` must be in (0, 1], got {self.skip_gen_thresh}"
            )
        if self.timeout < 0:
            raise ConfigError(f"config `optimizer.timeout` must not be negative, got {self.timeout}")
        if self.sigma0 is not None and not self.sigma0 > 0:
            raise ConfigError(f"config `optimizer.sigma0` must be greater than 0, got {self.sigma0}")
        for name in ("n_startup_trials", "pruner_startup_trials", "pruner_warmup_steps"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"config `optimizer.{name}` must not be negative, got {value}")

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data = {k: v for k, v in data.items() if v is not None}
        if self.extra:
            data["plugin"] = dict(self.extra)
        return data


def _unknown(key: str) -> str:
    known = ", ".join(sorted(CONFIG_KEYS))
    return f"config: unknown key `optimizer.{key}`; known keys: {known} (and `plugin:` for plugin options)"


def _coerce(key: str, value: Any, kind: type) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"config `optimizer.{key}` must be a number, got {value!r}")
    try:
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        number = float(value)
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"config `optimizer.{key}` must be {what}, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"config `optimizer.{key}` must be finite, got {value!r}")
    return number


class Optimizer(abc.ABC):
    """Base class of optimizer plugins (see the module docstring for the contract)."""

    #: Shown in messages and recorded in the sweep's state.
    name: str = "plugin"

    def __init__(self, space: SearchSpace, config: OptimizerConfig) -> None:
        self.space = space
        self.config = config

    @abc.abstractmethod
    def ask(self, n: int) -> list[Params]:
        """Up to ``n`` new points to evaluate; ``[]`` when there is nothing more to try."""

    @abc.abstractmethod
    def tell(self, results: Sequence[Result]) -> None:
        """Fitness (higher is better, None: no result) of every point of the last ``ask``."""

    @property
    def done(self) -> bool:
        """True once the optimizer wants no more generations."""
        return False

    def default_popsize(self, workers: int) -> int:
        """Trials per generation when the config does not say (``workers``: parallel slots)."""
        return max(1, workers)

    def state(self) -> dict[str, Any]:
        """JSON-serializable state for checkpoints (default: nothing to keep)."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Continue from :meth:`state` on a freshly constructed optimizer."""


__all__ = ["CONFIG_KEYS", "Optimizer", "OptimizerConfig", "Params", "Result", "SearchSpace"]
