"""`studio.log(step=None, **values)`: the in-script metrics call.

Where points go: the directory in ``STUDIOML_METRICS_DIR`` (set by the supervisor, `studio run`
or a worker), else a directory given to `configure()` (the workbook training side does this for
a plain ``python train.py``), else nowhere (one warning, then a cheap no-op).

How: `log` only queues the call (one lock-free `deque.extend`, well under a microsecond). A
daemon thread folds queued calls into columns (`studio.tracking.fold`) and writes them as one
new segment file (`studio.tracking.segments`) every `flush_interval` seconds or once
`max_pending` calls wait; `flush()`, `close()`, interpreter exit (atexit) and SIGTERM/SIGINT
(after which the previous handler runs: KeyboardInterrupt and death by signal are unchanged)
flush too. Segments are
written to a temp file and renamed, so a process killed at any moment leaves every flushed point
readable and no corrupt file; points logged since the last flush are lost on SIGKILL only.

Steps: `step=None` auto-increments per key (0, 1, 2, ...); an explicit step applies to every
value of the call and the key's counter continues after it.
"""

from __future__ import annotations

import atexit
import collections
import logging
import operator
import os
import signal
import threading
import time
import weakref
from pathlib import Path
from types import FrameType
from typing import Any

from studio.tracking import segments

__all__ = ["ENV_METRICS_DIR", "Logger", "configure", "default_logger", "flush", "log"]

ENV_METRICS_DIR = "STUDIOML_METRICS_DIR"
_log = logging.getLogger(__name__)
_time = time.time
_index = operator.index


class _Starter:
    """Stands in for the queue until the first call: starts the logger, then steps aside."""

    __slots__ = ("logger",)

    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def extend(self, call: tuple[float, int | None, dict[str, float]]) -> None:
        self.logger._start_and_extend(call)

    def __len__(self) -> int:
        return 0


class _Discard:
    """The queue of a logger with nowhere to write (or closed): a cheap no-op."""

    __slots__ = ()

    def extend(self, call: object) -> None:
        pass

    def __len__(self) -> int:
        return 0


_DISCARD = _Discard()


