"""ModelPipe internals; the public entry point is ``studio.model_util``.

One module per concern: ``stage`` (what a stage does to an item or a batch), ``run`` (the
threads of one call), ``stream`` (the caller's iterator), ``model_pipe`` (the builder),
``images`` and ``torch_support`` (optional helpers importing pillow/numpy/torch lazily).
"""

from __future__ import annotations

from studio.pipe.errors import BatchSplitError, Failure, ItemTimeout, MissingDependency, PipeError
from studio.pipe.images import ImageToArray, resize_to_model_input
from studio.pipe.model_pipe import ModelPipe
from studio.pipe.stage import StageSpec, Step
from studio.pipe.stream import PipeStream
from studio.pipe.torch_support import TorchPredict, torch_model, torch_vstack

__all__ = [
    "BatchSplitError",
    "Failure",
    "ImageToArray",
    "ItemTimeout",
    "MissingDependency",
    "ModelPipe",
    "PipeError",
    "PipeStream",
    "StageSpec",
    "Step",
    "TorchPredict",
    "resize_to_model_input",
    "torch_model",
    "torch_vstack",
]
