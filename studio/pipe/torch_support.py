"""Helpers to run torch models in a ModelPipe; torch is imported only when they are used."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from studio.pipe.errors import MissingDependency

if TYPE_CHECKING:
    import torch


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependency(
            "this ModelPipe helper needs torch, which studio does not install; "
            "install it with `pip install torch`"
        ) from exc
    return torch


def torch_vstack(values: Sequence[Any]) -> torch.Tensor:
    """Batcher: the torch counterpart of ``np.vstack``.

    Values (tensors, numpy arrays or nested lists) that already have a leading batch
    dimension, such as the ``(1, C, H, W)`` arrays of ``resize_to_model_input``, are
    concatenated along it; 1-D values become one row each.
    """
    torch = _import_torch()
    tensors = [torch.atleast_2d(torch.as_tensor(value)) for value in values]
    return torch.cat(tensors, dim=0)  # type: ignore[no-any-return]


def torch_model(model: Any, *, device: Any = None, eval_mode: bool = True) -> TorchPredict:
    """Wrap a torch module as a batched pipe function.

    The returned callable takes a batch (tensor or numpy array), moves it to ``device`` (and,
    if it is floating point, to the dtype of the model's parameters), runs the model under
    ``torch.no_grad()`` and returns numpy arrays on the CPU: one array for a tensor output,
    a dict of arrays for a dict output, and a list of per-item tuples for a tuple output, so
    that the pipe can split every form back to its items. ``model.eval()`` is called once
    (unless ``eval_mode=False``) and the model is moved to ``device`` if one is given.
    """
    return TorchPredict(model, device=device, eval_mode=eval_mode)


class TorchPredict:
    """The callable returned by ``torch_model``; thread-safe if the model's forward is."""

    def __init__(self, model: Any, *, device: Any = None, eval_mode: bool = True) -> None:
        torch = _import_torch()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"torch_model needs a torch.nn.Module, got {type(model).__name__}")
        if device is not None:
            model = model.to(device)
        if eval_mode:
            model.eval()
        self.model = model
        self.device = device
        parameter = next(model.parameters(), None)
        self.dtype = parameter.dtype if parameter is not None else None
        self.__name__ = f"torch_model({type(model).__name__})"

    def __call__(self, batch: Any) -> Any:
        torch = _import_torch()
        inputs = batch if isinstance(batch, torch.Tensor) else torch.as_tensor(batch)
        if self.dtype is not None and inputs.is_floating_point() and inputs.dtype != self.dtype:
            inputs = inputs.to(self.dtype)
        if self.device is not None:
            inputs = inputs.to(self.device)
        # Grad mode is per thread in torch, so it must be switched off in the worker itself.
        with torch.no_grad():
            outputs = self.model(inputs)
        return _to_numpy(outputs, torch)


def _to_numpy(outputs: Any, torch: Any) -> Any:
    if isinstance(outputs, torch.Tensor):
        return outputs.detach().cpu().numpy()
    if isinstance(outputs, Mapping):
        return {name: _to_numpy(value, torch) for name, value in outputs.items()}
    if isinstance(outputs, tuple | list):
        arrays = [_to_numpy(value, torch) for value in outputs]
        return list(zip(*arrays, strict=True))
    return outputs
