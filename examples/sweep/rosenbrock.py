"""An optimizer target: the Rosenbrock function of an array hyperparameter.

    studio run --optimizer=cmaes -hp x=-2:2:6:a rosenbrock.py

`x` (6 values in [-2, 2], the `a` flag) arrives as an artifact to `np.load`, as upstream's
plugin optimizers did; the script prints `fitness: <float>` (higher is better, so the
function is negated). The minimum, 0, is at x = (1, ..., 1).
"""

from __future__ import annotations

import numpy as np

from studio import fs_tracker

x = np.load(fs_tracker.get_artifact("x"))
value = float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2))
print(f"rosenbrock: {value}")
print(f"fitness: {-value}")
