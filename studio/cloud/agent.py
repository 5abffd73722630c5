"""`studio cloud agent`: what a cloud instance runs (from its start-up script).

    worker    `studio worker --queue Q --timeout T [--token-from SOURCE]` as a child process
    scale     every --scale-interval: wanted = queued + running on Q (at most --max-workers);
              the group's desired capacity is raised to it (never lowered: workers leave
              on their own when idle)
    preempt   every second: the cloud's interruption notice (EC2 `spot/instance-action`,
              GCE `preempted`); on notice the worker gets SIGTERM, stops its script, saves the
              mutable artifacts and hands the experiment back, so another worker resumes it
              from that checkpoint
    leave     when the worker exits idle: out of the group with the desired capacity
              decremented; the last instance of a drained queue deletes the group and template

The agent holds no secret: the worker reads its token itself (`--token-from`).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class AgentOptions:
    backend: str
    group: str
    queue: str
    idle_timeout: float
    max_workers: int
    scale_interval: float = 30.0
    token_from: str | None = None
    preempt_poll: float = 1.0


def queue_load(ctx: Any, queue: str) -> tuple[int, int]:
    counts = ctx.meta.queue_counts().get(queue, {})
    return int(counts.get("queued", 0)), int(counts.get("running", 0))


def run_agent(ctx: Any, opts: AgentOptions, say: Any = print) -> int:
    from studio.cloud import provisioner

    backend: Any = provisioner(opts.backend, ctx.settings)
    me = backend.identity()
    argv = [sys.executable, "-m", "studio", "worker", "--queue", opts.queue, "--timeout", f"{opts.idle_timeout:g}s"]
    if ctx.settings.config_path is not None:
        argv += ["--config", str(ctx.settings.config_path)]
    if opts.token_from:
        argv += ["--token-from", opts.token_from]
    say(f"agent on {me}: worker for queue {opts.queue} in group {opts.group}")
    worker = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    preempted = False
    next_scale = 0.0
    next_preempt = 0.0
    try:
        while worker.poll() is None:
            now = time.monotonic()
            if now >= next_scale:
                next_scale = now + opts.scale_interval
                try:
                    queued, running = queue_load(ctx, opts.queue)
                    if queued:
                        backend.grow(opts.group, min(opts.max_workers, queued + running))
                except Exception as exc:  # scaling is best effort; the worker keeps working
                    log.warning("could not scale %s: %s", opts.group, exc)
            if not preempted and now >= next_preempt:
                next_preempt = now + opts.preempt_poll
                try:
                    preempted = bool(backend.preempted())
                except Exception as exc:
                    log.debug("no interruption notice readable: %s", exc)
                if preempted:
                    say(f"agent on {me}: interruption notice: the worker hands its experiment back")
                    worker.send_signal(signal.SIGTERM)
            time.sleep(0.2)
    except KeyboardInterrupt:
        worker.send_signal(signal.SIGTERM)
    code = worker.wait()
    if preempted:
        return code  # the cloud takes the instance; the group replaces it
    for attempt in range(5):  # a lingering instance is billed: try hard to leave
        try:
            queued, running = queue_load(ctx, opts.queue)
            outcome = backend.leave(opts.group, me, queue_drained=(queued + running == 0))
            break
        except Exception as exc:
            log.warning("could not leave %s (attempt %d): %s", opts.group, attempt + 1, exc)
            time.sleep(2 ** attempt)
    else:
        say(f"agent on {me}: could not leave the group {opts.group}; the start-up script shuts the instance down")
        return 1
    say(f"agent on {me}: worker exited ({code}); instance {outcome} the group {opts.group}")
    return code
