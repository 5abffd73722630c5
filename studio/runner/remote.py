"""Prepare a run from stored data only: what workers and `studio rerun` execute.

Everything the script needs is materialized from the object store into a directory of the
runner's own (under STUDIOML_HOME), never into the submitter's folders, even on the same
machine. Mutable artifacts start from their last stored version (a requeued experiment
continues from its last checkpoint) and are captured from these runner-side locations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.context import Context
from studio.entities import Experiment
from studio.runner.checkpoint import capture_ignores
from studio.runner.executor import Launch
from studio.runner.launch import child_env, command_for, write_mapping
from studio.runner.materialize import cached_tree

_DEFAULT_FILES = {"output": "output.log"}


def stored_launch(ctx: Context, exp: Experiment, workdir: Path, python: str | None = None,
                  echo: bool = False, extra_env: dict[str, str] | None = None) -> Launch:
    workdir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    capture: dict[str, Path] = {}
    for tag, art in exp.artifacts.items():
        if art.source and art.tree:
            paths[tag] = cached_tree(ctx, art.tree, pin=True)
            continue
        dest = workdir / tag if tag != "workspace" else workdir / "workspace"
        if tag in _DEFAULT_FILES:
            dest = workdir / _DEFAULT_FILES[tag]
        if art.tree:
            ctx.objects_for(exp.key).materialize(art.tree, dest)
        elif tag not in _DEFAULT_FILES:
            dest.mkdir(parents=True, exist_ok=True)
        paths[tag] = dest
        if art.mutable:
            capture[tag] = dest
    for tag in ("modeldir", "tb", "metrics"):
        if tag not in paths:
            paths[tag] = workdir / tag
            paths[tag].mkdir(parents=True, exist_ok=True)
            capture[tag] = paths[tag]
    if "output" not in paths:
        paths["output"] = capture["output"] = workdir / "output.log"
    mapping = write_mapping(ctx, exp.key, paths, directory=workdir)
    env = child_env(ctx, exp, mapping, paths)
    env.update(extra_env or {})
    workspace = paths["workspace"]
    if exp.sweep and exp.params and not exp.module:
        substitute_params(workspace / exp.script, exp.params)
    return Launch(
        argv=command_for(exp, python),
        cwd=workspace,
        env=env,
        paths=paths,
        capture=capture,
        ignore=capture_ignores(workspace),
        echo=echo,
    )


def substitute_params(script: Path, params: dict[str, Any]) -> None:
    """A sweep's point goes into this run's own copy of the entry script (upstream's rule:
    whole words on the right of the last `=`); array values reach the script as artifacts."""
    from studio.search.substitute import substitute_file

    scalars = {k: v for k, v in params.items() if isinstance(v, int | float | str)}
    if scalars and script.is_file():
        substitute_file(script, scalars)
