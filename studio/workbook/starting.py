"""Creating (or joining) the experiment a `new_experiment()` call records into.

Creating reuses `studio run`'s own path (`studio.api.run.prepare`: validation, capture of the
workspace, git, Python environment and host; the row is born `running` under this process's
lease), so a workbook experiment is recorded like any other. The process then points its own
environment at the experiment (``STUDIOML_EXPERIMENT``, ``STUDIOML_METRICS_DIR``,
``STUDIOML_ARTIFACT_MAPPING``): `studio.log`, `fs_tracker` and child processes that call
`new_experiment()` all land in it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from studio.api.context import Context, shared_context
from studio.entities import ArtifactSpec, Experiment, Status
from studio.exceptions import NotFoundError
from studio.runner.checkpoint import Checkpointer
from studio.workbook.session import WORKBOOK_TAG, Session, skip_dot_files

ENV_EXPERIMENT = "STUDIOML_EXPERIMENT"
ENV_CONFIG = "STUDIOML_CONFIG"

#: How long the first `new_experiment()` of a process waits for numpy and pyarrow at most
#: (a slow disk: the rest is imported while the script runs, as before).
WARM_UP_WAIT = 5.0

#: Keys of experiments this process created (its environment names the newest of them).
_created_here: set[str] = set()
def open_session(
    *,
    project: str | None,
    name: str | None,
    params: dict[str, Any] | None,
    metric: str | None,
    config: str | os.PathLike[str] | None,
    capture_interval: float,
    flush_after: float,
) -> Session:
    if capture_interval <= 0 or flush_after < 0:
        raise ValueError("capture_interval must be positive and flush_after not negative")
    from studio.tracking import metrics

    # numpy and pyarrow (what `studio.log`'s segments need) are imported by a daemon thread
    # while this call does its own work, and the first call of the process returns once they
    # are: pyarrow's extension module holds the interpreter lock for its whole initialisation
    # (15-70 ms), a pause that would otherwise land in the caller's first training steps.
    metrics.warm_up_in_background()
    ctx = shared_context(str(config) if config else os.environ.get(ENV_CONFIG) or None)
    current = os.environ.get(ENV_EXPERIMENT)
    if current and current not in _created_here:
        session = _attach(ctx, current, params, capture_interval, flush_after)
    else:
        session = _create(ctx, project, name, params, metric, capture_interval, flush_after)
    metrics.wait_for_warm_up(WARM_UP_WAIT)
    return session


def _workbook_dir(ctx: Context, key: str) -> Path:
    path = ctx.settings.experiment_dir(key) / WORKBOOK_TAG
    path.mkdir(parents=True, exist_ok=True)
    return path


def _in_ipython() -> bool:
    import builtins

    return bool(getattr(builtins, "__IPYTHON__", False))


def _interactive_name() -> str:
    if _in_ipython():
        return "<notebook>"
    return sys.argv[0] if sys.argv and sys.argv[0] else "<interactive>"


def _script() -> Path | None:
    """The script this process runs, or None for an interactive session: `python -c`, a REPL,
    or IPython/Jupyter (whose argv is the kernel launcher and its connection file, which holds
    the kernel's signing key: never a script's command line to record)."""
    if _in_ipython():
        return None
    arg = sys.argv[0] if sys.argv else ""
    if arg and arg not in ("-c", "-m") and os.path.isfile(arg):
        return Path(arg).resolve()
    return None


def _record(
    ctx: Context,
    project: str | None,
    key: str,
    key_is_new: bool,
    params: dict[str, Any],
    metric: str | None,
    workbook: ArtifactSpec,
) -> Experiment:
    """The experiment (not yet created), with everything `studio run` records."""
    from studio.api.run import RunOptions, build, experiment_paths

    script = _script()
    if script is not None:
        opts = RunOptions(
            script=str(script),
            args=list(sys.argv[1:]),
            project=project,
            key=key,
            key_is_new=key_is_new,
            params=params,
            metric=metric,
            cwd=Path.cwd(),
            extra_artifacts={WORKBOOK_TAG: workbook},
            reuse_environment=True,
            defer_workspace=True,  # stored by the session's background thread (or at its end)
        )
        return build(ctx, opts)
    # An interactive session or `python -c`: no script, so no workspace to capture.
    from studio.api.run import check_names, environment_cache
    from studio.capture import start_environment

    check_names(project=project, metric=metric, owner=ctx.settings.owner)
    environment = start_environment(Path.cwd(), reuse=True, cache_dir=environment_cache(ctx)).result()
    exp = Experiment(
        key=key,
        project=project or "default",
        owner=ctx.settings.owner,
        script=_interactive_name(),
        args=() if _in_ipython() else tuple(sys.argv[1:]),
        params=dict(params),
        python_version=environment.get("python_version"),
        pythonenv=tuple(environment.get("pythonenv") or ()),
        git=environment.get("git") or {},
        host=environment.get("host") or {},
        metric=metric,
        time_added=time.time(),
        artifacts={
            **{t: ArtifactSpec(tag=t, local_path=str(p)) for t, p in experiment_paths(ctx, key).items()},
            WORKBOOK_TAG: workbook,
        },
    )
    return exp


def _create(
    ctx: Context,
    project: str | None,
    name: str | None,
    params: dict[str, Any] | None,
    metric: str | None,
    capture_interval: float,
    flush_after: float,
) -> Session:
    from studio.api.run import (
        capture_workspace,
        experiment_paths,
        running_fields,
        worker_id,
        write_mapping,
    )
    from studio.keys import check_key, new_key
    from studio.tracking import metrics

    key = check_key(name) if name else new_key()  # create_experiment refuses a taken key
    directory = ctx.settings.experiment_dir(key) / WORKBOOK_TAG
    workbook = ArtifactSpec(tag=WORKBOOK_TAG, mutable=True, local_path=str(directory))
    draft = _record(ctx, project, key, not name, dict(params or {}), metric, workbook)
    worker = "workbook:" + worker_id()
    # Created `running` under this process's lease, in one transaction.
    exp = ctx.meta.create_experiment(draft.replace(**running_fields(ctx, worker)))
    directory.parent.mkdir(parents=True, exist_ok=True)
    paths = experiment_paths(ctx, exp.key)
    paths.pop("output")  # nothing tees this process's output
    paths[WORKBOOK_TAG] = directory
    for path in paths.values():  # all in the experiment's folder, made above
        path.mkdir(exist_ok=True)
    mapping = write_mapping(ctx, exp.key, paths)
    _created_here.add(exp.key)
    os.environ.update(
        STUDIOML_EXPERIMENT=exp.key,
        STUDIOML_HOME=str(ctx.settings.home),
        STUDIOML_METRICS_DIR=str(paths["metrics"]),
        STUDIOML_ARTIFACT_MAPPING=str(mapping),
    )
    if ctx.settings.config_path is not None:
        os.environ[ENV_CONFIG] = str(ctx.settings.config_path)
    logger = metrics.configure(paths["metrics"])
    artifacts = {**exp.artifacts, WORKBOOK_TAG: workbook}
    checkpointer = Checkpointer(
        ctx, exp.key, artifacts, paths,
        ignore={tag: skip_dot_files for tag in paths}, metric=exp.metric,
    )  # fmt: skip
    session = Session(
        ctx,
        exp,
        directory,
        checkpointer,
        logger,
        owned=True,
        worker=worker,
        capture_interval=capture_interval,
        flush_after=flush_after,
    )
    workspace = exp.artifacts.get("workspace")
    if workspace is not None and workspace.tree is None:  # deferred: see `Session.workspace_job`
        session.workspace_job = lambda: capture_workspace(ctx, exp.key, exp, echo=True)
    return session


def _attach(
    ctx: Context,
    key: str,
    params: dict[str, Any] | None,
    capture_interval: float,
    flush_after: float,
) -> Session:
    from studio.tracking import metrics

    try:
        exp = ctx.meta.get_experiment(key)
    except NotFoundError:
        raise NotFoundError(
            f"{ENV_EXPERIMENT}={key} names no experiment in {ctx.settings.database_url.split('@')[-1]}: "
            f"unset it to record a new experiment, or point STUDIOML_HOME/--config at its store"
        ) from None
    if params:
        exp = ctx.meta.update_experiment(key, params={**exp.params, **params})
    if exp.status.terminal or exp.status == Status.QUEUED:
        import logging

        logging.getLogger(__name__).warning(
            "attaching to experiment %s, which is %s", key, exp.status
        )
    directory = _workbook_dir(ctx, key)
    workbook = exp.artifacts.get(WORKBOOK_TAG)
    if workbook is None:  # another process of the experiment may have recorded it already
        workbook = ArtifactSpec(tag=WORKBOOK_TAG, mutable=True, local_path=str(directory))
        ctx.meta.put_artifact(key, workbook)
    elif workbook.local_path != str(directory):  # e.g. re-run on another machine
        workbook = workbook.replace(local_path=str(directory))
        ctx.meta.put_artifact(key, workbook)
    checkpointer = Checkpointer(
        ctx, key, {WORKBOOK_TAG: workbook}, {WORKBOOK_TAG: directory},
        ignore={WORKBOOK_TAG: skip_dot_files},
    )  # fmt: skip
    return Session(
        ctx,
        exp,
        directory,
        checkpointer,
        metrics.default_logger(),
        owned=False,
        worker=None,
        capture_interval=capture_interval,
        flush_after=flush_after,
    )
