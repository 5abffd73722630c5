"""Optimizers for `--optimizer/-opt`: built-ins by name, plugins by file path or import name.

``grid`` (no sampler: the cartesian product in order), ``random``, ``tpe`` and ``cmaes``
(Optuna's samplers); anything else is a plugin:

* a file path (``my_opt.py``, ``./opts/cma.py``): the module is loaded from the file and must
  define exactly one subclass of :class:`Optimizer`, or a class named ``Optimizer`` with
  ``ask`` and ``tell`` methods;
* an import name ``package.module:ClassName`` (or ``package.module``, with the same rule as a
  file).

Whatever is named is loaded and constructed before anything is queued, so a typo, a missing
file or a class without the interface is reported at once and leaves no experiment behind.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from studio.exceptions import UsageError
from studio.search.optimizers.base import (
    CONFIG_KEYS,
    Optimizer,
    OptimizerConfig,
    Params,
    Result,
    SearchSpace,
)

BUILTINS = ("grid", "random", "tpe", "cmaes")
_INTERFACE_HINT = (
    "subclass studio.search.optimizers.Optimizer and implement ask(n) -> list[dict] and "
    "tell(list[(params, fitness)])"
)


def is_builtin(name: str | None) -> bool:
    return name is None or name.lower() in BUILTINS


def load_optimizer(name: str | None, space: SearchSpace, config: OptimizerConfig, cwd: Path | None = None) -> Optimizer:
    """Construct the optimizer ``name`` (None: grid) for ``space``. UsageError when unknown."""
    if name is None or name.lower() == "grid":
        from studio.search.optimizers.grid import GridOptimizer

        return GridOptimizer(space, config)
    if name.lower() in ("random", "tpe", "cmaes"):
        from studio.search.optimizers.optuna_samplers import OptunaOptimizer

        return OptunaOptimizer(space, config, name.lower())
    cls = load_plugin_class(name, cwd or Path.cwd())
    try:
        instance = cls(space, config)
    except TypeError as exc:
        raise UsageError(f"optimizer plugin {name}: cannot construct {cls.__name__}(space, config): {exc}; "
                         f"{_INTERFACE_HINT}") from None
    if not isinstance(instance, Optimizer):
        instance = _Adapter(instance, space, config)
    return instance


def load_plugin_class(name: str, cwd: Path) -> type:
    """The plugin class named by a file path or ``module[:Class]``."""
    attr: str | None = None
    if name.endswith(".py") or "/" in name or "\\" in name:
        path = (cwd / name).expanduser().resolve()
        if not path.is_file():
            raise UsageError(
                f"unknown optimizer {name!r}: no such file; built-in optimizers are {', '.join(BUILTINS)}"
            )
        module = _load_file(path)
    else:
        module_name, _, attr = name.partition(":")
        if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
            raise UsageError(f"unknown optimizer {name!r}: built-in optimizers are {', '.join(BUILTINS)}, "
                             "or give a plugin file path or module:Class")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UsageError(f"unknown optimizer {name!r}: built-in optimizers are {', '.join(BUILTINS)}; "
                             f"as a plugin module it cannot be imported ({exc})") from None
    if attr:
        cls = getattr(module, attr, None)
        if not inspect.isclass(cls):
            raise UsageError(f"optimizer plugin {name}: {module.__name__} has no class {attr!r}")
        _check_interface(name, cls)
        return cls
    return _find_class(name, module)


def _load_file(path: Path) -> ModuleType:
    module_name = f"studio_optimizer_plugin_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"optimizer plugin {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise UsageError(f"optimizer plugin {path} failed to load: {type(exc).__name__}: {exc}") from None
    return module


def _find_class(name: str, module: ModuleType) -> type:
    own = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    subclasses = [c for c in own if issubclass(c, Optimizer) and not inspect.isabstract(c)]
    if len(subclasses) == 1:
        return subclasses[0]
    if len(subclasses) > 1:
        names = ", ".join(c.__name__ for c in subclasses)
        raise UsageError(f"optimizer plugin {name} defines several optimizers ({names}): name one as module:Class")
    named = [c for c in own if c.__name__ == "Optimizer"]
    if named:
        _check_interface(name, named[0])
        return named[0]
    abstract = [c.__name__ for c in own if issubclass(c, Optimizer)]
    if abstract:
        raise UsageError(f"optimizer plugin {name}: {', '.join(abstract)} does not implement ask and tell; "
                         f"{_INTERFACE_HINT}")
    raise UsageError(f"optimizer plugin {name} defines no optimizer: {_INTERFACE_HINT}")


def _check_interface(name: str, cls: type) -> None:
    missing = [m for m in ("ask", "tell") if not callable(getattr(cls, m, None))]
    if missing:
        raise UsageError(f"optimizer plugin {name}: {cls.__name__} has no {' or '.join(missing)} method; "
                         f"{_INTERFACE_HINT}")
    if inspect.isabstract(cls):
        abstract = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise UsageError(f"optimizer plugin {name}: {cls.__name__} leaves {abstract} unimplemented")


class _Adapter(Optimizer):
    """A duck-typed plugin (ask/tell, optional done/state/restore) seen as an Optimizer."""

    def __init__(self, inner: Any, space: SearchSpace, config: OptimizerConfig) -> None:
        super().__init__(space, config)
        self.inner = inner
        self.name = type(inner).__name__

    def ask(self, n: int) -> list[Params]:
        return list(self.inner.ask(n))

    def tell(self, results: Sequence[Result]) -> None:
        self.inner.tell(results)

    @property
    def done(self) -> bool:
        done = getattr(self.inner, "done", False)
        return bool(done() if callable(done) else done)

    def default_popsize(self, workers: int) -> int:
        fn = getattr(self.inner, "default_popsize", None)
        return int(fn(workers)) if callable(fn) else max(1, workers)

    def state(self) -> dict[str, Any]:
        fn = getattr(self.inner, "state", None)
        return dict(fn()) if callable(fn) else {}

    def restore(self, state: dict[str, Any]) -> None:
        fn = getattr(self.inner, "restore", None)
        if callable(fn):
            fn(state)


__all__ = [
    "BUILTINS",
    "CONFIG_KEYS",
    "Optimizer",
    "OptimizerConfig",
    "Params",
    "Result",
    "SearchSpace",
    "is_builtin",
    "load_optimizer",
    "load_plugin_class",
]
