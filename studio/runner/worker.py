"""The worker loop: `studio worker --queue Q` (alias `studio remote worker`).

    claim (lease) -> heartbeat while preparing -> materialize into a directory of our own
    -> Python environment -> executor (heartbeats, stop, max-duration, output, checkpoints)
    -> final status -> next

Each experiment runs in `$STUDIOML_HOME/workers/<worker-id>/<key>`, filled from the object
store only (never the submitter's folders, even on the same machine), removed afterwards:
everything worth keeping has been captured into the stores by then.

Shutdown: SIGTERM or Ctrl-C while idle or preparing exits at once (a claimed but not yet
started experiment is handed back: `queued` again, worker and lease cleared); during a run,
SIGTERM makes the executor stop the script and hand the experiment back, Ctrl-C stops it as
`stopped`; either way the worker exits afterwards. A worker that dies without any of this
(kill -9, power loss) stops heartbeating; another worker's `requeue_expired` puts its
experiment back on the queue once the lease lapses.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.context import Context
from studio.entities import Experiment, Status
from studio.exceptions import AccessError, ConflictError, NotFoundError, StudioError
from studio.queue.claimer import Claimer, requeue_interval
from studio.runner.executor import Executor, Outcome
from studio.runner.lease import LeaseKeeper
from studio.runner.resources import WorkerResources, detect, with_overrides
from studio.runner.salvage import LapseWatcher, salvage

log = logging.getLogger(__name__)


@dataclass
class WorkerOptions:
    queue: str
    single_run: bool = False
    idle_timeout: float | None = None  # exit after this long without work; None: never
    resources: dict[str, Any] = field(default_factory=dict)  # --cpus/--gpus/--ram/--hdd overrides
    echo: bool = False  # copy the experiments' output to this terminal
    keep_workdirs: bool = False
    worker_id: str | None = None
    transfers: bool = False  # artifact transfers of 1 MiB+: a bar on a terminal, else a line via on_event


class Worker:
    def __init__(self, ctx: Context, opts: WorkerOptions,
                 on_event: Callable[[str], None] | None = None) -> None:
        from studio.runner.launch import worker_id

        self.ctx = ctx
        self.opts = opts
        self.id = opts.worker_id or worker_id()
        self.resources: WorkerResources = with_overrides(detect(ctx.settings.home), opts.resources)
        self.root = ctx.settings.home / "workers" / _safe(self.id)
        self.claimer = Claimer(ctx.meta, ctx.settings, opts.queue, self.id, self.resources.as_claim(),
                               on_retired=self._retired)
        self.on_event = on_event or (lambda text: log.info("%s", text))
        self.stopping = False
        self.done: list[tuple[str, Outcome]] = []
        if opts.transfers:
            from studio.progress import TransferLog

            ctx.objects.observer = TransferLog(self.on_event, label=self._transfer_label)

    def _transfer_label(self, path: Path) -> str:
        """`KEY/workspace` for what lies in this worker's run directories."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.name

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> int:
        """Work until idle for `idle_timeout`, one experiment with `single_run`, or a signal."""
        self._presence_or_refusal()
        old = self._install_signals()
        r = self.resources
        self.on_event(
            f"worker {self.id} on queue {self.opts.queue}: {r.cpus} cpus, {r.gpus} gpus, "
            f"{r.ram / 2**30:.1f} GiB ram, {r.hdd / 2**30:.1f} GiB free disk"
        )
        try:
            self.claimer.sweep(force=True)
        except StudioError as exc:
            log.warning("could not check for lapsed leases: %s", exc)
        self._remove_stale_dirs()
        # While this worker runs an experiment its claimer does not sweep: this does, so a
        # lost run anywhere shows `lost` within a fraction of the lease.
        watcher = LapseWatcher(self.ctx, requeue_interval(self.ctx.settings), after=self._remove_stale_dirs)
        watcher.start()
        try:
            while not self.stopping:
                exp = self.claimer.wait_claim(self.opts.idle_timeout, self._idle_tick)
                if exp is None:
                    break
                self._presence("busy", exp.key, force=True)
                outcome = self.run_one(exp)
                self._presence("idle", force=True)
                self.done.append((exp.key, outcome))
                self.on_event(f"{exp.key}: {outcome.status.value}" + (f" ({outcome.reason})" if outcome.reason else ""))
                if self.opts.single_run:
                    break
        finally:
            watcher.close()
            for sig, handler in old.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]
            try:
                self.ctx.meta.worker_gone(self.id)
            except StudioError as exc:
                log.warning("could not remove worker %s from the workers list: %s", self.id, exc)
        self.on_event(f"worker {self.id} exiting after {len(self.done)} experiment(s)")
        return 0

    #: Seconds between presence updates while idle (a worker unseen for PRESENCE_TTL is gone).
    PRESENCE_EVERY = 10.0

    def _presence(self, state: str, experiment: str | None = None, force: bool = False,
                  refusal: bool = False) -> None:
        """Tell the store this worker serves its queue (what `studio queue list` shows)."""
        import socket

        now = time.monotonic()
        if not force and now - getattr(self, "_seen_at", -1e9) < self.PRESENCE_EVERY:
            return
        self._seen_at = now
        try:
            self.ctx.meta.worker_seen(self.id, self.opts.queue, state, experiment, host=socket.gethostname())
        except StudioError as exc:  # presence is informative: never stop working over it
            if refusal and isinstance(exc, AccessError):
                raise
            log.warning("could not record worker %s as %s: %s", self.id, state, exc)

    def _presence_or_refusal(self) -> None:
        """The first presence, before anything else: a store that refuses this caller as a
        worker (a team server and a user's token) ends the command with one clear line."""
        try:
            self._presence("idle", force=True, refusal=True)
        except AccessError as exc:
            raise AccessError(
                f"{exc}; a worker needs a worker (or admin) token: on the server "
                "`studio users add NAME --worker`, then `studio login URL` with that token"
            ) from None

    def _idle_tick(self) -> bool:
        self._presence("idle")
        return self.stopping

    def _retired(self, keys: list[str]) -> None:
        salvage(self.ctx, keys)
        self._remove_stale_dirs()

    def _remove_stale_dirs(self) -> None:
        """Run directories left by workers of this host that died (kill -9, power loss). What
        a run that is now `lost` left is stored first (runner.salvage); the directory of a run
        whose lease has not lapsed yet is kept until it has (the watcher salvages it then)."""
        import socket

        import psutil

        prefix = _safe(socket.gethostname()) + "_"
        try:
            entries = list(self.root.parent.iterdir())
        except OSError:
            return
        for entry in entries:
            pid = entry.name[len(prefix):].split("_", 1)[0]
            if entry == self.root or not entry.name.startswith(prefix) or not pid.isdigit():
                continue
            if psutil.pid_exists(int(pid)):
                continue
            try:
                keys = [d.name for d in entry.iterdir() if d.is_dir()]
                mine = [e for e in self.ctx.meta.get_experiments(keys) if _safe(e.worker or "") == entry.name]
            except (OSError, StudioError):
                continue
            if any(e.status == Status.RUNNING for e in mine):
                continue  # its lease has not lapsed yet: salvaged and removed once it has
            salvage(self.ctx, keys)
            shutil.rmtree(entry, ignore_errors=True)

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handle(signum: int, frame: object) -> None:
            self.stopping = True

        return {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    # -- one experiment ----------------------------------------------------------------
    def run_one(self, exp: Experiment) -> Outcome:
        from studio.runner.process import Prestarted
        from studio.runner.remote import stored_launch
        from studio.runner.venv import InstallError, prepare_env

        workdir = self.root / exp.key
        # Its interpreter starts while the workspace is materialized and the environment checked.
        reaper = Prestarted.start()
        shutil.rmtree(workdir, ignore_errors=True)
        try:
            with LeaseKeeper(self.ctx, exp.key, self.id) as beat:
                try:
                    env = prepare_env(self.ctx.settings.home, exp.pythonenv, exp.python_pkgs)
                    if env.created and env.notes:
                        self.on_event(f"{exp.key}: {env.notes[-1].removeprefix('studio: ')}")
                    launch = stored_launch(self.ctx, exp, workdir, python=env.python, echo=self.opts.echo,
                                           extra_env=self.resources.child_env(exp.resources))
                except InstallError as exc:
                    return self._fail(exp, workdir, f"could not install the Python environment: {exc}",
                                      exc.output)
                except (StudioError, OSError) as exc:
                    return self._fail(exp, workdir, f"could not prepare the experiment: {exc}", "")
            if beat.lost:
                return Outcome(Status.LOST, None, "lease lost while preparing")
            if beat.stop_requested:
                current = self.ctx.meta.get_experiment(exp.key)  # a sweep's pruner asks for `pruned`
                return self._finish_early(exp, current.stop_status or Status.STOPPED,
                                          current.stop_reason or "stop requested")
            if self.stopping:
                return self.hand_back(exp)
            if env.notes:
                _append_text(launch.paths["output"], "".join(n if n.endswith("\n") else n + "\n" for n in env.notes))
            executor = Executor(self.ctx, self.id)
            executor.handback_on_sigterm = True
            outcome = executor.run(exp, launch, prestarted=reaper)
            if outcome.status == Status.QUEUED or (outcome.reason or "").startswith("interrupted"):
                self.stopping = True  # SIGTERM (handed back) or Ctrl-C reached us through the executor
            return outcome
        except Exception as exc:
            # The store (or studio itself) failed mid-way: this worker carries on, and the lease
            # lapses so that another attempt is made (up to max_attempts, then `lost`).
            log.error("experiment %s: %s", exp.key, exc, exc_info=not isinstance(exc, StudioError))
            return Outcome(Status.LOST, None, str(exc))
        finally:
            if reaper is not None:
                reaper.cancel()  # unused (the experiment did not start): it exits
            if not self.opts.keep_workdirs:
                shutil.rmtree(workdir, ignore_errors=True)

    def hand_back(self, exp: Experiment) -> Outcome:
        """Give a claimed experiment back to the queue: queued again, worker and lease cleared."""
        reason = "worker shutting down: experiment handed back"
        try:
            self.ctx.meta.set_status(exp.key, Status.QUEUED, expect=[Status.RUNNING], reason=reason,
                                     worker=self.id)
        except (ConflictError, NotFoundError):
            pass
        return Outcome(Status.QUEUED, None, reason)

    def _finish_early(self, exp: Experiment, status: Status, reason: str) -> Outcome:
        try:
            self.ctx.meta.set_status(exp.key, status, expect=[Status.RUNNING], reason=reason, worker=self.id,
                                     time_finished=time.time())
        except (ConflictError, NotFoundError):
            pass
        return Outcome(status, None, reason)

    def _fail(self, exp: Experiment, workdir: Path, reason: str, detail: str) -> Outcome:
        """The experiment cannot start: the message (and pip's output) becomes its output."""
        from studio.entities import ArtifactSpec

        text = f"studio: {reason}\n" + (detail if detail.endswith("\n") or not detail else detail + "\n")
        meta = self.ctx.meta
        try:
            meta.append_output(exp.key, exp.attempts, 0, text)
            out = workdir / "output.log"
            _append_text(out, text)
            stored = self.ctx.objects_for(exp.key).put_tree(out)
            current = exp.artifacts.get("output") or ArtifactSpec(tag="output")
            meta.put_artifact(exp.key, current.replace(tree=stored.tree, size=stored.size, files=stored.files,
                                                       updated=time.time()))
        except Exception:
            log.warning("could not record the output of %s", exp.key, exc_info=True)
        short = reason.splitlines()[0][:500]
        try:
            meta.set_status(exp.key, Status.FAILED, expect=[Status.RUNNING], reason=short, worker=self.id,
                            time_finished=time.time())
        except (ConflictError, NotFoundError):
            pass
        return Outcome(Status.FAILED, None, short)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _append_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


def run_worker(ctx: Context, opts: WorkerOptions, on_event: Callable[[str], None] | None = None) -> int:
    """Library entry point of `studio worker`."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return Worker(ctx, opts, on_event).run()
