"""Hyperparameter sweeps: `studio run -hp ...` / `--optimizer`, `studio sweep resume|show`.

A sweep is one project (named after the script unless ``--project``) holding one experiment per
point. Points come from an optimizer in generations (the plain grid is one generation holding
every point); each experiment records its point in ``params`` and is submitted to the queue
given, or to a local queue drained by ``--num-workers`` local workers (default 1). The worker
substitutes the point into its own copy of the entry script (upstream's rule) and hands it to
the script as ``STUDIOML_PARAMS`` (``studio.params()``); array ranges become ``.npy`` artifacts.

Everything that can be wrong with the input (specs, grid size, optimizer name or plugin,
``optimizer:`` config keys, pruner, metric, script path, artifact flags) is checked before the
first experiment is written, so bad input leaves no experiment row and no sweep state.

The driver loop lives in :mod:`studio.api.sweep_loop`; checkpoints in :mod:`studio.search.state`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.api.context import Context
from studio.api.run import RunOptions, resolve_target
from studio.entities import DEFAULT_ARTIFACTS
from studio.exceptions import ConflictError, HyperParamError, UsageError
from studio.search.fitness import Objective
from studio.search.grammar import parse_hyperparam, split_assignment
from studio.search.optimizers import Optimizer, OptimizerConfig, SearchSpace, load_optimizer
from studio.search.pruning import check_pruner
from studio.search.ranges import parse_range
from studio.search.state import SweepState, load_state, sweep_exists

log = logging.getLogger(__name__)

#: RunOptions fields a resumed sweep replays for the experiments it still has to create.
_REPLAYED = ("args", "module", "capture_once", "capture", "reuse", "max_duration", "lifetime",
             "python_pkgs", "resources")
DEFAULT_GENERATIONS = 10


@dataclass
class SweepPlan:
    """Everything validated, nothing written yet."""

    space: SearchSpace
    objective: Objective
    config: OptimizerConfig
    optimizer: Optimizer
    pruner: str
    popsize: int
    generations: int | None  # None: until the optimizer is done (grid)


def build_space(hyperparams: list[str], optimizer: str | None, force: bool) -> SearchSpace:
    """Grid grammar for the grid; with another optimizer, ``min:max[:len]:flags`` ranges
    (``a,b,c`` lists stay categorical, a single value stays fixed)."""
    if not hyperparams:
        raise UsageError("a sweep needs at least one -hp/--hyperparam NAME=SPEC, e.g. -hp lr=0.01:0.01:0.1")
    grid_mode = optimizer is None or optimizer.lower() == "grid"
    grid = []
    ranges = []
    seen: set[str] = set()
    for text in hyperparams:
        name, spec = split_assignment(text)
        if name in seen:
            raise HyperParamError(f"bad hyperparameter {text!r}: {name!r} is given more than once; give each name once")
        seen.add(name)
        if grid_mode or "," in spec or ":" not in spec:
            grid.append(parse_hyperparam(text, force=force))
        else:
            ranges.append(parse_range(text))
    from studio.search.grammar import grid_size

    if grid_mode:
        grid_size(grid, force=force)
    return SearchSpace(grid=tuple(grid), ranges=tuple(ranges))


def plan_sweep(ctx: Context, opts: RunOptions, hyperparams: list[str], optimizer: str | None, force: bool,
               pruner: str | None, num_workers: int, config: dict[str, Any] | None = None) -> SweepPlan:
    resolve_target(opts)  # the script exists (or the module name is valid)
    objective = Objective.parse(opts.metric)
    pruner_name = check_pruner(pruner)
    space = build_space(hyperparams, optimizer, force)
    cfg = OptimizerConfig.from_mapping(ctx.settings.optimizer if config is None else config)
    _check_array_tags(space, opts)
    opt = load_optimizer(optimizer, space, cfg, cwd=opts.cwd)
    popsize = cfg.popsize or opt.default_popsize(max(1, num_workers))
    grid_like = optimizer is None or optimizer.lower() == "grid"
    generations = cfg.generations if cfg.generations is not None else (None if grid_like else DEFAULT_GENERATIONS)
    if pruner_name != "none":
        from studio.search.pruning import TrialPruner

        TrialPruner(pruner_name, objective, cfg)  # Optuna installed?
    return SweepPlan(space, objective, cfg, opt, pruner_name, popsize, generations)


def unused_hyperparams(opts: RunOptions, space: SearchSpace) -> list[str]:
    """Scalar hyperparameters that substitution would never write into the entry script (so
    they change nothing), unless the script reads its values explicitly."""
    if opts.module or "::" in opts.script:
        return []
    target = resolve_target(opts)
    try:
        text = (target.workspace / target.script).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if any(marker in text for marker in ("studio.params", "params()", "STUDIOML_PARAMS")):
        return []
    from studio.search.substitute import substitute_script_counted

    arrays = {r.name for r in space.arrays}
    _, counts = substitute_script_counted(text, {n: 0 for n in space.names if n not in arrays})
    return [name for name, count in counts.items() if count == 0]


def _check_array_tags(space: SearchSpace, opts: RunOptions) -> None:
    from studio.api.specs import parse_capture, parse_reuse

    taken = set(DEFAULT_ARTIFACTS) | {"metrics", "workspace"}
    taken |= {parse_capture(s, "--capture").tag for s in opts.capture}
    taken |= {parse_capture(s, "--capture-once").tag for s in opts.capture_once}
    taken |= {parse_reuse(s).newtag for s in opts.reuse}
    for r in space.arrays:
        if r.name in taken:
            raise UsageError(f"array hyperparameter {r.name!r} would be stored as artifact {r.name!r}, "
                             "which is taken: rename the hyperparameter")


def project_name(ctx: Context, opts: RunOptions) -> str:
    """``--project``, or the script's name made unique among existing sweeps and projects."""
    if opts.project:
        if sweep_exists(ctx.meta, ctx.settings.home, opts.project):
            raise ConflictError(f"sweep {opts.project!r} already exists: continue it with "
                                f"`studio sweep resume {opts.project}` or choose another --project")
        return opts.project
    base = Path(opts.script.replace("::", ".")).stem if not opts.module else opts.script.split(".")[-1]
    base = base or "sweep"
    existing = {str(p.get("name")) for p in ctx.meta.projects()}
    name, n = base, 1
    while name in existing or sweep_exists(ctx.meta, ctx.settings.home, name):
        n += 1
        name = f"{base}-{n}"
    return name


