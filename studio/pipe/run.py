"""The threads of one pipe call: a feeder, the stages' workers, and a timeout watchdog.

Data flow::

    input --feeder--> [queue 0] --workers of stage 0--> [queue 1] --> ... --> results --> caller
                          ^ bounded                        ^ bounded           (events)

Guarantees:

* **Bounded memory.** The feeder takes a permit from a semaphore of ``max_in_flight`` before
  it pulls the next input item; the caller returns the permit when it takes that item's
  result (or failure). So at most ``max_in_flight`` items exist between input and caller, and
  a generator is never read further ahead than that. The per-stage queues are bounded too,
  so a fast stage cannot flood a slow one.
* **Every item ends exactly once**, as a result or as a failure event.
* **The run ends when its input ends.** The feeder puts one end marker per worker of stage 0;
  the last worker of each stage to see its marker forwards markers to the next stage, and
  the last stage's last worker ends the results. No stage ever waits for an idle timeout.
* **Timeouts.** For a stage with ``timeout``, a watchdog abandons a worker whose current call
  ran too long: it records the worker's items as ``ItemTimeout`` failures and starts a
  replacement worker, so the stage keeps its concurrency. The abandoned thread finishes its
  call in the background and discards the result (Python threads cannot be killed).
* **Cancellation.** After ``cancel()`` the feeder stops, workers skip remaining items, and all
  threads except those stuck in an abandoned call exit on their own; nothing is joined.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from studio.pipe.errors import Failure, ItemTimeout
from studio.pipe.stage import Item, Outcome, StageSpec, StepTracker, apply_batch, apply_item

_END: Any = object()
"""End marker put into stage queues and into the results queue."""

Event = tuple[int, Any, Any, bool]
"""A result for the caller: ``(seq, key, value_or_failure, failed)``."""


class _Slot:
    """One worker's state shared with the watchdog; ``lock`` decides who wins a race
    between a call returning and the watchdog abandoning it."""

    __slots__ = ("lock", "held", "deadline", "abandoned", "where")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: Sequence[Item] = ()
        self.deadline = float("inf")
        self.abandoned = False
        self.where = StepTracker()

    def begin(self, items: Sequence[Item], timeout: float) -> None:
        with self.lock:
            self.held = items
            self.deadline = time.monotonic() + timeout

    def restart_clock(self, timeout: float) -> None:
        with self.lock:
            self.deadline = time.monotonic() + timeout

    def end(self) -> bool:
        """Release the held items; False if the watchdog abandoned this worker first."""
        with self.lock:
            if self.abandoned:
                return False
            self.held = ()
            return True

    def abandon_if_late(self, now: float) -> Sequence[Item] | None:
        with self.lock:
            if self.abandoned or not self.held or now < self.deadline:
                return None
            self.abandoned = True
            return self.held


class PipeRun:
    """One execution of a pipe over one input; see the module docstring for guarantees."""

    def __init__(
        self,
        stages: Sequence[StageSpec],
        pairs: Iterable[tuple[Any, Any]],
        *,
        max_in_flight: int,
        batch_wait: float,
    ) -> None:
        self._stages = tuple(stages)
        self._pairs = pairs
        self._batch_wait = batch_wait
        self._queues: list[queue.Queue[Any]] = [queue.Queue(s.capacity) for s in self._stages]
        self._results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._window = threading.Semaphore(max_in_flight)
        self._lock = threading.Lock()
        self._remaining = [s.num_workers for s in self._stages]
        self._slots: list[list[_Slot]] = [[] for _ in self._stages]
        self._worker_ids = itertools.count()
        self._cancelled = False
        self._finished = threading.Event()
        self.input_error: BaseException | None = None
        self.internal_error: BaseException | None = None

    # -- caller side -------------------------------------------------------------------------

    def start(self) -> None:
        for stage in self._stages:
            for _ in range(stage.num_workers):
                self._start_worker(stage)
        threading.Thread(target=self._feed, name="modelpipe-feeder", daemon=True).start()
        if any(s.timeout is not None for s in self._stages):
            threading.Thread(target=self._watch, name="modelpipe-watchdog", daemon=True).start()

    def next_event(self) -> Event | None:
        """Block for the next result or failure; None once every item has ended."""
        event = self._results.get()
        if event is _END:
            self._finished.set()
            return None
        return event  # type: ignore[no-any-return]

    def release(self) -> None:
        """The caller took one item's event: let the feeder read one more input item."""
        self._window.release()

    def cancel(self) -> None:
        self._cancelled = True
        self._window.release()  # wake a feeder waiting for room
        self._finished.set()

    # -- feeder ------------------------------------------------------------------------------

    def _feed(self) -> None:
        first = self._queues[0]
        seq = 0
        try:
            iterator = iter(self._pairs)
            while not self._cancelled:
                self._window.acquire()
                if self._cancelled:
                    break
                try:
                    key, value = next(iterator)
                except StopIteration:
                    break
                first.put((seq, key, value))
                seq += 1
        except BaseException as exc:  # the caller's iterable raised: re-raised to the caller
            self.input_error = exc
        finally:
            for _ in range(self._stages[0].num_workers):
                first.put(_END)

    # -- workers -----------------------------------------------------------------------------

    def _start_worker(self, stage: StageSpec) -> None:
        slot = _Slot()
        with self._lock:
            self._slots[stage.index].append(slot)
        work = self._batch_worker if stage.batched else self._item_worker
        name = f"modelpipe-stage{stage.index}-{next(self._worker_ids)}"
        thread = threading.Thread(
            target=self._guard, args=(work, stage, slot), name=name, daemon=True
        )
        thread.start()

    def _guard(
        self, work: Callable[[StageSpec, _Slot], None], stage: StageSpec, slot: _Slot
    ) -> None:
        try:
            work(stage, slot)
        except BaseException as exc:  # a bug in the pipe itself: fail the call loudly
            self.internal_error = exc
            self._cancelled = True
            self._results.put(_END)

    def _item_worker(self, stage: StageSpec, slot: _Slot) -> None:
        source = self._queues[stage.index]
        timeout = stage.timeout
        while True:
            item = source.get()
            if item is _END:
                self._worker_done(stage)
                return
            if self._cancelled:
                continue
            if timeout is not None:
                slot.begin((item,), timeout)
            outcome = apply_item(stage, item, slot.where)
            if timeout is not None and not slot.end():
                return  # abandoned: the watchdog reported the item and started a replacement
            self._emit(stage, (outcome,))

    def _batch_worker(self, stage: StageSpec, slot: _Slot) -> None:
        source = self._queues[stage.index]
        size = stage.batch_size or 1
        batch: list[Item] = []
        while True:
            try:
                # Block for the first item; with a partial batch, wait only while items flow.
                item = source.get(timeout=self._batch_wait) if batch else source.get()
            except queue.Empty:
                item = None
            if item is not None and item is not _END:
                if not self._cancelled:
                    batch.append(item)
                if len(batch) < size:
                    continue
            if batch:
                if not self._run_batch(stage, slot, batch):
                    return
                batch = []
            if item is _END:
                self._worker_done(stage)
                return

    def _run_batch(self, stage: StageSpec, slot: _Slot, batch: list[Item]) -> bool:
        timeout = stage.timeout
        if timeout is not None:
            slot.begin(batch, timeout)

        def before_call() -> bool:
            if timeout is not None:
                slot.restart_clock(timeout)
            return not self._cancelled

        outcomes = apply_batch(stage, batch, slot.where, before_call)
        if timeout is not None and not slot.end():
            return False
        self._emit(stage, outcomes)
        return True

    def _emit(self, stage: StageSpec, outcomes: Iterable[Outcome]) -> None:
        following = stage.index + 1
        target = self._queues[following] if following < len(self._stages) else None
        for seq, key, value, failure in outcomes:
            if failure is not None:
                self._results.put((seq, key, failure, True))
            elif target is None:
                self._results.put((seq, key, value, False))
            else:
                target.put((seq, key, value))

    def _worker_done(self, stage: StageSpec) -> None:
        with self._lock:
            self._remaining[stage.index] -= 1
            last = self._remaining[stage.index] == 0
        if not last:
            return
        following = stage.index + 1
        if following < len(self._stages):
            for _ in range(self._stages[following].num_workers):
                self._queues[following].put(_END)
        else:
            self._results.put(_END)

    # -- timeouts ----------------------------------------------------------------------------

    def _watch(self) -> None:
        timed = [s for s in self._stages if s.timeout is not None]
        shortest = min(s.timeout for s in timed if s.timeout is not None)
        tick = min(max(shortest / 20, 0.005), 0.1)
        while not self._finished.wait(tick):
            now = time.monotonic()
            for stage in timed:
                with self._lock:
                    slots = list(self._slots[stage.index])
                for slot in slots:
                    held = slot.abandon_if_late(now)
                    if held is not None:
                        self._abandon(stage, slot, held)

    def _abandon(self, stage: StageSpec, slot: _Slot, held: Sequence[Item]) -> None:
        with self._lock:
            self._slots[stage.index].remove(slot)
        error = ItemTimeout(
            f"no result within {stage.timeout:g} s; the call was abandoned "
            "(it keeps running in the background and its result is discarded)"
        )
        position = slot.where.position
        for seq, key, _ in held:
            failure: Failure = stage.failure(key, position, error)
            self._results.put((seq, key, failure, True))
        # Failures first, then the replacement: the run cannot end before they are queued.
        self._start_worker(stage)
