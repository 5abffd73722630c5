"""Run one experiment's script as a supervised child process.

The supervisor owns the truth: it is the child's parent, so it always learns the exit code or
signal and records the final status itself. While the child runs it heartbeats (renewing the
lease, noticing `studio runs stop`), enforces `--max-duration`, tees output, samples system
metrics and checkpoints mutable artifacts. Used alike by `studio run` and by workers.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.api.context import Context
from studio.entities import Experiment, Status
from studio.exceptions import ConflictError
from studio.runner.checkpoint import Checkpointer
from studio.runner.tee import OutputTee

log = logging.getLogger(__name__)


@dataclass
class Launch:
    """What to start and where. `paths` maps every artifact tag to its local path."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    paths: dict[str, Path]
    capture: dict[str, Path]  # mutable artifacts to checkpoint: tag -> local path
    ignore: dict[str, Callable[[str, bool], bool]] = field(default_factory=dict)
    output_file: Path | None = None
    echo: bool = True


@dataclass
class Outcome:
    status: Status
    returncode: int | None
    reason: str | None = None

    @property
    def exit_code(self) -> int:
        """What `studio run` exits with: the script's code, or 128+N for signal N."""
        if self.returncode is None:
            return 1
        return 128 - self.returncode if self.returncode < 0 else self.returncode


