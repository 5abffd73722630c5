"""Keras 3 (any backend): ``model.fit(..., callbacks=[StudioCallback()])``.

    from studio.integrations.keras import StudioCallback
    model.fit(x, y, validation_split=0.1, epochs=5, callbacks=[StudioCallback()])

- at the start: ``epochs``, ``batch_size``/``steps``, the optimizer's config (``optimizer.*``,
  learning rate included) and the parameter count as params;
- at each epoch end: every number in `logs` (``loss``, ``accuracy``, ``val_loss``, ...) via
  `studio.log` at step = epoch, so ``studio run --metric=val_loss:min`` works unchanged;
- every `log_every_n_batches` batches (0: never), the batch logs as ``batch/<name>`` at the
  global batch step;
- with `save_model` (default), the model as ``modeldir/model.keras`` after each epoch
  (``"best"``: only when `monitor` improves).
"""

from __future__ import annotations

import math
from typing import Any

from studio.integrations import _common

try:
    import keras
except ImportError:
    from studio.exceptions import MissingDependencyError

    raise MissingDependencyError("studio.integrations.keras needs Keras 3: pip install keras") from None


class StudioCallback(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(
        self,
        project: str | None = None,
        name: str | None = None,
        *,
        log_every_n_batches: int = 0,
        save_model: bool | str = True,
        monitor: str = "val_loss",
        mode: str = "min",
        filename: str = "model.keras",
    ) -> None:
        super().__init__()
        if save_model not in (True, False, "best"):
            raise ValueError(f"save_model is True, False or 'best', not {save_model!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode is 'min' or 'max', not {mode!r}")
        self._project, self._name = project, name
        self.log_every_n_batches = log_every_n_batches
        self.save_model = save_model
        self.monitor, self.mode, self.filename = monitor, mode, filename
        self._best = math.inf if mode == "min" else -math.inf
        self._batches = 0
        self._exp: Any = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._exp = _common.experiment(self._project, self._name)
        params: dict[str, Any] = {k: v for k, v in (self.params or {}).items() if k in ("epochs", "steps", "batch_size")}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            try:
                config = optimizer.get_config()
            except Exception:
                config = {}
            params["optimizer"] = {k: v for k, v in config.items() if not isinstance(v, dict)}
        try:
            params["total_params"] = int(self.model.count_params())
        except Exception:
            pass
        _common.log_params(params, self._exp)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batches += 1
        n = self.log_every_n_batches
        if n and self._batches % n == 0 and logs:
            _common.log_metrics({f"batch/{k}": v for k, v in logs.items()}, self._batches)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs:
            _common.log_metrics(logs, epoch)
        if not self.save_model:
            return
        if self.save_model == "best":
            value = (logs or {}).get(self.monitor)
            if value is None:
                return
            value = float(value)
            better = value < self._best if self.mode == "min" else value > self._best
            if not better:
                return
            self._best = value
        self.model.save(str(_common.model_directory() / self.filename))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        from studio.tracking import metrics

        metrics.flush()


__all__ = ["StudioCallback"]
