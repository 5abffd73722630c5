"""`studio run --queue Q`: capture and record the experiment as queued; a worker runs it."""

from __future__ import annotations

import sys

from studio.api import names
from studio.api.context import Context
from studio.api.run import RunOptions, prepare
from studio.entities import Experiment

LOCAL_QUEUE_PREFIX = "local-"


def submit(ctx: Context, opts: RunOptions) -> Experiment:
    if not opts.queue:
        from studio.keys import new_key

        opts.queue = LOCAL_QUEUE_PREFIX + new_key()
    return prepare(ctx, opts)


def submit_and_maybe_work(ctx: Context, opts: RunOptions, num_workers: int | None = None) -> int:
    """Submit; with --num-workers, also drain the queue with that many local workers."""
    exp = submit(ctx, opts)
    print(exp.key, flush=True)
    note = names.renamed(opts.key, exp.key)
    print(f"studio: experiment {exp.key} queued on {exp.queue}{note}", file=sys.stderr, flush=True)
    if not num_workers:
        return 0
    from studio.runner.pool import drain

    results = drain(ctx, exp.queue or "", num_workers, keys=[exp.key])
    return results.get(exp.key, 1)