class _Signals:
    """SIGINT/SIGTERM to the supervisor are recorded and forwarded to the child's group."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, object] = {}
        self.on_signal: Callable[[int], None] | None = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.received = signum
        if self.on_signal is not None:
            self.on_signal(signum)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]


class LeaseKeeper:
    """Renews an experiment's lease from a background thread while its supervisor is busy
    with something other than the child (materializing, building an environment, the final
    checkpoint). `lost`: someone else holds the experiment now; `stop_requested`: a user
    asked to stop it."""

    def __init__(self, ctx: Context, key: str, worker: str) -> None:
        self.ctx, self.key, self.worker = ctx, key, worker
        self.lost = False
        self.stop_requested = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="studio-lease", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def renew(self) -> bool:
        """One heartbeat now; False if the lease is lost (store errors count as held)."""
        try:
            if self.ctx.meta.heartbeat(self.key, self.worker, self.ctx.settings.lease_seconds):
                self.stop_requested = True
        except ConflictError:
            self.lost = True
        except Exception:
            log.warning("heartbeat of %s failed; will retry", self.key, exc_info=True)
        return not self.lost

    def _loop(self) -> None:
        while not self._done.wait(self.ctx.settings.heartbeat_seconds):
            if not self.renew():
                return


class Executor:
    def __init__(self, ctx: Context, worker: str, stop_grace: float = 10.0) -> None:
        self.ctx = ctx
        self.worker = worker
        self.stop_grace = stop_grace
        self.handback_on_sigterm = False

    def run(self, exp: Experiment, launch: Launch) -> Outcome:
        settings = self.ctx.settings
        meta = self.ctx.meta
        output_path = launch.output_file or launch.paths["output"]
        output_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(output_path, "ab")  # noqa: SIM115 - closed in finally
        attempt = exp.attempts

        def sink(seq: int, text: str) -> None:
            meta.append_output(exp.key, attempt, seq, text)

        tee = OutputTee(out, sink=sink, echo=launch.echo)
        metric_logger = _output_metrics_logger(launch.paths.get("metrics"))
        if metric_logger is not None:
            tee.listeners.append(metric_logger.feed)
        checkpointer = Checkpointer(
            self.ctx, exp.key, exp.artifacts, launch.capture, ignore=launch.ignore, metric=exp.metric
        )
        signals = _Signals()
        child: subprocess.Popen[bytes] | None = None
        sampler = None
        stopping: dict[str, object] = {}
        try:
            child = subprocess.Popen(
                launch.argv,
                cwd=str(launch.cwd),
                env=launch.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with_parent_fn(),
            )
        except OSError as exc:
            out.write(f"studio: could not start {launch.argv[0]}: {exc}\n".encode())
            out.close()
            meta.set_status(exp.key, Status.FAILED, reason=f"could not start: {exc}", time_finished=time.time())
            return Outcome(Status.FAILED, None, f"could not start: {exc}")

        proc = child

        def terminate(reason: Status, why: str) -> None:
            if "status" not in stopping:
                stopping.update(status=reason, reason=why, since=time.monotonic(), step=0)
                _signal_group(proc, signal.SIGINT if reason in (Status.STOPPED, Status.PRUNED) else signal.SIGTERM)

        def on_signal(signum: int) -> None:
            if signum == signal.SIGINT:
                terminate(Status.STOPPED, "interrupted (Ctrl-C)")
            elif self.handback_on_sigterm:
                stopping["handback"] = True
                terminate(Status.QUEUED, "worker shutting down: experiment handed back")
            else:
                terminate(Status.KILLED, "studio received SIGTERM")

        signals.on_signal = on_signal
        signals.install()
        exited = _ExitWaiter(proc)
        try:
            tee.start([(proc.stdout, _binary(sys.stdout)), (proc.stderr, _binary(sys.stderr))])  # type: ignore[list-item]
            sampler = _start_sampler(proc.pid, launch.paths.get("metrics"))
            checkpointer.start(settings.save_workspace_frequency)
            started = time.monotonic()
            next_beat = 0.0
            while True:
                if exited(min(0.2, settings.heartbeat_seconds)):
                    break
                now = time.monotonic()
                if exp.max_duration and now - started > exp.max_duration:
                    terminate(Status.KILLED, f"max duration of {exp.max_duration:g}s exceeded")
                if now >= next_beat:
                    next_beat = now + settings.heartbeat_seconds
                    try:
                        if meta.heartbeat(exp.key, self.worker, settings.lease_seconds):
                            terminate(*_requested_stop(self.ctx, exp.key))
                    except ConflictError:
                        log.warning("lost the lease on %s; stopping the local copy", exp.key)
                        stopping["lost"] = True
                        terminate(Status.LOST, "lease lost")
                    except Exception:
                        log.warning("heartbeat failed; will retry", exc_info=True)
                if "since" in stopping:
                    self._escalate(proc, stopping)
        finally:
            signals.restore()
            exited.close()
            if proc.poll() is None:  # an exception in the loop: never leave the child behind
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            tee.join(timeout=10)
            for closer in (getattr(sampler, "stop", None), getattr(metric_logger, "close", None)):
                if closer is None:
                    continue
                try:  # metrics are a by-product: they must never cost the run its outcome
                    closer()
                except Exception:
                    log.warning("closing the metric collectors failed", exc_info=True)
            checkpointer.stop()
            out.close()

        returncode = proc.returncode
        if stopping.get("lost"):
            return Outcome(Status.LOST, returncode, "lease lost")
        # The final checkpoint can outlast a short lease: keep it alive meanwhile. Whoever lost
        # the lease must not record an outcome: another worker may be running the experiment.
        with LeaseKeeper(self.ctx, exp.key, self.worker) as keeper:
            try:
                checkpointer.checkpoint()
            except Exception as exc:  # the run's outcome still gets recorded
                log.error("final checkpoint of %s failed: %s", exp.key, exc)
        if keeper.lost or not keeper.renew():
            log.warning("lost the lease on %s before recording its outcome", exp.key)
            return Outcome(Status.LOST, returncode, "lease lost")
        outcome = self._outcome(returncode, stopping)
        if outcome.status == Status.QUEUED:
            # set_status clears worker and lease on the way back to `queued`, in one transaction.
            meta.set_status(exp.key, Status.QUEUED, expect=[Status.RUNNING], reason=outcome.reason,
                            worker=self.worker)
        else:
            meta.set_status(
                exp.key,
                outcome.status,
                expect=[Status.RUNNING],
                reason=outcome.reason,
                worker=self.worker,
                returncode=returncode,
                time_finished=time.time(),
            )
        return outcome

    def _escalate(self, proc: subprocess.Popen[bytes], stopping: dict[str, object]) -> None:
        """SIGINT/SIGTERM first; SIGTERM then SIGKILL if the script ignores it."""
        waited = time.monotonic() - float(stopping["since"])  # type: ignore[arg-type]
        step = int(stopping["step"])  # type: ignore[call-overload]
        if step == 0 and waited > self.stop_grace:
            _signal_group(proc, signal.SIGTERM)
            stopping["step"] = 1
        elif step == 1 and waited > 2 * self.stop_grace:
            _signal_group(proc, signal.SIGKILL)
            stopping["step"] = 2

    @staticmethod
    def _outcome(returncode: int, stopping: dict[str, object]) -> Outcome:
        if "status" in stopping:
            return Outcome(stopping["status"], returncode, str(stopping["reason"]))  # type: ignore[arg-type]
        if returncode == 0:
            return Outcome(Status.FINISHED, 0)
        if returncode > 0:
            return Outcome(Status.FAILED, returncode, f"exit code {returncode}")
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return Outcome(Status.KILLED, returncode, f"killed by {name}")


def _die_with_parent_fn() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGKILL the child if the supervisor dies (kill -9,
    OOM killer), so a crashed worker leaves no orphan script behind to race the re-run of its
    experiment. libc is loaded here, in the parent: the forked child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(137)

    return preexec


class _ExitWaiter:
    """`wait(timeout) -> exited?`. On Linux a pidfd wakes us the moment the child exits;
    `Popen.wait(timeout)` polls with sleeps of up to 50 ms, which every short run would pay."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        try:
            self.fd: int | None = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            self.fd = None

    def __call__(self, timeout: float) -> bool:
        if self.fd is None:
            try:
                self.proc.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        import select

        select.select([self.fd], [], [], timeout)
        return self.proc.poll() is not None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _requested_stop(ctx: Context, key: str) -> tuple[Status, str]:
    """What a requested stop records: `stopped`, or what the requester asked for (a sweep's
    pruner asks for `pruned`, with its reason)."""
    try:
        current = ctx.meta.get_experiment(key)
    except Exception:
        return Status.STOPPED, "stop requested"
    return current.stop_status or Status.STOPPED, current.stop_reason or "stop requested"


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _binary(stream: object) -> object:
    return getattr(stream, "buffer", None)


