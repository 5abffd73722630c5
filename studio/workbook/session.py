"""The experiment behind `workbook.new_experiment()`: its background thread and how it ends.

Two modes:

- **owned** (a plain ``python train.py``): this process created the experiment and is its
  supervisor: status `running` with a lease renewed by a heartbeat, like a worker's. It
  records how the process ends:

      normal exit, sys.exit(0), exp.close()      finished
      uncaught exception (sys.excepthook)        failed   (reason: the exception)
      sys.exit(n), raise SystemExit(n), n != 0   failed   (exit code n)
      KeyboardInterrupt, `studio runs stop KEY`  stopped
      SIGTERM                                    killed   (after flushing and capturing)
      SIGKILL, power loss, a wedged machine      lost     (its lease lapses: nothing to record)

- **attached** (under `studio run` or a worker, ``STUDIOML_EXPERIMENT`` set): the supervisor
  owns the status and captures the usual artifacts; this process writes its workbook folder
  and captures it (tag `workbook`) itself.

A daemon thread heartbeats (owned only), flushes time-series rows that waited longer than
`flush_after` seconds, and captures the workbook folder when something changed: at once after
a ``save_*`` call, at most every `capture_interval` seconds for time-series rows (a capture
uploads only files that changed). At exit everything is flushed and captured one last time.

SIGTERM (only when no handler of the user's is installed) becomes a SystemExit so ``finally``
blocks and the final flush run; the process then dies of SIGTERM as it would have, so a
supervisor still sees the signal.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from studio.api.context import Context
from studio.entities import ArtifactSpec, Experiment, Status
from studio.exceptions import ConflictError
from studio.runner.checkpoint import Checkpointer
from studio.workbook.timeseries import TimeSeriesLog

log = logging.getLogger(__name__)

WORKBOOK_TAG = "workbook"
TICK = 0.25  # seconds between looks at pending rows and captures


def skip_dot_files(rel: str, is_dir: bool) -> bool:
    """Capture filter: temp files and private state start with a dot."""
    return rel.rpartition("/")[2].startswith(".")


class Session:
    def __init__(
        self,
        ctx: Context,
        record: Experiment,
        directory: Path,
        checkpointer: Checkpointer,
        metrics_logger: Any,
        *,
        owned: bool,
        worker: str | None,
        capture_interval: float,
        flush_after: float,
    ) -> None:
        self.ctx = ctx
        self.record = record
        self.key = record.key
        self.directory = directory
        self.checkpointer = checkpointer
        self.metrics_logger = metrics_logger
        self.owned = owned
        self.worker = worker
        self.capture_interval = capture_interval
        self.flush_after = flush_after
        self.logs: dict[str, TimeSeriesLog] = {}
        self.closed = False
        self.stop_requested = False
        self.lease_lost = False
        self._dirty = True
        self._urgent = False
        self._stopped = False
        self._finish_lock = threading.Lock()
        self._busy = threading.RLock()  # held by a tick; `finish` takes it to stop the ticks
        self._last_capture = 0.0
        self._next_beat = 0.0
        #: Stores the workspace and collects git (`studio.api.run.capture_workspace`), for an
        #: experiment recorded without them: run by the first tick, or by `finish` if it comes
        #: first; recorded with that capture. Never lost at exit (`finish` runs it); if the
        #: process dies first, the record keeps a workspace without a tree and a pending git.
        self.workspace_job: Callable[[], tuple[ArtifactSpec, dict[str, Any]]] | None = None
        self._workspace: tuple[list[ArtifactSpec], dict[str, Any]] | None = None  # stored, not recorded

    def start(self) -> None:
        HOOKS.add(self)
        self._next_beat = time.monotonic() + self.ctx.settings.heartbeat_seconds
        # Not woken for the workspace: its next tick (within TICK) stores it. Waking it now
        # would make it race the caller for the interpreter lock at once, which a loop of
        # short experiments pays for, and a `close()` meanwhile stores it itself.
        TICKER.add(self)

    # -- changes ---------------------------------------------------------------------------
    def changed(self, urgent: bool = False) -> None:
        """Something in the folder changed: capture soon (`urgent`: right away, in the
        background)."""
        self._dirty = True
        if urgent:
            self._urgent = True
            TICKER.wake()

    def flush(self) -> None:
        """Everything written so far: rows appended, metrics flushed, folder captured."""
        for ts in list(self.logs.values()):
            ts.flush()
        _quietly(self.metrics_logger.flush, "flush the metrics of", self.key)
        self._capture()

    def _capture(self, end: dict[str, Any] | None = None) -> None:
        with self._busy:
            self._dirty = False  # set first: a change during the capture marks it again
            self._last_capture = time.monotonic()
            stored, fields = self._stored_workspace()
            try:
                self.checkpointer.checkpoint(end=end, stored=stored, fields=fields)
            except Exception:
                self._dirty = True
                if self.checkpointer.ended:  # recorded, but the end was refused
                    self._workspace = None
                raise
            self._workspace = None

    def _stored_workspace(self) -> tuple[list[ArtifactSpec], dict[str, Any] | None]:
        """Run the deferred workspace capture if it has not run; what is still to record."""
        job, self.workspace_job = self.workspace_job, None
        if job is not None:
            try:
                artifact, git = job()
                self._workspace = ([artifact], {"git": git})
            except Exception as exc:
                log.warning("could not store the workspace of %s", self.key, exc_info=True)
                self._workspace = ([], {"git": {"pending": f"the workspace could not be stored: {exc}"}})
        return self._workspace or ([], None)

    # -- the background thread -------------------------------------------------------------
    def beat(self) -> None:
        """Renew the lease if due (on the ticker's thread, for every session before any
        session's capture: one session's long capture never lets another's lease lapse)."""
        with self._busy:
            now = time.monotonic()
            if not self._stopped and self.owned and not self.lease_lost and now >= self._next_beat:
                self._next_beat = now + self.ctx.settings.heartbeat_seconds
                self._heartbeat()

    def tick(self) -> None:
        """The rest of the background work due now (on the ticker's thread): flush rows that
        waited `flush_after`, capture when something changed."""
        with self._busy:
            if self._stopped:
                return
            urgent, self._urgent = self._urgent, False
            now = time.monotonic()
            wall = time.time()
            for ts in list(self.logs.values()):
                oldest = ts.oldest_pending()
                if oldest is not None and wall - oldest >= self.flush_after:
                    _quietly(ts.flush, "flush a time series of", self.key)
            if self.workspace_job is not None or self._workspace is not None or (
                self._dirty and (urgent or now - self._last_capture >= self.capture_interval)
            ):
                _quietly(self._capture, "capture the workbook of", self.key)

    def _heartbeat(self) -> None:
        assert self.worker is not None
        try:
            stop = self.ctx.meta.heartbeat(self.key, self.worker, self.ctx.settings.lease_seconds)
        except ConflictError as exc:
            self.lease_lost = True
            log.warning(
                "experiment %s: %s; its status is no longer recorded from here", self.key, exc
            )
            return
        except Exception:
            log.warning("heartbeat of %s failed; will retry", self.key, exc_info=True)
            return
        if stop and not self.stop_requested:
            self.stop_requested = True
            print(
                f"studio workbook: stop requested for {self.key}: interrupting",
                file=sys.stderr,
                flush=True,
            )
            interrupt_main()  # KeyboardInterrupt in the main thread -> `stopped`

    # -- the end ---------------------------------------------------------------------------
    def finish(
        self, status: Status, reason: str | None = None, returncode: int | None = None
    ) -> None:
        """Stop the thread, flush and capture everything, and (owned) record `status`."""
        with self._finish_lock:
            if self.closed:
                return
            self.closed = True
        HOOKS.discard(self)
        TICKER.discard(self)
        # A tick in progress (a capture) finishes first; none starts after this.
        idle = self._busy.acquire(timeout=30)
        self._stopped = True
        try:
            self._end(status, reason, returncode, capture=idle)
        finally:
            if idle:
                self._busy.release()

    def _end(self, status: Status, reason: str | None, returncode: int | None, capture: bool) -> None:
        if not capture:  # a capture wedged (a hung file system): record the end without one
            log.warning("the background work of %s did not finish within 30 s; ending anyway", self.key)
        for ts in list(self.logs.values()):
            _quietly(ts.close, "flush a time series of", self.key)
        _quietly(self.metrics_logger.flush, "flush the metrics of", self.key)
        if not self.owned or self.lease_lost:
            if capture:
                _quietly(self._capture, "capture the workbook of", self.key)
            return
        if self.stop_requested and status in (Status.STOPPED, Status.FAILED):
            status, reason = Status.STOPPED, "stop requested"
        end: dict[str, Any] = dict(
            status=status, expect=[Status.RUNNING], reason=reason, worker=self.worker,
            returncode=returncode, time_finished=time.time(),
        )  # fmt: skip
        # The last capture and the end in one transaction (the end alone if the capture failed).
        if capture:
            try:
                self._capture(end=end)
            except ConflictError as exc:
                log.warning("could not record the end of %s: %s", self.key, exc)
                return
            except Exception:
                log.warning("could not capture the workbook of %s", self.key, exc_info=True)
            if self.checkpointer.ended:
                return
        try:
            self.ctx.meta.set_status(self.key, **end)
        except ConflictError as exc:
            log.warning("could not record the end of %s: %s", self.key, exc)
        except Exception:
            log.exception("could not record the end of %s", self.key)


class _Ticker:
    """One daemon thread doing the background work of every open session, every TICK (or at
    once when woken). Starting or ending a session wakes no thread and waits for none (unless
    a tick of that session is running): a loop creating experiments one after another pays
    no thread hand-over per experiment, which on a loaded machine costs a scheduling delay."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: list[Session] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stores: list[Any] = []  # SQLite stores whose WAL this thread checkpoints

    def add(self, session: Session) -> None:
        meta: Any = session.ctx.meta
        with self._lock:
            self._sessions.append(session)
            if hasattr(meta, "checkpoint_wal") and meta not in self._stores:
                meta.checkpoint_in_background()
                self._stores.append(meta)
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()  # a forked child has no ticker thread: start its own
                self._thread = threading.Thread(target=self._run, name="studio-workbook", daemon=True)
                self._thread.start()

    def discard(self, session: Session) -> None:
        with self._lock:
            if session in self._sessions:
                self._sessions.remove(session)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(TICK)
            self._wake.clear()
            with self._lock:
                sessions, stores = list(self._sessions), list(self._stores)
            for work in ("beat", "tick"):
                for session in sessions:
                    try:
                        getattr(session, work)()
                    except BaseException:
                        log.exception("the background work of %s failed", session.key)
            for store in stores:
                store.checkpoint_wal()


TICKER = _Ticker()


def interrupt_main() -> None:
    """Raise KeyboardInterrupt in the main thread, even when SIGINT is ignored (a script
    started in the background by a shell inherits SIG_IGN, and `interrupt_main` then does
    nothing): the exception is then set on the main thread, seen at its next bytecode."""
    if callable(signal.getsignal(signal.SIGINT)):
        _thread.interrupt_main()
        return
    import ctypes

    main = threading.main_thread().ident
    if main is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(main), ctypes.py_object(KeyboardInterrupt)
        )


def _quietly(fn: Any, what: str, key: str) -> None:
    try:
        fn()
    except Exception:
        log.warning("could not %s %s", what, key, exc_info=True)


class _Hooks:
    """Process-wide: how the interpreter is ending, for the sessions still open."""

    def __init__(self) -> None:
        self.sessions: list[Session] = []
        self.uncaught: tuple[type[BaseException], BaseException] | None = None
        self.exit_status: Any = None
        self.exit_called = False
        self.signal: int | None = None
        self.installed = False
        self.depth = 0
        self.deferred = False
        self._lock = threading.Lock()
        self._previous_excepthook: Any = None
        self._original_exit: Any = None
        self.final_exit: tuple[Any] | None = None  # (code,) of the SystemExit that ended the process

    def add(self, session: Session) -> None:
        with self._lock:
            self.sessions.append(session)
            if not self.installed:
                self._install(owned=session.owned)

    def discard(self, session: Session) -> None:
        with self._lock:
            if session in self.sessions:
                self.sessions.remove(session)

    def _install(self, owned: bool) -> None:
        self.installed = True
        import concurrent.futures.thread  # noqa: F401 - see below

        import studio.tracking.metrics  # noqa: F401 - its atexit flush must run after ours

        # Captures use thread pools, which refuse work once the interpreter's threading
        # shutdown has begun: finish from there (hooks registered later run earlier, so
        # ours runs before concurrent.futures shuts its pools), with atexit as a fallback.
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            register(self._at_exit)
        atexit.register(self._at_exit)
        self._previous_excepthook = sys.excepthook
        sys.excepthook = self._excepthook
        if owned:
            self._original_exit = sys.exit
            sys.exit = self._exit  # type: ignore[assignment]
            _watch_system_exit(self._original_exit, self._exit)
        if threading.current_thread() is threading.main_thread():
            self._install_sigterm()

    def _install_sigterm(self) -> None:
        current = signal.getsignal(signal.SIGTERM)
        from studio.tracking import metrics

        if current is signal.SIG_DFL or current is getattr(metrics, "_on_signal", None):
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGTERM, self._on_sigterm)

    # -- what the hooks record -------------------------------------------------------------
    def _excepthook(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        self.uncaught = (exc_type, exc)
        (self._previous_excepthook or sys.__excepthook__)(exc_type, exc, tb)

    def _exit(self, status: Any = None) -> None:
        self.exit_called, self.exit_status = True, status
        raise _RecordedExit(status)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.signal = signum
        if self.depth:  # inside a flush: let it finish, then exit (see `critical`)
            self.deferred = True
            return
        raise SystemExit(128 + signum)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A section SIGTERM must not cut in half (appending rows)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.deferred:
                self.deferred = False
                raise SystemExit(128 + (self.signal or signal.SIGTERM))

    # -- the end ---------------------------------------------------------------------------
    def outcome(self) -> tuple[Status, str | None, int | None]:
        if self.final_exit is not None and self.uncaught is None and self.signal is None:
            return _exit_outcome(self.final_exit[0])
        if self.signal is not None:
            name = signal.Signals(self.signal).name
            return Status.KILLED, f"received {name}", -self.signal
        if self.uncaught is not None:
            exc_type, exc = self.uncaught
            if issubclass(exc_type, KeyboardInterrupt):
                return Status.STOPPED, "interrupted (KeyboardInterrupt)", 130
            text = f"{exc_type.__name__}: {exc}".strip().rstrip(":")
            return Status.FAILED, f"uncaught {text[:500]}", 1
        if self.exit_called:
            return _exit_outcome(self.exit_status)
        return Status.FINISHED, None, 0

    def _at_exit(self) -> None:
        status, reason, code = self.outcome()
        for session in list(self.sessions):
            session.finish(status, reason, code)
        if self.signal is not None:
            # Die of the signal, as the process would have without us.
            signal.signal(self.signal, signal.SIG_DFL)
            os.kill(os.getpid(), self.signal)


def _exit_outcome(code: Any) -> tuple[Status, str | None, int | None]:
    """What the interpreter's exit code is for a SystemExit with this `code`."""
    if code is None or code == 0:
        return Status.FINISHED, None, 0
    number = code if isinstance(code, int) and not isinstance(code, bool) else 1
    return Status.FAILED, f"exit code {number}", number


class _RecordedExit(SystemExit):
    """SystemExit, noticed when it ends the process. The interpreter handles a SystemExit that
    reaches the top in C and calls no hook with its code; but it frees the exception there,
    with no Python frame running, which `__del__` can tell from one caught and dropped by code.
    Owned sessions make this the builtin `SystemExit` (see `_watch_system_exit`), so
    ``raise SystemExit(3)`` records exit code 3 like ``sys.exit(3)``."""

    def __del__(self) -> None:
        try:
            sys._getframe(1)
        except ValueError:  # freed by the interpreter's top level: this is the exit code
            HOOKS.final_exit = (self.code,)


_RecordedExit.__name__ = _RecordedExit.__qualname__ = "SystemExit"
_RecordedExit.__module__ = "builtins"


def _watch_system_exit(original_exit: Any, patched_exit: Any) -> None:
    """`raise SystemExit(n)` and `from sys import exit` (bound before `sys.exit` was patched)
    record their exit code: the builtin name now makes a `_RecordedExit` (a subclass, so
    every ``except SystemExit`` still catches it), and the main script's own name `exit`
    for the original `sys.exit` is pointed at the patched one."""
    import builtins

    builtins.SystemExit = _RecordedExit  # type: ignore[misc]
    main = sys.modules.get("__main__")
    names = vars(main) if main is not None else {}
    for name, value in list(names.items()):
        if value is original_exit:
            names[name] = patched_exit


HOOKS = _Hooks()
