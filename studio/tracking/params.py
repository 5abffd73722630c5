"""`studio.params()`: the hyperparameters of the running experiment, read explicitly.

A sweep records each experiment's point on the experiment (`params`) and the supervisor hands it
to the script as JSON in ``STUDIOML_PARAMS``. Scripts that would rather not rely on upstream's
text substitution read their values here::

    import studio
    lr = studio.params().get("lr", 0.01)

Array parameters (``-hp w=0:1:10:a`` with ``--optimizer``) are lists of floats here and also
``.npy`` artifacts for ``np.load(fs_tracker.get_artifact("w"))``. Outside an experiment (or when
the variable is not valid JSON) the result is ``{}``. Standard library only: cheap to import.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

ENV_PARAMS = "STUDIOML_PARAMS"

log = logging.getLogger(__name__)


def params() -> dict[str, Any]:
    """A fresh dict of this experiment's hyperparameters (``{}`` outside a sweep)."""
    text = os.environ.get(ENV_PARAMS)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        log.warning("%s is not valid JSON; studio.params() returns {}", ENV_PARAMS)
        return {}
    if not isinstance(value, dict):
        log.warning("%s is not a JSON object; studio.params() returns {}", ENV_PARAMS)
        return {}
    return value


__all__ = ["ENV_PARAMS", "params"]
