"""Run an experiment on this machine, in the user's own directories (`studio run` without --queue)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from studio.api import names
from studio.api.context import Context
from studio.api.run import (
    RunOptions,
    child_env,
    command_for,
    experiment_paths,
    prepare,
    worker_id,
    write_mapping,
)
from studio.entities import Experiment, Status
from studio.runner.checkpoint import capture_ignores
from studio.runner.executor import Executor, Launch, Outcome
from studio.runner.materialize import cached_tree


def local_paths(ctx: Context, exp: Experiment) -> dict[str, Path]:
    """tag -> local path for a run on the submitter's machine: the original locations."""
    paths = experiment_paths(ctx, exp.key)
    for tag, art in exp.artifacts.items():
        if art.source and art.tree:
            paths[tag] = cached_tree(ctx, art.tree, pin=True)
        elif art.local_path:
            paths[tag] = Path(art.local_path)
    for tag in ("modeldir", "tb", "metrics"):
        if not exp.artifacts.get(tag) or exp.artifacts[tag].mutable:
            paths[tag].mkdir(parents=True, exist_ok=True)
    return paths


def start(ctx: Context, exp: Experiment, worker: str) -> Experiment:
    now = time.time()
    return ctx.meta.set_status(
        exp.key,
        Status.RUNNING,
        expect=[Status.QUEUED],
        worker=worker,
        time_started=now,
        heartbeat=now,
        lease_expires=now + ctx.settings.lease_seconds,
        attempts=exp.attempts + 1,
    )


def run_local(ctx: Context, opts: RunOptions, announce: bool = True) -> tuple[Experiment, Outcome]:
    exp = prepare(ctx, opts)
    if announce:
        note = names.renamed(opts.key, exp.key)
        print(f"studio: experiment {exp.key} (project {exp.project}{note})", file=sys.stderr, flush=True)
    wid = worker_id()
    exp = start(ctx, exp, wid)
    paths = local_paths(ctx, exp)
    mapping = write_mapping(ctx, exp.key, paths)
    capture = {t: paths[t] for t, a in exp.artifacts.items() if a.mutable and t in paths}
    workspace = paths["workspace"]
    argv = command_for(exp)
    if not exp.module:
        argv[1] = str(workspace / exp.script)
    launch = Launch(
        argv=argv,
        cwd=opts.cwd,
        env=child_env(ctx, exp, mapping, paths),
        paths=paths,
        capture=capture,
        ignore=capture_ignores(workspace),
        echo=opts.echo,
    )
    outcome = Executor(ctx, wid).run(exp, launch)
    return ctx.meta.get_experiment(exp.key), outcome