def run_sweep(ctx: Context, opts: RunOptions, hyperparams: list[str], optimizer: str | None = None,
              num_workers: int | None = None, force: bool = False, pruner: str | None = None,
              reporter: Any = None) -> int:
    """Validate, then run the sweep to the end (or an interrupt). Returns the exit code."""
    from studio.api.sweep_loop import SweepRunner
    from studio.api.sweep_report import SweepReporter

    if num_workers is not None and num_workers < 1:
        raise UsageError("--num-workers must be at least 1")
    local = not opts.queue
    workers = num_workers if num_workers is not None else (1 if local else 0)
    plan = plan_sweep(ctx, opts, hyperparams, optimizer, force, pruner, workers)
    project = project_name(ctx, opts)
    reporter = reporter or SweepReporter()
    for name in unused_hyperparams(opts, plan.space):
        reporter.warn(f"hyperparameter {name!r} never appears on the right of an '=' in {opts.script}, so every "
                      f"trial runs the same code: use it there (e.g. x = {name}) or read studio.params()")
    from studio.api.run import check_names

    check_names(project=project, queue=opts.queue, metric=opts.metric, owner=ctx.settings.owner)
    if local:
        from studio.api.submit import LOCAL_QUEUE_PREFIX
        from studio.keys import new_key

        queue = LOCAL_QUEUE_PREFIX + new_key()
    else:
        queue = str(opts.queue)
    state = SweepState(
        project=project,
        script=opts.script,
        args=list(opts.args),
        cwd=str(opts.cwd.resolve()),
        hyperparams=list(hyperparams),
        optimizer=(optimizer or "grid"),
        metric=opts.metric,
        pruner=plan.pruner,
        queue=queue,
        local_queue=local,
        num_workers=workers,
        force=force,
        config=plan.config.to_dict(),
        run_options={name: _jsonable(getattr(opts, name)) for name in _REPLAYED},
        popsize=plan.popsize,
    )
    runner = SweepRunner(ctx, state, plan, reporter, opts=_sweep_options(opts, state))
    return runner.run()


def resume_sweep(ctx: Context, project: str, num_workers: int | None = None, reporter: Any = None) -> int:
    """Continue an interrupted sweep from its checkpoint. Returns the exit code."""
    from studio.api.sweep_loop import SweepRunner
    from studio.api.sweep_report import SweepReporter

    state = load_state(ctx.meta, ctx.settings.home, project)
    report = reporter or SweepReporter()
    if num_workers is not None:
        if num_workers < 1:
            raise UsageError("--num-workers must be at least 1")
        state.num_workers = num_workers
    opts = _sweep_options(_options_from_state(state), state)
    optimizer = None if state.optimizer == "grid" else state.optimizer
    plan = plan_sweep(ctx, opts, state.hyperparams, optimizer, state.force, state.pruner,
                      max(1, state.num_workers), config=state.config)
    plan.popsize = state.popsize or plan.popsize
    if state.optimizer_state:
        plan.optimizer.restore(state.optimizer_state)
    runner = SweepRunner(ctx, state, plan, report, opts=opts)
    if state.finished:
        report.message(f"sweep {project} is finished ({state.stop_reason or 'done'}); nothing to resume")
        return runner.finish()
    return runner.run(resumed=True)


def sweep_status(ctx: Context, project: str) -> dict[str, Any]:
    """The sweep's state and its trials ranked by the objective (for `studio sweep show`)."""
    from studio.api.sweep_report import ranked_rows

    state = load_state(ctx.meta, ctx.settings.home, project)
    objective = Objective.parse(state.metric)
    rows = ranked_rows(ctx, state, objective)
    return {
        "project": state.project,
        "script": state.script,
        "optimizer": state.optimizer,
        "metric": objective.spec,
        "direction": objective.direction,
        "pruner": state.pruner,
        "queue": state.queue,
        "generation": state.generation,
        "popsize": state.popsize,
        "finished": state.finished,
        "stop_reason": state.stop_reason,
        "trials": rows,
    }


def _sweep_options(opts: RunOptions, state: SweepState) -> RunOptions:
    """The options every experiment of the sweep is created with."""
    metric = state.metric
    if metric is None and state.optimizer != "grid":
        metric = "fitness"  # recorded, so listings rank by it
    return dataclasses.replace(opts, project=state.project, queue=state.queue, metric=metric, key=None,
                               echo=False, params={}, sweep=state.project)


def _options_from_state(state: SweepState) -> RunOptions:
    values = {k: v for k, v in state.run_options.items() if k in _REPLAYED}
    return RunOptions(script=state.script, cwd=Path(state.cwd), **values)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


__all__ = ["SweepPlan", "build_space", "plan_sweep", "resume_sweep", "run_sweep", "sweep_status"]
