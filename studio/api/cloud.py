"""`studio run --cloud={ec2|ec2spot|gcloud|gcspot}`: queue the experiments, then make sure
workers exist for the queue in the cloud.

Order matters for bad input: the flags, the config's `cloud:` section, the credentials, the
instance type and the image are all checked (read-only calls) before anything is queued,
and the experiments are queued before anything is created in the cloud; if creating the
group fails, what was queued is removed again.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

from studio.api.context import Context
from studio.api.run import RunOptions
from studio.exceptions import UsageError


def _say(text: str) -> None:
    print(f"studio: {text}", file=sys.stderr, flush=True)


def run_on_cloud(ctx: Context, opts: RunOptions, cloud: str, *, bid: str | None = None,
                 num_workers: int | None = None, hyperparams: list[str] | None = None,
                 optimizer: str | None = None, force: bool = False, pruner: str | None = None) -> int:
    from studio.cloud import SPOT, check_kind, provisioner
    from studio.cloud.base import WorkerRequest
    from studio.cloud.config import CloudConfig
    from studio.keys import new_key
    from studio.runner.resources import RESOURCE_NAMES, parse_needs

    kind = check_kind(cloud)
    if bid is not None and kind not in SPOT:
        raise UsageError(f"--bid applies to spot instances only: use --cloud=ec2spot, or drop --bid for {kind}")
    if bid is not None and kind == "gcspot":
        _say("--bid is ignored on gcspot: preemptible (spot) prices on Google Cloud are fixed")
        bid = None
    if num_workers is not None and num_workers < 1:
        raise UsageError("--num-workers must be at least 1")
    cfg = CloudConfig.from_settings(ctx.settings)
    count = num_workers or 1
    if cfg.max_workers is not None and count > cfg.max_workers:
        raise UsageError(f"--num-workers {count} is above `cloud.max_workers` ({cfg.max_workers}): "
                         "ask for fewer or raise the limit in the config")
    sweep = bool(hyperparams or optimizer)
    if sweep:
        from studio.api.sweep import plan_sweep

        plan_sweep(ctx, opts, list(hyperparams or []), optimizer, force, pruner, count)  # validates only
    configured = {k: v for k, v in ctx.settings.resources_needed.items() if k in RESOURCE_NAMES}
    request = WorkerRequest(
        queue=opts.queue or f"cloud-{new_key()}", count=count, max_workers=max(count, cfg.max_workers or count),
        resources=parse_needs({**configured, **opts.resources}), spot=kind in SPOT, bid=bid,
        idle_timeout=cfg.idle_timeout,
    )
    backend = provisioner(kind, ctx.settings)
    prepared = backend.prepare(request)  # every check and lookup; nothing created yet
    opts = replace(opts, queue=request.queue)
    if sweep:
        from studio.api.sweep import run_sweep

        fleet = backend.ensure_workers(request, prepared)
        _report(fleet, prepared)
        return run_sweep(ctx, opts, list(hyperparams or []), optimizer=optimizer, num_workers=None, force=force,
                         pruner=pruner)
    from studio.api.run import prepare

    exp = prepare(ctx, opts)
    print(exp.key, flush=True)
    _say(f"experiment {exp.key} queued on {request.queue}")
    try:
        fleet = backend.ensure_workers(request, prepared)
    except BaseException:
        from studio.queue import purge_queue

        purge_queue(ctx, request.queue)  # nothing half-made: no experiment waits for workers that never come
        raise
    _report(fleet, prepared)
    return 0


def _report(fleet: Any, prepared: dict[str, Any]) -> None:
    choice = prepared.get("choice")
    what = ""
    if choice is not None and getattr(choice, "types", None):
        what = f" of {choice.instance_type} (${choice.types[0][1]:.4f}/h on demand, {choice.price_source})"
        if choice.spot_max_price is not None:
            what += f", spot{' up to $' + choice.spot_max_price + '/h' if choice.spot_max_price else ''}"
    elif prepared.get("machine_type"):
        what = f" of {prepared['machine_type']}"
    _say(f"{fleet.backend} group {fleet.name}: {fleet.desired} worker(s){what} on queue {fleet.queue}; "
         f"`studio cloud list` shows it, `studio cloud down {fleet.queue}` removes it")