class Logger:
    """Buffered writer of one metrics directory. Thread-safe; one per process per directory.

    metrics_dir: where segments go (created on first use). None makes a no-op logger.
    flush_interval / max_pending: the background flush happens after `flush_interval` seconds
    or once `max_pending` calls are queued, whichever comes first.
    fsync: fsync each segment before the rename (survives power loss, not only process death).
    compact: merge this logger's segments as they accumulate (`studio.tracking.compaction`;
    Arrow segments only), on the background thread.

    `log` is one `deque.extend` of ``(time, step, values)``: a single C call, so it is atomic
    under the GIL (no lock) and a signal handler never sees half a call. Values are converted
    at flush time; one that is not a number is dropped there with a warning.
    """

    def __init__(
        self,
        metrics_dir: str | os.PathLike[str] | None,
        *,
        flush_interval: float = 1.0,
        max_pending: int = 100_000,
        fsync: bool = True,
        compact: bool = True,
    ) -> None:
        self.metrics_dir = None if metrics_dir is None else Path(metrics_dir)
        self.compact = compact
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._max_items = 3 * max_pending  # three queue items per call
        self.fsync = fsync
        self.segments_written = 0
        self._next_steps: dict[str, int] = {}
        self._closed = False
        self._reset_runtime()
        _live_loggers.add(self)

    def _reset_runtime(self) -> None:
        """Fresh queue, locks and thread: at creation and in a forked child."""
        self._queue: Any = _Starter(self) if self.metrics_dir is not None else _DISCARD
        self._start_lock = threading.Lock()
        self._fold_lock = threading.Lock()  # drain + fold + name: one thread at a time
        self._fold_owner: int | None = None
        self._cond = threading.Condition(threading.RLock())
        self._writers: dict[int, int] = {}  # thread ident -> segments it is writing now
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._namer = segments.SegmentNamer()
        self._compactor: Any = None  # created with the first Arrow segment (new names after fork)
        if self._closed:
            self._queue = _DISCARD

    # -- the hot path ---------------------------------------------------------------------
    def log(self, step: int | None = None, **values: float) -> None:
        """Record `values` (name=number) at `step` (None: each key's next step)."""
        # Keep in step with the module-level `log`, which inlines this to save a call.
        if step is not None:
            step = _index(step)  # a float step is a mistake worth raising at the call site
        queue = self._queue
        queue.extend((_time(), step, values))  # one C call: atomic, no lock needed
        if len(queue) >= self._max_items and not self._wake.is_set():
            self._wake.set()

    def _start_and_extend(self, call: tuple[float, int | None, dict[str, float]]) -> None:
        with self._start_lock:
            if isinstance(self._queue, _Starter):
                assert self.metrics_dir is not None
                self.metrics_dir.mkdir(parents=True, exist_ok=True)
                name = f"studio-metrics-{self.metrics_dir.name}"
                self._thread = threading.Thread(target=self._run, name=name, daemon=True)
                self._queue = collections.deque()
                self._thread.start()
                _install_signal_handlers()
        self._queue.extend(call)

    # -- flushing -------------------------------------------------------------------------
    def _run(self) -> None:
        try:  # here, not at the first flush of whichever thread flushes first
            segments.warm_up()
        except Exception:
            _log.debug("could not import the segment writers ahead of time", exc_info=True)
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._closed:
                break
            try:
                self.flush()
            except Exception:  # keep the flusher alive; the next flush retries with new data
                _log.exception("could not write metrics to %s", self.metrics_dir)
            compactor = self._compactor
            if compactor is not None:
                try:
                    compactor.run()
                except Exception:  # merging saves files; it must never stop the logging
                    _log.warning("could not merge metric segments in %s", self.metrics_dir, exc_info=True)

    def flush(self, timeout: float = 10.0) -> Path | None:
        """Write everything logged so far into one new segment; returns its path (or None).

        Also waits (up to `timeout` s) for segments other threads are writing, so that when
        it returns every point logged before the call is in a complete segment.
        """
        me = threading.get_ident()
        path = None
        with self._fold_lock:
            self._fold_owner = me
            try:
                queue = self._queue
                pop = queue.popleft if isinstance(queue, collections.deque) else None
                # popleft is atomic: calls appended meanwhile simply wait for the next flush.
                items = [pop() for _ in range(len(queue))] if pop is not None else []
                if items:
                    from studio.tracking.fold import fold

                    columns = fold(items, self._next_steps)
                    if columns and self.metrics_dir is not None:
                        # Named while folding: names sort in the order points were logged.
                        path = self.metrics_dir / self._namer.next_name(segments.ARROW_SUFFIX)
                        with self._cond:
                            self._writers[me] = self._writers.get(me, 0) + 1
            finally:
                self._fold_owner = None
        if path is not None:
            compactor = self._compactor_for(path)
            try:
                segments.write_segment_to(path, columns, fsync=self.fsync)
            except BaseException:
                if compactor is not None:
                    compactor.skipped(segments.segment_id(path.name).first)  # type: ignore[union-attr]
                raise
            else:
                if compactor is not None:
                    compactor.written(path.name)
            finally:
                with self._cond:
                    self._writers[me] -= 1
                    if not self._writers[me]:
                        del self._writers[me]
                    self.segments_written += 1
                    self._cond.notify_all()
        with self._cond:
            self._cond.wait_for(lambda: not (self._writers.keys() - {me}), timeout)
        if _deferred_signals and threading.current_thread() is threading.main_thread():
            _redeliver_deferred_signals()
        return path

    def _compactor_for(self, path: Path) -> Any:
        if not self.compact or not path.name.endswith(segments.ARROW_SUFFIX):
            return None
        with self._start_lock:
            if self._compactor is None:
                from studio.tracking.compaction import Compactor

                self._compactor = Compactor(path.parent, fsync=self.fsync)
            return self._compactor

    def close(self) -> None:
        """Flush and stop the background thread. Later `log` calls are ignored."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            queue, self._queue = self._queue, _DISCARD
            if len(queue):  # calls that raced with close()
                self._queue = queue
                self.flush()
                self._queue = _DISCARD
            self._wake.set()
            thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=5)
            if self._compactor is not None:
                self._compactor.close()  # the merges' inputs: hidden already, now deleted
            _live_loggers.discard(self)

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Logger({str(self.metrics_dir)!r})"


_live_loggers: weakref.WeakSet[Logger] = weakref.WeakSet()
_default: Logger | None = None
_default_lock = threading.Lock()


def default_logger() -> Logger:
    """The process-wide logger (created on first use from the environment)."""
    global _default
    with _default_lock:
        if _default is None:
            directory = os.environ.get(ENV_METRICS_DIR)
            if not directory:
                _log.warning(
                    "studio.log: no metrics directory (not under `studio run`, %s unset, "
                    "configure() not called): values are not recorded",
                    ENV_METRICS_DIR,
                )
            _default = Logger(directory or None)
        return _default


_warming: threading.Thread | None = None
_warm_lock = threading.Lock()


def warm_up_in_background() -> None:
    """Import the segment writers (numpy, pyarrow) in a daemon thread, once per process:
    `workbook.new_experiment()` calls it through `configure`, so the imports overlap the
    script's own set-up instead of its first training steps."""
    global _warming
    with _warm_lock:
        if _warming is not None:
            return
        _warming = threading.Thread(target=_warm, name="studio-metrics-warm-up", daemon=True)
        _warming.start()


