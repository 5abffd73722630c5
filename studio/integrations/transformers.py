"""Hugging Face `transformers.Trainer`: ``report_to="studio"`` or ``callbacks=[StudioCallback()]``.

    import studio.integrations.transformers        # registers report_to="studio"
    args = TrainingArguments(output_dir="out", report_to="studio", ...)

- at the start: the training arguments (``args.*``, secrets such as hub tokens left out by
  `to_sanitized_dict`) and the model's config (``model.*``) as params;
- every log the Trainer makes (``loss``, ``learning_rate``, ``eval_loss``, ...) via
  `studio.log` at the global step (``eval_*`` too, so ``--metric eval_loss:min`` works);
- each checkpoint the Trainer saves (``checkpoint-<step>``) is copied into `modeldir`
  (`log_checkpoints=False` turns that off).
Only the main process of a distributed run records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.integrations import _common

try:
    from transformers import TrainerCallback
    from transformers.integrations import integration_utils
except ImportError:
    from studio.exceptions import MissingDependencyError

    raise MissingDependencyError(
        "studio.integrations.transformers needs transformers: pip install transformers"
    ) from None

NAME = "studio"


class StudioCallback(TrainerCallback):  # type: ignore[misc]
    def __init__(self, project: str | None = None, name: str | None = None, *, log_checkpoints: bool = True) -> None:
        self._project, self._name = project, name
        self.log_checkpoints = log_checkpoints
        self._exp: Any = None

    def _main(self, state: Any) -> bool:
        return bool(getattr(state, "is_world_process_zero", True))

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not self._main(state):
            return
        self._exp = _common.experiment(self._project, self._name)
        params: dict[str, Any] = {"args": args.to_sanitized_dict()}
        config = getattr(model, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            params["model"] = {k: v for k, v in config.to_dict().items() if not k.startswith("_")}
        _common.log_params(params, self._exp)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not self._main(state) or not logs:
            return
        if self._exp is None:
            self._exp = _common.experiment(self._project, self._name)
        _common.log_metrics(logs, int(state.global_step))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._main(state) or not self.log_checkpoints:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            _common.store_checkpoint(folder)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from studio.tracking import metrics

        metrics.flush()


def register() -> None:
    """Make ``report_to="studio"`` (or a list naming it) add a `StudioCallback`."""
    integration_utils.INTEGRATION_TO_CALLBACK[NAME] = StudioCallback


register()

__all__ = ["StudioCallback", "register"]
