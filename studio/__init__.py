"""studio: model management for ML researchers.

`import studio` stays cheap: submodules (and their heavy dependencies) load on first use.
`from studio import fs_tracker, model_util` and `studio.log(...)` work as documented, and so do
`studio.init()`, `studio.log_image/log_table/log_figure` and `studio.save` (rich results,
`studio.workbook.media`) and ``%load_ext studio`` in Jupyter (`studio.magics`).
"""

from __future__ import annotations

import importlib
from typing import Any

from studio._version import __version__ as __version__

_SUBMODULES = {"fs_tracker", "model_util", "workbook", "api", "config"}
_FUNCTIONS = {
    "log": ("studio.tracking.metrics", "log"),
    "params": ("studio.tracking.params", "params"),
    "init": ("studio.workbook.media", "init"),
    "log_image": ("studio.workbook.media", "log_image"),
    "log_table": ("studio.workbook.media", "log_table"),
    "log_figure": ("studio.workbook.media", "log_figure"),
    "save": ("studio.workbook.media", "save"),
}


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext studio``: the ``%%studio_run`` cell magic (see `studio.magics`)."""
    from studio.magics import load_ipython_extension as load

    load(ipython)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"studio.{name}")
        globals()[name] = module
        return module
    if name in _FUNCTIONS:
        module_name, attr = _FUNCTIONS[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'studio' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES | set(_FUNCTIONS))