def wait_for_warm_up(timeout: float) -> None:
    """Wait (at most `timeout` s) for `warm_up_in_background`'s imports, if it was started."""
    warming = _warming
    if warming is not None and warming.is_alive():
        warming.join(timeout)


def _warm() -> None:
    try:
        segments.warm_up()
    except Exception:
        _log.debug("could not import the segment writers ahead of time", exc_info=True)


def configure(metrics_dir: str | os.PathLike[str] | None, **options: Any) -> Logger | None:
    """Point `studio.log` at `metrics_dir`; returns the new default logger.

    None goes back to the default (``STUDIOML_METRICS_DIR`` or no-op), chosen at the next
    `log`. The previous default logger is flushed and closed. `options` go to `Logger`.
    """
    global _default
    with _default_lock:
        previous, _default = _default, None
        if metrics_dir is not None:
            _default = Logger(metrics_dir, **options)
            warm_up_in_background()
    if previous is not None:
        previous.close()
    return _default


def log(step: int | None = None, **values: float) -> None:
    """Log numbers at a step: ``studio.log(loss=0.3)``, ``studio.log(10, acc=0.9, lr=1e-3)``.

    `step=None` gives each key its next step (0, 1, 2, ...). Values are anything `float()`
    accepts (Python and numpy numbers, 0-d tensors); NaN and inf are kept as they are.
    """
    logger = _default
    if logger is None:
        logger = default_logger()
    # Logger.log inlined: this is the call a training loop makes.
    if step is not None:
        step = _index(step)
    queue = logger._queue
    queue.extend((_time(), step, values))
    if len(queue) >= logger._max_items and not logger._wake.is_set():
        logger._wake.set()


def flush() -> None:
    """Flush every logger of this process now."""
    for logger in list(_live_loggers):
        logger.flush()


def _flush_all_quietly() -> None:
    for logger in list(_live_loggers):
        try:
            logger.flush()
        except Exception:
            _log.exception("could not flush metrics to %s", logger.metrics_dir)


def _at_exit() -> None:
    _flush_all_quietly()
    for logger in list(_live_loggers):
        compactor = logger._compactor
        if compactor is not None:  # merges' inputs: hidden already; not worth a capture
            try:
                compactor.close()
            except Exception:
                _log.debug("could not delete merged segments in %s", logger.metrics_dir, exc_info=True)


# -- exit and signals ------------------------------------------------------------------------
atexit.register(_at_exit)

_handled_signals = (signal.SIGTERM, signal.SIGINT)
_installed = False


_deferred_signals: list[int] = []


def _on_signal(signum: int, frame: FrameType | None) -> None:
    me = threading.get_ident()
    if any(lg._fold_owner == me or me in lg._writers for lg in list(_live_loggers)):
        # This thread was interrupted inside a flush: let that flush finish, then act.
        _deferred_signals.append(signum)
        return
    _flush_all_quietly()
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # e.g. default_int_handler raises KeyboardInterrupt as usual
    elif previous == signal.SIG_DFL:
        # Die of the same signal so the supervisor sees it (atexit does not run: flushed above).
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _redeliver_deferred_signals() -> None:
    while _deferred_signals:
        _on_signal(_deferred_signals.pop(0), None)


_previous_handlers: dict[int, Any] = {}


def _install_signal_handlers() -> None:
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    _installed = True
    for signum in _handled_signals:
        previous = signal.getsignal(signum)
        if previous is None or previous == signal.SIG_IGN:
            continue  # installed outside Python (cannot chain) or deliberately ignored
        _previous_handlers[signum] = previous
        try:
            signal.signal(signum, _on_signal)
        except (ValueError, OSError):  # not the main interpreter
            _previous_handlers.pop(signum, None)


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    _deferred_signals.clear()
    for logger in list(_live_loggers):
        logger._reset_runtime()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
