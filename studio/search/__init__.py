"""Hyperparameter search: grid grammar, optimizer ranges and script substitution.

The pure-logic core; the CLI and :mod:`studio.api` wire it to projects and queues.
Importing this package is cheap (standard library only).
"""

from __future__ import annotations

from studio.search.grammar import (
    DEFAULT_GRID_LIMIT,
    HARD_GRID_LIMIT,
    HyperParameter,
    Value,
    expand_grid,
    grid_size,
    iter_grid,
    parse_hyperparam,
    parse_hyperparams,
)
from studio.search.ranges import RangeParameter, parse_range, parse_ranges
from studio.search.substitute import (
    python_literal,
    substitute_file,
    substitute_script,
    substitute_script_counted,
)

__all__ = [
    "DEFAULT_GRID_LIMIT",
    "HARD_GRID_LIMIT",
    "HyperParameter",
    "RangeParameter",
    "Value",
    "expand_grid",
    "grid_size",
    "iter_grid",
    "parse_hyperparam",
    "parse_hyperparams",
    "parse_range",
    "parse_ranges",
    "python_literal",
    "substitute_file",
    "substitute_script",
    "substitute_script_counted",
]
