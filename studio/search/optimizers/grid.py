"""``grid``: every point of the cartesian product, in `iter_grid` order.

The grid is enumerated lazily by index (mixed-radix decoding), so a sweep over 100,000 points
never holds the whole list and its state is a single integer. Optuna's GridSampler draws
points in random order and scans every trial on each ask (quadratic in the grid size); the
grid itself needs no sampler, so this is the one built-in that does not go through Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from studio.exceptions import UsageError
from studio.search.optimizers.base import Optimizer, OptimizerConfig, Params, Result, SearchSpace


class GridOptimizer(Optimizer):
    name = "grid"

    def __init__(self, space: SearchSpace, config: OptimizerConfig) -> None:
        super().__init__(space, config)
        if space.ranges:
            names = ", ".join(r.name for r in space.ranges)
            raise UsageError(f"the grid optimizer needs value lists, not ranges ({names}); "
                             "write e.g. lr=0.01:0.01:0.1, or choose --optimizer random/tpe/cmaes")
        self.size = math.prod(len(p.values) for p in space.grid)
        self.next = 0

    def point(self, index: int) -> Params:
        """The grid point number ``index`` (the last parameter varies fastest)."""
        values: list[Any] = []
        for param in reversed(self.space.grid):
            index, digit = divmod(index, len(param.values))
            values.append(param.values[digit])
        return dict(zip([p.name for p in self.space.grid], reversed(values), strict=True))

    def ask(self, n: int) -> list[Params]:
        stop = min(self.size, self.next + max(0, n))
        batch = [self.point(i) for i in range(self.next, stop)]
        self.next = stop
        return batch

    def tell(self, results: Sequence[Result]) -> None:
        """The grid does not adapt: results are only ranked by the sweep."""

    @property
    def done(self) -> bool:
        return self.next >= self.size

    def default_popsize(self, workers: int) -> int:
        return max(1, self.size)  # one generation: everything is queued at once

    def state(self) -> dict[str, Any]:
        return {"next": self.next, "size": self.size}

    def restore(self, state: dict[str, Any]) -> None:
        if state.get("size", self.size) != self.size:
            raise UsageError("the saved grid does not match the sweep's hyperparameters")
        self.next = int(state.get("next", 0))
