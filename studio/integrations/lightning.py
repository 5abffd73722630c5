"""PyTorch Lightning: ``Trainer(logger=StudioLogger())``.

    from studio.integrations.lightning import StudioLogger
    trainer = lightning.Trainer(logger=StudioLogger(), max_epochs=3)

- hyperparameters (``save_hyperparameters()``, `log_hyperparams`) become the experiment's
  params (nested ones as dotted keys);
- every ``self.log(...)`` metric goes to `studio.log` at the trainer's global step, so
  ``--metric val_loss:min`` ranks runs by it;
- each checkpoint the trainer saves (``ModelCheckpoint``) is copied into `modeldir`, which
  studio stores at every checkpoint and at the end; `log_model=False` turns that off.

Works with ``lightning`` and with the older ``pytorch_lightning`` package. Under `studio run`
it records into that experiment; in a plain process it starts one (`project`, `name`).
"""

from __future__ import annotations

import os
from argparse import Namespace
from typing import Any

from studio.integrations import _common

try:
    from lightning.pytorch.loggers.logger import Logger
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # the standalone package
    try:
        from pytorch_lightning.loggers.logger import Logger  # type: ignore[no-redef,assignment]
        from pytorch_lightning.utilities import rank_zero_only  # type: ignore[no-redef]
    except ImportError:
        from studio.exceptions import MissingDependencyError

        raise MissingDependencyError(
            "studio.integrations.lightning needs PyTorch Lightning: pip install lightning"
        ) from None


class StudioLogger(Logger):  # type: ignore[misc]
    def __init__(self, project: str | None = None, name: str | None = None, *, log_model: bool = True) -> None:
        super().__init__()
        self._project = project
        self._name = name
        self._log_model = log_model
        self._exp: Any = None
        self._stored: set[str] = set()

    @property
    @rank_zero_only  # type: ignore[misc]
    def experiment(self) -> Any:
        """The workbook experiment (``.tag``, ``.save_json``, ...)."""
        if self._exp is None:
            self._exp = _common.experiment(self._project, self._name)
        return self._exp

    @property
    def name(self) -> str:
        return self._project or "studio"

    @property
    def version(self) -> str:
        exp = self.experiment
        return exp.tag if exp is not None else ""

    @property
    def save_dir(self) -> str | None:
        return None

    @rank_zero_only  # type: ignore[misc]
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        if isinstance(params, Namespace):
            params = vars(params)
        _common.log_params(dict(params or {}), self.experiment)

    @rank_zero_only  # type: ignore[misc]
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.experiment  # noqa: B018 - make sure studio.log has somewhere to write
        values = {k: v for k, v in metrics.items() if k != "epoch"}
        _common.log_metrics(values, step)
        if "epoch" in metrics:
            _common.log_metrics({"epoch": metrics["epoch"]}, step)

    @rank_zero_only  # type: ignore[misc]
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if not self._log_model:
            return
        paths = {getattr(checkpoint_callback, "best_model_path", ""), getattr(checkpoint_callback, "last_model_path", "")}
        for path in sorted(p for p in paths if p and os.path.isfile(p)):
            _common.store_checkpoint(path)
            self._stored.add(os.path.basename(path))

    @rank_zero_only  # type: ignore[misc]
    def finalize(self, status: str) -> None:
        if self._exp is not None:
            from studio.tracking import metrics

            metrics.flush()  # the points are on disk when fit() returns


__all__ = ["StudioLogger"]
