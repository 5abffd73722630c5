"""Batched, parallel, failure-tolerant inference over collections: ``ModelPipe``.

Usage (the seed's URL example)::

    from studio import model_util

    pipe = model_util.ModelPipe()
    pipe.add(lambda url: urllib.request.urlopen(url, timeout=5).read(), num_workers=32, timeout=5)
    pipe.add(lambda data: Image.open(BytesIO(data)))
    pipe.add(model_util.resize_to_model_input(model))
    pipe.add(model.predict, batch_size=128, batcher=np.vstack)
    pipe.add(lambda out: np.argmax(out, axis=1))
    labels = pipe({url: url for url in urls})   # {url: label}; broken urls are absent
    for failure in pipe.failures:               # which key, which stage, which exception
        print(failure)

This module depends on nothing else in studio, and imports neither numpy, pillow nor torch
until a helper that needs them runs. The implementation lives in ``studio.pipe``; see
``docs/model_pipe.md`` for the full contract.
"""

from __future__ import annotations

from studio.pipe import (
    BatchSplitError,
    Failure,
    ImageToArray,
    ItemTimeout,
    MissingDependency,
    ModelPipe,
    PipeError,
    PipeStream,
    StageSpec,
    TorchPredict,
    resize_to_model_input,
    torch_model,
    torch_vstack,
)

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
    "TorchPredict",
    "resize_to_model_input",
    "torch_model",
    "torch_vstack",
]
