"""Failure records and the errors ModelPipe raises or records.

ModelPipe has no dependency on the rest of studio (it is usable in any inference script),
so its exceptions are rooted at their own ``PipeError`` rather than ``studio.exceptions``::

    PipeError                      root of everything below
    +-- ItemTimeout                recorded: an item outlived its stage's ``timeout`` and was abandoned
    +-- BatchSplitError            recorded: a batched step's output could not be split back per item
    +-- MissingDependency          raised: an optional package (pillow, numpy, torch) is not installed

Exceptions raised by the user's own functions are never wrapped: a ``Failure`` carries the
original exception object, so ``isinstance(f.error, ZeroDivisionError)`` works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class PipeError(Exception):
    """Root of the errors ModelPipe raises or records."""


class ItemTimeout(PipeError):
    """An item (or the batch holding it) took longer than its stage's ``timeout``.

    Python cannot kill a thread, so the abandoned call keeps running in the background until
    it returns; its result is discarded. Give network calls their own socket timeout as well.
    """


class BatchSplitError(PipeError):
    """A batched step returned something that is not one output per input item."""


class MissingDependency(PipeError, ImportError):
    """An optional package needed by a helper is not installed; the message names the fix."""


@dataclass(frozen=True)
class Failure:
    """One item that was dropped from a pipe's output.

    Attributes:
        key: the item's key in the output: the dict key for dict input, else its input index.
        stage: 0-based index of the stage (a step added with options, plus the option-free
            steps composed onto it) in which the item failed.
        step: 0-based index of the ``add()`` call whose function raised or timed out; for a
            failure of a stage's ``batcher`` it is the index of the stage's first step.
        step_name: readable name of that function (``"batcher(vstack)"`` for a batcher).
        error: the exception raised by the user's function, or an ``ItemTimeout`` /
            ``BatchSplitError`` created by the pipe.
    """

    key: Any
    stage: int
    step: int
    step_name: str
    error: BaseException

    def __str__(self) -> str:
        return (
            f"item {self.key!r} failed in stage {self.stage} "
            f"(step {self.step} {self.step_name}): {type(self.error).__name__}: {self.error}"
        )
