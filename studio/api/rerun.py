"""`studio rerun KEY`: the same stored workspace, args, artifacts and environment, as a new experiment."""

from __future__ import annotations

import time

from studio.api import names
from studio.api.context import Context
from studio.api.run import redact_env, running_fields, worker_id
from studio.entities import ArtifactSpec, Experiment, Status
from studio.keys import check_key, new_key
from studio.runner.executor import Executor, Outcome


def clone(
    ctx: Context, key: str, new_key_: str | None = None, queue: str | None = None, owner: str | None = None,
    worker: str | None = None,
) -> Experiment:
    """A new experiment that will run exactly what `key` ran (a reference: NAME is the newest
    finished run of that name, `studio.api.names`): queued, or (`worker`) born running under
    that supervisor's lease; owned by `owner` (default: the configured owner; a server passes
    the authenticated caller)."""
    old = names.resolve(ctx.meta, key)
    key = old.key
    if "workspace" not in old.artifacts or not old.artifacts["workspace"].tree:
        from studio.exceptions import NotFoundError

        raise NotFoundError(f"experiment {key} has no stored workspace to rerun")
    nk = names.free_key(ctx.meta, check_key(new_key_)) if new_key_ else new_key()
    artifacts: dict[str, ArtifactSpec] = {}
    for tag, art in old.artifacts.items():
        if tag == "workspace" or not art.mutable:
            artifacts[tag] = art  # stored inputs, same trees
        elif tag not in ("output", "modeldir", "tb", "metrics"):
            artifacts[tag] = ArtifactSpec(tag=tag, mutable=True, local_path=art.local_path)
    exp = old.replace(
        key=nk, status=Status.QUEUED, returncode=None, status_reason=f"rerun of {key}", queue=queue,
        env=redact_env(ctx.settings.env), metric_value=None, time_added=time.time(), time_started=None,
        time_last_checkpoint=None, time_finished=None, heartbeat=None, worker=None, lease_expires=None,
        attempts=0, stop_requested=False, stop_status=None, stop_reason=None, artifacts=artifacts, owner=owner or ctx.settings.owner,
    )
    if worker is not None:
        exp = exp.replace(**running_fields(ctx, worker))
    return ctx.meta.create_experiment(exp)


def rerun(ctx: Context, key: str, new_key: str | None = None, queue: str | None = None,
          echo: bool = True) -> tuple[Experiment, Outcome | None]:
    from studio.runner.remote import stored_launch

    wid = None if queue else worker_id()
    exp = clone(ctx, key, new_key, queue, worker=wid)
    if wid is None:
        return exp, None
    launch = stored_launch(ctx, exp, ctx.settings.experiment_dir(exp.key) / "run", echo=echo)
    outcome = Executor(ctx, wid).run(exp, launch)
    return ctx.meta.get_experiment(exp.key), outcome
