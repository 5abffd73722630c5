"""What a stage is, and how it turns items into results (no threads here).

A *step* is one ``add()`` call. A *stage* is a step added with options plus the option-free
steps composed onto it; each stage runs in its own worker threads behind a bounded queue.
The functions below apply a stage to one item or to one batch and report, per item, either
a value or a ``Failure``; they never raise for a user error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from studio.pipe.errors import BatchSplitError, Failure

Item = tuple[int, Any, Any]
"""``(seq, key, value)``: seq numbers items in input order; key is what the caller sees."""

Outcome = tuple[int, Any, Any, Failure | None]
"""``(seq, key, value, failure)``; value is meaningless when failure is set."""


def callable_name(func: Callable[..., Any]) -> str:
    """A short readable name for a function, bound method, partial or callable object."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if name is None:
        name = type(func).__name__
    return str(name).rpartition("<locals>.")[2]


@dataclass(frozen=True)
class Step:
    """One function added with ``ModelPipe.add``; ``index`` is the position of that call."""

    func: Callable[[Any], Any]
    index: int
    name: str


@dataclass(frozen=True)
class StageSpec:
    """An immutable description of one stage.

    ``batch_size is None`` means items are processed one at a time; otherwise up to
    ``batch_size`` values are assembled with ``batcher`` and every step sees the whole batch.
    """

    index: int
    steps: tuple[Step, ...]
    num_workers: int = 1
    timeout: float | None = None
    batch_size: int | None = None
    batcher: Callable[[list[Any]], Any] | None = None

    @property
    def batched(self) -> bool:
        return self.batch_size is not None

    @property
    def capacity(self) -> int:
        """Size of the bounded queue in front of this stage: enough to keep every worker busy
        and to assemble the next batch while the current one runs, and no more."""
        per_worker = self.batch_size or 1
        return max(2 * self.num_workers * per_worker, 4)

    def failure(self, key: Any, step: int, error: BaseException) -> Failure:
        """A ``Failure`` of this stage at step position ``step`` (-1 means the batcher)."""
        if step < 0:
            first = self.steps[0].index if self.steps else 0
            name = f"batcher({callable_name(self.batcher or list)})"
            return Failure(key, self.index, first, name, error)
        chosen = self.steps[step]
        return Failure(key, self.index, chosen.index, chosen.name, error)


class StepTracker:
    """Where a worker currently is inside its stage (read by the timeout watchdog)."""

    __slots__ = ("position",)

    def __init__(self) -> None:
        self.position = 0


def apply_item(stage: StageSpec, item: Item, where: StepTracker) -> Outcome:
    """Run every step of ``stage`` on one item; an exception becomes that item's failure."""
    seq, key, value = item
    for position, step in enumerate(stage.steps):
        where.position = position
        try:
            value = step.func(value)
        except Exception as exc:  # a user error drops this item only
            return (seq, key, None, stage.failure(key, position, exc))
    return (seq, key, value, None)


def apply_batch(
    stage: StageSpec,
    items: Sequence[Item],
    where: StepTracker,
    before_call: Callable[[], bool],
) -> list[Outcome]:
    """Run a batched stage on ``items`` and split its output back to one outcome per item.

    When the batcher or a step raises on a batch of more than one item, the batch is split in
    halves and each half retried, so only the items that fail on their own are dropped.
    ``before_call`` runs before every (re)try; it restarts the watchdog's clock and returns
    False once the run is cancelled, in which case the remaining items are silently skipped.
    """
    if not items or not before_call():
        return []
    batcher = stage.batcher or list
    position = -1
    try:
        where.position = -1
        batch = batcher([value for _, _, value in items])
        for position, step in enumerate(stage.steps):
            where.position = position
            batch = step.func(batch)
    except Exception as exc:
        if len(items) == 1:
            seq, key, _ = items[0]
            return [(seq, key, None, stage.failure(key, position, exc))]
        middle = len(items) // 2
        return apply_batch(stage, items[:middle], where, before_call) + apply_batch(
            stage, items[middle:], where, before_call
        )
    try:
        values = split_batch(batch, len(items))
    except Exception as exc:
        last = len(stage.steps) - 1
        return [(seq, key, None, stage.failure(key, last, exc)) for seq, key, _ in items]
    return [(seq, key, value, None) for (seq, key, _), value in zip(items, values, strict=True)]


def split_batch(output: Any, count: int) -> list[Any]:
    """Split a batched output into ``count`` per-item outputs.

    A mapping (e.g. ``{"logits": array, "features": array}``) is split value by value into one
    mapping per item; anything else must have ``len(output) == count`` and support
    ``output[i]`` (lists, tuples, numpy arrays, torch tensors), or be an iterable of ``count``
    values. Anything else raises ``BatchSplitError``.
    """
    if isinstance(output, Mapping):
        columns = {name: split_batch(column, count) for name, column in output.items()}
        return [{name: column[i] for name, column in columns.items()} for i in range(count)]
    if not (hasattr(output, "__len__") and hasattr(output, "__getitem__")):
        try:
            output = list(output)
        except TypeError:
            raise BatchSplitError(
                f"a batched step returned {type(output).__name__}, which cannot be split into "
                f"{count} items; return a list or an array with one row per item"
            ) from None
    try:
        length = len(output)
    except TypeError:  # e.g. a 0-d numpy array
        length = -1
    if length != count:
        raise BatchSplitError(
            f"a batched step returned {length if length >= 0 else 'an unsized value'} outputs "
            f"for {count} inputs; it must return one output per item (first dimension = batch)"
        )
    return [output[i] for i in range(count)]
