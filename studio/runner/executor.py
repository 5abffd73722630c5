"""Run one experiment's script as a supervised child process.

The supervisor owns the truth: it is the child's parent, so it always learns the exit code or
signal and records the final status itself. While the child runs it heartbeats (renewing the
lease, noticing `studio runs stop`), enforces `--max-duration`, tees output, samples system
metrics and checkpoints mutable artifacts. Used alike by `studio run` and by workers.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from studio.context import Context
from studio.entities import Experiment, Status
from studio.exceptions import ConflictError, StoreError
from studio.runner.checkpoint import Checkpointer
from studio.runner.collectors import output_metrics_logger, start_sampler
from studio.runner.lease import LeaseKeeper
from studio.runner.process import (
    ExitWaiter,
    Prestarted,
    Signals,
    die_with_parent_fn,
    kill_tree,
    signal_group,
    with_reaper,
)
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
        if self.returncode == 0 and self.status == Status.FAILED:  # results not saved
            return 1
        return 128 - self.returncode if self.returncode < 0 else self.returncode


class Executor:
    def __init__(self, ctx: Context, worker: str, stop_grace: float = 10.0) -> None:
        self.ctx = ctx
        self.worker = worker
        self.stop_grace = stop_grace
        self.handback_on_sigterm = False

    def run(self, exp: Experiment, launch: Launch, prestarted: Prestarted | None = None) -> Outcome:
        """Supervise `launch` to its outcome. `prestarted`: a reaper started while the run was
        being prepared (its interpreter start then costs the run nothing); used if it is
        still there, else the script starts under a new one. The caller cancels it if this
        raises first."""
        settings = self.ctx.settings
        meta = self.ctx.meta
        output_path = launch.output_file or launch.paths["output"]
        output_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(output_path, "ab")  # noqa: SIM115 - closed in finally
        attempt = exp.attempts

        def sink(seq: int, text: str) -> None:
            meta.append_output(exp.key, attempt, seq, text)

        tee = OutputTee(out, sink=sink, echo=launch.echo)
        metric_logger = output_metrics_logger(launch.paths.get("metrics"))
        if metric_logger is not None:
            tee.listeners.append(metric_logger.feed)
        checkpointer = Checkpointer(
            self.ctx,
            exp.key,
            exp.artifacts,
            launch.capture,
            ignore=launch.ignore,
            metric=exp.metric,
        )
        signals = Signals()
        child: subprocess.Popen[bytes] | None = None
        sampler = None
        stopping: dict[str, object] = {}
        reaper_argv = with_reaper(launch.argv)

        def terminate(reason: Status, why: str) -> None:
            if "status" not in stopping:
                stopping.update(status=reason, reason=why, since=time.monotonic(), step=0)
                if child is not None:
                    signal_group(
                        child,
                        signal.SIGINT if reason in (Status.STOPPED, Status.PRUNED) else signal.SIGTERM,
                    )

        def on_signal(signum: int) -> None:
            stopping.setdefault("signum", signum)
            if signum == signal.SIGINT:
                terminate(Status.STOPPED, "interrupted (Ctrl-C)")
            elif self.handback_on_sigterm:
                stopping["handback"] = True
                terminate(Status.QUEUED, "worker shutting down: experiment handed back")
            else:
                terminate(Status.KILLED, f"studio received {signal.Signals(signum).name}")

        # Before the script starts: a signal meanwhile is recorded and passed on, never lost.
        signals.on_signal = on_signal
        signals.install()
        if "status" in stopping and not stopping.get("handback"):
            # Asked to stop before the script was started: it is not started at all. (Sent to
            # a reaper that has not yet forked the script, which ignores it until then, the
            # signal could be lost, and the script run to its end.)
            signals.restore()
            out.close()
            if metric_logger is not None:
                metric_logger.close()
            signum = int(stopping["signum"])  # type: ignore[call-overload]
            outcome = Outcome(stopping["status"], -signum, f"{stopping['reason']} while starting")  # type: ignore[arg-type]
            meta.set_status(exp.key, outcome.status, expect=[Status.RUNNING], reason=outcome.reason,
                            worker=self.worker, returncode=-signum, time_finished=time.time())
            return outcome
        try:
            if prestarted is not None and reaper_argv is not None:
                try:
                    child = prestarted.launch(launch.argv, str(launch.cwd), launch.env)
                except OSError as exc:
                    log.debug("the reaper started ahead is gone (%s): starting another", exc)
            child = child or subprocess.Popen(
                reaper_argv or launch.argv,
                cwd=str(launch.cwd),
                env=launch.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=None if reaper_argv else die_with_parent_fn(),
            )
        except OSError as exc:
            signals.restore()
            out.write(f"studio: could not start {launch.argv[0]}: {exc}\n".encode())
            out.close()
            meta.set_status(
                exp.key, Status.FAILED, reason=f"could not start: {exc}", time_finished=time.time()
            )
            return Outcome(Status.FAILED, None, f"could not start: {exc}")

        proc = child
        if "status" in stopping:  # a signal came while it was being started
            signal_group(proc, signal.SIGINT if stopping["status"] == Status.STOPPED else signal.SIGTERM)
        exited = ExitWaiter(proc)
        try:
            tee.start([(proc.stdout, _binary(sys.stdout)), (proc.stderr, _binary(sys.stderr))])  # type: ignore[list-item]
            sampler = start_sampler(proc.pid, launch.paths.get("metrics"))
            checkpointer.start(settings.save_workspace_frequency)
            started = time.monotonic()
            next_beat = 0.0
            failing_since: float | None = None
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
                        if failing_since is not None:
                            log.warning("heartbeat of %s is back after %.0f s", exp.key, now - failing_since)
                            failing_since = None
                    except ConflictError:
                        log.warning("lost the lease on %s; stopping the local copy", exp.key)
                        stopping["lost"] = True
                        terminate(Status.LOST, "lease lost")
                    except Exception as exc:
                        # One line per outage (a network blip is expected); a traceback only for
                        # what is not a store/network error.
                        if failing_since is None:
                            failing_since = now
                            log.warning("heartbeat of %s failed; will retry every %g s: %s", exp.key,
                                        settings.heartbeat_seconds, exc, exc_info=not isinstance(exc, StoreError))
                if "since" in stopping:
                    self._escalate(proc, stopping, reaper_argv is not None)
        finally:
            signals.restore()
            exited.close()
            if proc.poll() is None:  # an exception in the loop: never leave the child behind
                kill_tree(proc, reaper_argv is not None, wait=5.0)
                proc.wait()
            tee.join(timeout=10)
            for closer in (getattr(sampler, "stop", None), getattr(metric_logger, "close", None)):
                if closer is None:
                    continue
                try:  # metrics are a by-product: they must never cost the run its outcome
                    closer()
                except Exception as exc:
                    log.warning("closing the metric collectors failed: %s", exc)
            checkpointer.stop()
            try:
                out.close()
            except OSError as exc:  # buffered output that a full disk refused
                tee.error = tee.error or exc

        returncode = proc.returncode
        if stopping.get("lost"):
            return Outcome(Status.LOST, returncode, "lease lost")
        # The final checkpoint can outlast a short lease: keep it alive meanwhile. Whoever lost
        # the lease must not record an outcome: another worker may be running the experiment.
        unsaved = [f"output file: {_short(tee.error)}"] if tee.error is not None else []
        with LeaseKeeper(self.ctx, exp.key, self.worker) as keeper:
            try:
                checkpointer.checkpoint()
            except Exception as exc:  # the run's outcome still gets recorded
                log.error("final checkpoint of %s failed: %s", exp.key, exc)
                unsaved.append(f"final checkpoint: {_short(exc)}")
            finally:
                checkpointer.release()
        if keeper.lost or not keeper.renew():
            log.warning("lost the lease on %s before recording its outcome", exp.key)
            return Outcome(Status.LOST, returncode, "lease lost")
        outcome = self._outcome(returncode, stopping)
        if unsaved and outcome.status != Status.QUEUED:
            outcome = _not_saved(outcome, "; ".join(unsaved))
        # Back to `queued` (a hand-back), set_status clears worker and lease in the same
        # transaction; a final status also records the exit code and the finish time.
        final = (
            {}
            if outcome.status == Status.QUEUED
            else {"returncode": returncode, "time_finished": time.time()}
        )
        meta.set_status(
            exp.key,
            outcome.status,
            expect=[Status.RUNNING],
            reason=outcome.reason,
            worker=self.worker,
            **final,
        )
        return outcome

    def _escalate(self, proc: subprocess.Popen[bytes], stopping: dict[str, object], reaper: bool) -> None:
        """SIGINT/SIGTERM first; SIGTERM then SIGKILL if the script ignores it."""
        waited = time.monotonic() - float(stopping["since"])  # type: ignore[arg-type]
        step = int(stopping["step"])  # type: ignore[call-overload]
        if step == 0 and waited > self.stop_grace:
            signal_group(proc, signal.SIGTERM)
            stopping["step"] = 1
        elif step == 1 and waited > 2 * self.stop_grace:
            kill_tree(proc, reaper)
            stopping["step"] = 2
        elif step == 2 and waited > 2 * self.stop_grace + 5:  # the reaper did not answer
            signal_group(proc, signal.SIGKILL)
            stopping["step"] = 3

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


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__)[:300]


def _not_saved(outcome: Outcome, what: str) -> Outcome:
    """What a run whose results were not all stored records: a script that succeeded is
    `failed` (its results are incomplete), any other outcome keeps its status; the reason
    says what was not saved."""
    if outcome.status == Status.FINISHED:
        return Outcome(Status.FAILED, outcome.returncode, f"the script finished but not all was saved: {what}")
    reason = f"{outcome.reason}; " if outcome.reason else ""
    return Outcome(outcome.status, outcome.returncode, f"{reason}not all was saved: {what}")


def _requested_stop(ctx: Context, key: str) -> tuple[Status, str]:
    """What a requested stop records: `stopped`, or what the requester asked for (a sweep's
    pruner asks for `pruned`, with its reason)."""
    try:
        current = ctx.meta.get_experiment(key)
    except Exception:
        return Status.STOPPED, "stop requested"
    return current.stop_status or Status.STOPPED, current.stop_reason or "stop requested"


def _binary(stream: object) -> object:
    return getattr(stream, "buffer", None)
