"""A minimal optimizer plugin: uniform random search (`--optimizer examples/sweep/random_plugin.py`).

It shows the whole interface: ask(n) -> points, tell([(point, fitness)]), done, and state /
restore for `studio sweep resume`. Fitness is higher-is-better; None means no result.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from studio.search.optimizers import Optimizer, OptimizerConfig, Result, SearchSpace


class RandomSearch(Optimizer):
    name = "random-plugin"

    def __init__(self, space: SearchSpace, config: OptimizerConfig) -> None:
        super().__init__(space, config)
        self.rng = random.Random(config.seed)
        self.best: float | None = None
        self.told = 0

    def ask(self, n: int) -> list[dict[str, Any]]:
        points = []
        for _ in range(n):
            point: dict[str, Any] = {p.name: self.rng.choice(p.values) for p in self.space.grid}
            for r in self.space.ranges:
                values = [self.rng.uniform(r.low, r.high) for _ in range(r.size)]
                point[r.name] = values if r.is_array else values[0]
            points.append(point)
        return points

    def tell(self, results: Sequence[Result]) -> None:
        for _point, fitness in results:
            self.told += 1
            if fitness is not None and (self.best is None or fitness > self.best):
                self.best = fitness

    @property
    def done(self) -> bool:
        target = self.config.target
        return target is not None and self.best is not None and self.best >= target

    def state(self) -> dict[str, Any]:
        return {"rng": repr(self.rng.getstate()), "best": self.best, "told": self.told}

    def restore(self, state: dict[str, Any]) -> None:
        import ast

        self.rng.setstate(ast.literal_eval(state["rng"]))
        self.best, self.told = state["best"], state["told"]
