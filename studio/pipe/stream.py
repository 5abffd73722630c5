"""``PipeStream``: the caller's side of one pipe call."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

from studio.pipe.errors import Failure, PipeError
from studio.pipe.run import Event, PipeRun
from studio.pipe.stage import StageSpec


class PipeStream(Iterator[tuple[Any, Any]]):
    """Results of one pipe call, yielded as ``(key, value)`` pairs.

    Contract:

    * Nothing runs until the first ``next()``; then the pipe's threads start and the input is
      read lazily (at most ``max_in_flight`` items ahead of what has been yielded).
    * Unordered (default): pairs come as soon as they finish. Ordered: pairs come in input
      order; a slow item holds back the ones after it (memory stays bounded by the window).
    * Dropped items never appear; each is appended to ``failures`` (a live list: it is
      complete once the stream is exhausted).
    * If iterating the *input* raised, the items read before the error are still yielded,
      then that exception is raised to the caller.
    * ``close()`` (also on ``with`` exit, or when the stream is garbage collected) cancels
      the call: remaining items are skipped and the threads exit on their own.
    """

    def __init__(
        self,
        stages: Sequence[StageSpec],
        pairs: Iterable[tuple[Any, Any]],
        *,
        ordered: bool,
        max_in_flight: int,
        batch_wait: float,
    ) -> None:
        self.failures: list[Failure] = []
        self._run = PipeRun(stages, pairs, max_in_flight=max_in_flight, batch_wait=batch_wait)
        self._ordered = ordered
        self._started = False
        self._done = False
        self._run_ended = False
        self._next_seq = 0
        self._pending: dict[int, Event] = {}

    def __iter__(self) -> PipeStream:
        return self

    def __next__(self) -> tuple[Any, Any]:
        if self._done:
            raise StopIteration
        if not self._started:
            self._started = True
            self._run.start()
        while True:
            event = self._next_in_turn()
            if event is None:
                self._finish()
                raise StopIteration
            _, key, payload, failed = event
            if failed:
                self.failures.append(payload)
                continue
            return key, payload

    def _next_in_turn(self) -> Event | None:
        """The next event in the order this stream yields; None at the end of the run."""
        if not self._ordered:
            event = self._run.next_event()
            if event is not None:
                self._run.release()
            return event
        while self._next_seq not in self._pending:
            event = None if self._run_ended else self._run.next_event()
            if event is None:
                self._run_ended = True
                if not self._pending:
                    return None
                # Only after an internal error can a sequence number be missing: skip it.
                self._next_seq = min(self._pending)
                break
            self._pending[event[0]] = event
        event = self._pending.pop(self._next_seq)
        self._next_seq += 1
        self._run.release()
        return event

    def _finish(self) -> None:
        self._done = True
        if self._run.internal_error is not None:
            raise PipeError(
                f"a ModelPipe worker stopped unexpectedly ({self._run.internal_error!r}), so the "
                "call was cancelled; steps may raise Exception subclasses only"
            ) from self._run.internal_error
        if self._run.input_error is not None:
            raise self._run.input_error

    def close(self) -> None:
        """Stop the call early; results not yet yielded are discarded."""
        if self._started and not self._done:
            self._run.cancel()
        self._done = True

    def __enter__(self) -> PipeStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if "_run" in self.__dict__:  # __init__ may have failed
            self.close()