def _start_sampler(pid: int, metrics_dir: Path | None) -> Any:
    if metrics_dir is None:
        return None
    try:
        from studio.tracking.system import SystemSampler

        sampler = SystemSampler(pid, metrics_dir)
        sampler.start()
        return sampler
    except Exception:
        log.debug("system metrics unavailable", exc_info=True)
        return None


class _OutputMetrics:
    """Feeds `name: value` lines of the output into the experiment's series."""

    def __init__(self, metrics_dir: Path) -> None:
        from studio.tracking.metrics import Logger

        self._logger = Logger(metrics_dir)
        self._rest = ""

    def feed(self, text: str) -> None:
        from studio.tracking.outputmetrics import parse_metric_lines

        text = self._rest + text
        complete, _, self._rest = text.rpartition("\n")
        for name, value in parse_metric_lines(complete):
            if name != "step":  # `step` is the logger's own argument, not a metric
                values: dict[str, Any] = {name: value}
                self._logger.log(None, **values)

    def close(self) -> None:
        self.feed("\n")
        self._logger.close()


def _output_metrics_logger(metrics_dir: Path | None) -> _OutputMetrics | None:
    if metrics_dir is None:
        return None
    try:
        return _OutputMetrics(metrics_dir)
    except Exception:
        log.debug("output metric parsing unavailable", exc_info=True)
        return None
