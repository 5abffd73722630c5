"""The sweep driver: ask -> submit -> wait (live summary, pruning) -> tell -> checkpoint.

One generation at a time. The first experiment is created by :func:`studio.api.run.prepare`
(which captures the workspace and environment once); every other one is a copy of that record
with its own key, point and array artifacts, so a 100-point grid costs one capture, not 100.
The stored workspace is the unmodified one: workers substitute the point into their own copy.

Local workers (``--num-workers``, or a sweep without ``--queue``) are started once for the whole
sweep with :func:`studio.runner.pool.start_worker` (the processes `drain` uses; a worker that
exits while work remains is replaced, as `drain` does) and stay idle between generations, so an
optimizer's generations do not each pay for starting workers. This thread polls the store: it
prints the live summary, feeds the pruner and applies the skip-generation timeout.

Interrupts (Ctrl-C, SIGTERM): with local workers, what is still queued or running is stopped
(workers die with the driver) and re-run by ``studio sweep resume``; on an external queue the
experiments keep going and the driver merely detaches. Either way the checkpoint is saved.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from studio.api.context import Context
from studio.api.run import RunOptions, experiment_paths, prepare
from studio.api.sweep_pool import LocalPool, sigterm_as_interrupt
from studio.api.sweep_report import ranked_rows
from studio.entities import ArtifactSpec, Experiment, Status
from studio.exceptions import NotFoundError
from studio.keys import new_key
from studio.search.fitness import ArtifactSeries, Objective, OutputSeries, final_values, seen_names
from studio.search.state import SweepState, TrialRecord

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
_RERUN = {Status.STOPPED.value, Status.KILLED.value, Status.LOST.value}
_INTERRUPTED = "sweep interrupted: re-run by `studio sweep resume`"


class SweepRunner:
    def __init__(self, ctx: Context, state: SweepState, plan: Any, reporter: Any, opts: RunOptions) -> None:
        self.ctx, self.state, self.plan, self.report, self.opts = ctx, state, plan, reporter, opts
        self.objective: Objective = plan.objective
        self.optimizer = plan.optimizer
        self.output = OutputSeries(ctx)
        self.series = ArtifactSeries(ctx)
        self.pruner = None
        if plan.pruner != "none":
            from studio.search.pruning import TrialPruner

            self.pruner = TrialPruner(plan.pruner, self.objective, plan.config)
        self.template: Experiment | None = None
        self.pool = LocalPool(ctx, state.queue, max(1, state.num_workers)) \
            if state.local_queue or state.num_workers > 0 else None

    # -- the loop ------------------------------------------------------------------------
    def run(self, resumed: bool = False) -> int:
        try:
            with sigterm_as_interrupt():
                try:
                    if resumed:
                        self._prepare_resume()
                    self._loop()
                except KeyboardInterrupt:
                    return self._interrupted()
                finally:
                    if self.pool is not None:
                        self.pool.stop()
        except KeyboardInterrupt:  # a second Ctrl-C while stopping: leave at once
            self.state.save(self.ctx.meta)
            return 130
        return self.finish()

    def _loop(self) -> None:
        state = self.state
        if self.pool is not None:
            self.pool.ensure_running()  # they start up while the workspace is captured
        while True:
            trials = state.generation_trials(state.generation)
            if not trials:
                reason = self._stop_reason()
                if reason is not None:
                    state.stop_reason = reason
                    break
                batch = self.optimizer.ask(self.plan.popsize)
                if not batch:
                    state.stop_reason = "the optimizer has no more points"
                    break
                trials = self._submit(batch)
            else:
                trials = self._resubmit_interrupted(trials)
            self._wait(trials)
            fitness = [(t.params, self.objective.fitness(t.value) if t.status == "finished" else None)
                       for t in trials]
            self.optimizer.tell(fitness)
            state.generation += 1
            state.optimizer_state = self.optimizer.state()
            state.save(self.ctx.meta)
        state.finished = True
        state.save(self.ctx.meta)

    def _stop_reason(self) -> str | None:
        plan, state = self.plan, self.state
        if self.optimizer.done:
            return "every point was tried" if state.optimizer == "grid" else "the optimizer is done"
        if plan.generations is not None and state.generation >= plan.generations:
            return f"{plan.generations} generation(s) done"
        target = plan.config.target
        best = self._best()
        if target is not None and best is not None and not self.objective.better(target, best[1]):
            return f"target {self.objective.name} = {target:g} reached"
        return None

    # -- submission ----------------------------------------------------------------------
    def _submit(self, batch: list[dict[str, Any]]) -> list[TrialRecord]:
        records = []
        for params in batch:
            exp = self._create(params)
            records.append(TrialRecord(exp.key, params, self.state.generation))
            self.state.trials.append(records[-1])
            if len(records) % 1000 == 0:
                self.state.save(self.ctx.meta)
        self.state.optimizer_state = self.optimizer.state()
        self.state.save(self.ctx.meta)
        return records

    def _create(self, params: dict[str, Any]) -> Experiment:
        arrays = {r.name: params[r.name] for r in self.plan.space.arrays}
        with tempfile.TemporaryDirectory(prefix="studio-sweep-") as tmp:
            files = _write_arrays(Path(tmp), arrays)
            if self.template is None and self.state.template_key is None:
                opts = self.opts
                once = list(opts.capture_once) + [f"{path}:{name}" for name, path in files.items()]
                from dataclasses import replace

                exp = prepare(self.ctx, replace(opts, params=dict(params), capture_once=once))
                self.template = exp
                self.state.template_key = exp.key
                self.state.run_options["workspace_tree"] = exp.artifacts["workspace"].tree
                return exp
            return self._clone(params, files)

    def _template(self) -> Experiment:
        if self.template is None:
            template = self.ctx.meta.get_experiment(str(self.state.template_key))
            workspace = template.artifacts["workspace"]
            # The template may have run since: its workspace is then the substituted copy.
            tree = self.state.run_options.get("workspace_tree") or workspace.tree
            arts = dict(template.artifacts)
            arts["workspace"] = workspace.replace(tree=tree)
            self.template = template.replace(artifacts=arts)
        return self.template

    def _clone(self, params: dict[str, Any], files: dict[str, Path]) -> Experiment:
        template = self._template()
        key = new_key()
        paths = experiment_paths(self.ctx, key)
        artifacts: dict[str, ArtifactSpec] = {}
        for tag, art in template.artifacts.items():
            if tag in paths:
                artifacts[tag] = ArtifactSpec(tag=tag, mutable=True, local_path=str(paths[tag]))
            elif tag in files:
                stored = self.ctx.objects_for(key).put_tree(files[tag])
                artifacts[tag] = art.replace(tree=stored.tree, size=stored.size, files=stored.files,
                                             updated=time.time(), local_path=None)
            elif art.mutable and tag != "workspace":
                artifacts[tag] = art.replace(tree=None, size=0, files=0, updated=None)
            else:
                artifacts[tag] = art
        exp = Experiment(
            key=key, project=template.project, owner=template.owner, script=template.script,
            args=template.args, module=template.module, status=Status.QUEUED, queue=self.state.queue,
            params=dict(params), env=template.env, python_version=template.python_version,
            pythonenv=template.pythonenv, python_pkgs=template.python_pkgs, git=template.git,
            host=template.host, resources=template.resources, metric=template.metric,
            max_duration=template.max_duration, lifetime=template.lifetime, time_added=time.time(),
            sweep=self.state.project, artifacts=artifacts,
        )
        return self.ctx.meta.create_experiment(exp)

    # -- resume --------------------------------------------------------------------------
    def _prepare_resume(self) -> None:
        """Stop queued experiments of this sweep that no checkpoint knows (a crash mid-submit)."""
        from studio.entities import ExperimentQuery

        known = {t.key for t in self.state.trials}
        page = self.ctx.meta.query(ExperimentQuery(project=self.state.project, status=(Status.QUEUED,)))
        for exp in page.items:
            if exp.key not in known:
                with contextlib.suppress(Exception):
                    self.ctx.meta.request_stop(exp.key)
        done = [t for t in self.state.trials if t.generation < self.state.generation]
        self._replay_pruner(done)
        n = len(self.state.generation_trials(self.state.generation))
        self.report.message(f"resuming sweep {self.state.project} at generation {self.state.generation + 1} "
                            f"({len(done)} trial(s) done, {n} pending)")

    def _resubmit_interrupted(self, trials: list[TrialRecord]) -> list[TrialRecord]:
        exps = {e.key: e for e in self.ctx.meta.get_experiments([t.key for t in trials])}
        for t in trials:
            exp = exps.get(t.key)
            if exp is not None and exp.status.value not in _RERUN:
                continue
            if exp is not None and exp.status.terminal and t.status == "finished":
                continue
            new = self._create(t.params)
            t.retried.append(t.key)
            t.key, t.status, t.value = new.key, "queued", None
        self.state.save(self.ctx.meta)
        return trials

    def _replay_pruner(self, done: list[TrialRecord]) -> None:
        if self.pruner is None:
            return
        exps = self.ctx.meta.get_experiments([t.key for t in done])
        for exp in exps:
            trial = self.state.trial(exp.key)
            self.pruner.replay(exp.key, self._points(exp), trial.value if trial else None,
                               pruned=exp.status == Status.PRUNED)

    # -- waiting -------------------------------------------------------------------------
    def _wait(self, trials: list[TrialRecord]) -> None:
        keys = [t.key for t in trials]
        skip_since: float | None = None
        last_line = ""
        ended: dict[str, Experiment] = {}  # terminal experiments never change: read them once
        while True:
            fresh = self.ctx.meta.get_experiments([k for k in keys if k not in ended])
            ended.update((e.key, e) for e in fresh if e.status.terminal)
            by_key = {**ended, **{e.key: e for e in fresh}}
            exps = [by_key[k] for k in keys if k in by_key]
            for exp in fresh:
                if exp.status == Status.RUNNING and self.pruner is not None:
                    self._maybe_prune(exp)
            finished = [e for e in exps if e.status.terminal]
            self._record([t for t in trials if t.key in by_key], by_key)
            line = self._summary()
            if line != last_line:
                self._tell_counts()
                self.report.progress(line)
                last_line = line
            if len(finished) == len(keys) or len(exps) < len(keys) and len(finished) == len(exps):
                break
            skip_since = self._skip_generation(trials, finished, exps, skip_since)
            if self.pool is not None and not self.pool.ensure_running():
                self._stop_all([e.key for e in exps if not e.status.terminal], "local workers keep dying")
            time.sleep(POLL_SECONDS)
        exps = self.ctx.meta.get_experiments(keys)
        self._record(trials, {e.key: e for e in exps}, final=True)
        self._tell_counts()
        self.report.progress(self._summary(), final=True)
        self.state.save(self.ctx.meta)

    def _skip_generation(self, trials: list[TrialRecord], finished: list[Experiment], exps: list[Experiment],
                         since: float | None) -> float | None:
        cfg = self.plan.config
        if cfg.skip_gen_thresh >= 1.0 or len(finished) < math.ceil(cfg.skip_gen_thresh * len(trials)):
            return None
        since = since or time.monotonic()
        if time.monotonic() - since >= cfg.timeout:
            rest = [e.key for e in exps if not e.status.terminal]
            self._stop_all(rest, f"skipped: {len(finished)} of {len(trials)} trials finished and the "
                                 f"generation timeout of {cfg.timeout:g}s passed")
        return since

    def _stop_all(self, keys: list[str], reason: str) -> None:
        for key in keys:
            with contextlib.suppress(NotFoundError):
                _request_stop(self.ctx, key, Status.STOPPED, reason)

    def _maybe_prune(self, exp: Experiment) -> None:
        assert self.pruner is not None
        decision = self.pruner.update(exp.key, self._points(exp))
        if decision is not None:
            _request_stop(self.ctx, exp.key, Status.PRUNED, decision.reason)
            self.report.message(f"{exp.key}: {decision.reason}")

    def _points(self, exp: Experiment) -> list[tuple[int, float]]:
        name = self.objective.name
        from_series = self.series.read(exp).get(name)
        if from_series:
            return from_series
        return list(enumerate(self.output.update(exp).get(name, [])))

    def _record(self, trials: list[TrialRecord], by_key: dict[str, Experiment], final: bool = False) -> None:
        ended = [by_key[t.key] for t in trials
                 if t.key in by_key and by_key[t.key].status.terminal and (final or t.status != by_key[t.key].status.value)]
        if not ended and not final and all(t.status == by_key[t.key].status.value for t in trials if t.key in by_key):
            return
        values = final_values(self.ctx, self.objective, ended, self.output) if ended else {}
        for t in trials:
            exp = by_key.get(t.key)
            if exp is None:
                t.status = "deleted" if final else t.status
                continue
            if exp.key in values:
                t.value = values[exp.key]
                if self.pruner is not None and t.status != exp.status.value:
                    self.pruner.finish(exp.key, self._points(exp), t.value, pruned=exp.status == Status.PRUNED)
                if exp.metric and exp.metric_value is None and t.value is not None:
                    with contextlib.suppress(Exception):  # listings sort by it even if nothing folded it
                        self.ctx.meta.update_experiment(exp.key, metric_value=t.value)
            t.status = exp.status.value

    # -- the end -------------------------------------------------------------------------
    def _interrupted(self) -> int:
        state = self.state
        pending = [t.key for t in state.generation_trials(state.generation)]
        if self.pool is not None:
            self.report.message("interrupted: stopping the sweep's experiments and local workers ...")
            self._stop_all(pending, _INTERRUPTED)
            deadline = time.monotonic() + max(30.0, 3 * self.ctx.settings.heartbeat_seconds)
            while time.monotonic() < deadline and self.pool.alive():
                exps = self.ctx.meta.get_experiments(pending)
                if all(e.status.terminal for e in exps):
                    break
                time.sleep(POLL_SECONDS)
            self._record(state.generation_trials(state.generation),
                         {e.key: e for e in self.ctx.meta.get_experiments(pending)})
        else:
            self.report.message(f"detached: the experiments stay on queue {state.queue}")
        state.save(self.ctx.meta)
        self.report.message(f"sweep {state.project} interrupted; continue with `studio sweep resume {state.project}`")
        return 130

    def finish(self) -> int:
        rows = ranked_rows(self.ctx, self.state, self.objective)
        self.report.ranking(self.state, self.objective, rows)
        explicit = self.objective.explicit or self.state.optimizer != "grid"
        if explicit and rows and all(r["value"] is None for r in rows):
            exps = self.ctx.meta.get_experiments([r["key"] for r in rows])
            names = seen_names(self.ctx, exps, self.output)
            what = f"metric {self.objective.name!r}" if self.objective.explicit else "'fitness: <float>' output"
            self.report.warn(f"{what} never appeared in any trial; metric names that did: "
                             f"{', '.join(names) if names else 'none'}")
        return 0 if any(r["status"] == "finished" for r in rows) else 1

    def _best(self) -> tuple[TrialRecord, float] | None:
        best: tuple[TrialRecord, float] | None = None
        for t in self.state.trials:
            if t.status == "finished" and t.value is not None and (best is None or self.objective.better(t.value, best[1])):
                best = (t, t.value)
        return best

    def _tell_counts(self) -> None:
        """Trials done of the total, for a reporter that draws a bar (`trials` is optional)."""
        tell = getattr(self.report, "trials", None)
        if tell is not None:
            total = self._total()
            done = sum(1 for t in self.state.trials if t.status not in ("queued", "running"))
            tell(done, total if isinstance(total, int) else None)

    def _summary(self) -> str:
        counts: dict[str, int] = {}
        for t in self.state.trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        done = sum(n for s, n in counts.items() if s not in ("queued", "running"))
        total = self._total()
        parts = [f"{counts[s]} {s}" for s in ("running", "failed", "pruned", "stopped") if counts.get(s)]
        line = f"sweep {self.state.project}: {done}/{total} done" + (f" ({', '.join(parts)})" if parts else "")
        best = self._best()
        if best is not None:
            params = ", ".join(f"{k}={_short(v)}" for k, v in best[0].params.items())
            line += f", best {self.objective.name} {best[1]:.6g} ({params})"
        return line

    def _total(self) -> int | str:
        grid = getattr(self.optimizer, "size", None)
        if grid is not None:
            return int(grid)
        if self.plan.generations is not None:
            return max(len(self.state.trials), self.plan.generations * self.plan.popsize)
        return "?"


def _request_stop(ctx: Context, key: str, status: Status, reason: str) -> None:
    """Ask the supervisor to stop ``key``, recording ``status`` (pruned / stopped) and why."""
    ctx.meta.request_stop(key, status=status, reason=reason)


def _write_arrays(folder: Path, arrays: dict[str, Any]) -> dict[str, Path]:
    if not arrays:
        return {}
    import numpy as np

    files = {}
    for name, values in arrays.items():
        path = folder / f"{name}.npy"
        np.save(path, np.asarray(values, dtype=float))
        files[name] = path
    return files


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return f"[{len(value)} values]"
    return str(value)
