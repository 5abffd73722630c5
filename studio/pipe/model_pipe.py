"""``ModelPipe``: batched, parallel, failure-tolerant application of functions to collections."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from studio.pipe.errors import Failure
from studio.pipe.stage import StageSpec, Step, callable_name
from studio.pipe.stream import PipeStream


class ModelPipe:
    """A chain of functions applied to every item of a collection, with stages in threads.

    Build it with ``add``; call it on a collection::

        pipe = ModelPipe()
        pipe.add(fetch, num_workers=32, timeout=5)          # stage 0: 32 threads
        pipe.add(decode)                                     # composed into stage 0
        pipe.add(model, batch_size=128, batcher=np.vstack)   # stage 1: batches of 128
        pipe.add(lambda out: np.argmax(out, axis=1))         # composed: sees the whole batch
        labels = pipe({url: url for url in urls})            # {url: label}, failed urls absent
        pipe.failures                                        # [Failure(key=url, stage, ...)]

    Contract:

    * Input and output: a dict gives a dict with the same keys (values mapped); a list,
      tuple, set or frozenset gives the same type holding ``(index, value)`` pairs; any other
      iterable (a generator) gives a lazy iterator of ``(index, value)`` pairs. Unordered
      calls return pairs in completion order; ``ordered=True`` returns them in input order.
    * An exception in any step drops that item only; every other item keeps its key. Each
      dropped item is recorded as a ``Failure`` (key, stage, step, exception).
    * Memory is bounded: at most ``max_in_flight`` items are between the input and the
      caller, and a generator input is never read further ahead than that.
    * A call ends as soon as its last item ends; no stage waits for an idle timeout.
    * One pipe may be called from several threads at once; each call has its own threads
      and failures. Steps of a stage with ``num_workers > 1`` run concurrently, so they
      must be thread-safe.
    """

    def __init__(self, *, max_in_flight: int | None = None, batch_wait: float = 0.1) -> None:
        """
        Args:
            max_in_flight: the most items between input and caller at any moment; by
                default twice what the stages can hold (queues plus batches being processed).
            batch_wait: how long a batched stage holding a partial batch waits for its next
                item before running the partial batch (when the input ends it runs at once).
        """
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        if batch_wait < 0:
            raise ValueError(f"batch_wait must be >= 0 seconds, got {batch_wait}")
        self._max_in_flight = max_in_flight
        self._batch_wait = batch_wait
        self._stages: list[StageSpec] = []
        self._step_count = 0
        self._local = threading.local()

    def add(
        self,
        func: Callable[[Any], Any],
        num_workers: int | None = None,
        timeout: float | None = None,
        batch_size: int | None = None,
        batcher: Callable[[list[Any]], Any] | None = None,
    ) -> ModelPipe:
        """Append a step; returns the pipe so calls can be chained.

        Without options, ``func`` is composed with the previous step and runs in that step's
        threads (no queue in between); if that stage is batched, ``func`` receives the whole
        batch output. With any option, ``func`` starts a new stage:

        Args:
            func: the function; called with one value, or with one batch if ``batch_size``.
            num_workers: threads running this stage (default 1).
            timeout: seconds one call of this stage may take (a whole batch for batched
                stages); a late item is dropped as an ``ItemTimeout`` failure and its worker
                replaced. ``None``: no limit.
            batch_size: run ``func`` on up to this many values at once; its output must have
                one entry per value (``len(out) == n``, ``out[i]``) or be a dict of such.
            batcher: assembles the list of values into the batch ``func`` takes (default:
                the list itself; ``np.vstack``, ``np.stack``, ``torch.stack`` ...). Needs
                ``batch_size``. If the batcher or ``func`` raises on a batch, the batch is
                split in halves and retried until the failing values are isolated, so batched
                functions must be safe to call again on a subset.
        """
        if not callable(func):
            raise TypeError(f"ModelPipe.add needs a callable, got {type(func).__name__}")
        if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 1):
            raise ValueError(f"num_workers must be a positive integer, got {num_workers!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batcher is not None and batch_size is None:
            raise ValueError("a batcher needs a batch_size: add(func, batch_size=..., batcher=...)")
        if batcher is not None and not callable(batcher):
            raise TypeError(f"batcher must be callable, got {type(batcher).__name__}")

        step = Step(func, self._step_count, callable_name(func))
        self._step_count += 1
        has_options = any(o is not None for o in (num_workers, timeout, batch_size, batcher))
        if has_options or not self._stages:
            self._stages.append(
                StageSpec(
                    index=len(self._stages),
                    steps=(step,),
                    num_workers=num_workers or 1,
                    timeout=timeout,
                    batch_size=batch_size,
                    batcher=batcher if batch_size is not None else None,
                )
            )
        else:
            last = self._stages[-1]
            self._stages[-1] = dataclasses.replace(last, steps=(*last.steps, step))
        return self

    def add_torch(
        self,
        model: Any,
        batch_size: int,
        num_workers: int | None = None,
        timeout: float | None = None,
        device: Any = None,
    ) -> ModelPipe:
        """Add a torch ``nn.Module`` as a batched stage: values (tensors or arrays of one item
        each) are joined with ``torch_vstack`` and run by ``torch_model(model, device)``,
        i.e. in eval mode under ``torch.no_grad()``, with outputs as numpy arrays."""
        from studio.pipe.torch_support import torch_model, torch_vstack

        return self.add(
            torch_model(model, device=device),
            num_workers=num_workers,
            timeout=timeout,
            batch_size=batch_size,
            batcher=torch_vstack,
        )

    @property
    def stages(self) -> tuple[StageSpec, ...]:
        """The stages as built so far (immutable descriptions)."""
        return tuple(self._stages)

    @property
    def failures(self) -> list[Failure]:
        """Failures of the most recent call made from the current thread.

        For a generator input the list fills while the returned iterator is consumed.
        """
        failures: list[Failure] = getattr(self._local, "failures", [])
        return failures

    def stream(self, data: Iterable[Any], *, ordered: bool = False) -> PipeStream:
        """Apply the pipe to ``data``, yielding ``(key, value)`` as items finish.

        Keys are dict keys for a mapping, else input indices. Use ``stream.failures`` for the
        dropped items; see ``PipeStream`` for the full contract.
        """
        if isinstance(data, str | bytes | bytearray) or not isinstance(data, Iterable):
            raise TypeError(
                "ModelPipe input must be a dict, list, tuple, set or iterable of items, "
                f"got {type(data).__name__}"
            )
        pairs: Iterable[tuple[Any, Any]]
        pairs = data.items() if isinstance(data, Mapping) else enumerate(data)
        stages = self._stages or [StageSpec(index=0, steps=())]
        return PipeStream(
            stages,
            pairs,
            ordered=ordered,
            max_in_flight=self._max_in_flight or _default_window(stages),
            batch_wait=self._batch_wait,
        )

    def __call__(self, data: Iterable[Any], *, ordered: bool = False) -> Any:
        """Apply the pipe to ``data`` and return the same kind of collection (see class doc).

        Dicts, lists, tuples and sets are returned complete; any other iterable gives a lazy
        iterator (a ``PipeStream``). ``self.failures`` then holds this call's failures.
        """
        stream = self.stream(data, ordered=ordered)
        self._local.failures = stream.failures
        if isinstance(data, Mapping | list | tuple | set | frozenset):
            with stream:
                if isinstance(data, Mapping):
                    return dict(stream)
                if isinstance(data, list):
                    return list(stream)
                if isinstance(data, tuple):
                    return tuple(stream)
                if isinstance(data, frozenset):
                    return frozenset(stream)
                return set(stream)
        return stream

    def __repr__(self) -> str:
        parts = []
        for stage in self._stages:
            names = " | ".join(step.name for step in stage.steps)
            options = [f"workers={stage.num_workers}"]
            if stage.timeout is not None:
                options.append(f"timeout={stage.timeout:g}")
            if stage.batch_size is not None:
                options.append(f"batch={stage.batch_size}")
            parts.append(f"[{names}; {', '.join(options)}]")
        return f"ModelPipe({' -> '.join(parts)})"


def _default_window(stages: Iterable[StageSpec]) -> int:
    held = sum(s.capacity + s.num_workers * (s.batch_size or 1) for s in stages)
    return max(2 * held, 64)
