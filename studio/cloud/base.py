"""The one interface every worker backend implements, and what it is asked for.

A backend makes sure that workers exist for a queue; it never hands experiments to them.
Workers are ordinary `studio worker --queue Q --timeout T` processes that claim from the
queue, so a backend only has to start them, count them and remove them.
"""

from __future__ import annotations

import abc
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

DEFAULT_IDLE_TIMEOUT = 300.0  # seconds a cloud or cluster worker waits for work before exiting


@dataclass(frozen=True)
class WorkerRequest:
    """What `studio run --cloud` / `studio workers launch` asks a backend for."""

    queue: str
    count: int = 1  # workers to start with
    max_workers: int | None = None  # grow toward this while work waits (None: `count`)
    resources: dict[str, int] = field(default_factory=dict)  # cpus, gpus, ram, hdd (bytes)
    spot: bool = False
    bid: str | None = None  # "0.35" (USD per hour) or "80%" of the on-demand price
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    single_run: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific (partition, gres, ...)


@dataclass(frozen=True)
class Fleet:
    """Workers that exist for one queue on one backend (a job array, a group)."""

    backend: str
    queue: str
    name: str  # the backend's own id: Slurm job id, Auto Scaling group name, MIG name
    desired: int
    running: int
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "queue": self.queue, "name": self.name, "desired": self.desired,
                "running": self.running, **self.detail}


class Provisioner(abc.ABC):
    """Starts, counts and removes workers for queues on one backend.

    Contract:
    - `ensure_workers` is idempotent per queue: called again while a fleet exists, it grows
      it to the request (never shrinks it), so submitters may call it on every submit.
    - `list_fleets` reports only fleets studio made (named or tagged by this backend).
    - `tear_down` removes everything it made for the queue (all queues with None), returns
      the names removed, and is safe to repeat.
    - Nothing a backend writes to the scheduler or cloud (scripts, user data, templates,
      tags) contains a credential: workers read theirs from the environment or a secret store.
    """

    kind: str

    def __init__(self, settings: Any, kind: str, **options: Any) -> None:
        self.settings = settings
        self.kind = kind
        self.options = options

    def prepare(self, request: WorkerRequest) -> dict[str, Any]:
        """Every check and read-only lookup for `request`, nothing created (bad input and
        missing credentials fail here, before anything is queued). Passed to ensure_workers."""
        return {}

    @abc.abstractmethod
    def ensure_workers(self, request: WorkerRequest, prepared: dict[str, Any] | None = None) -> Fleet:
        """Make sure at least `request.count` workers exist (or are starting) for the queue."""

    @abc.abstractmethod
    def list_fleets(self, queue: str | None = None) -> list[Fleet]:
        """The fleets that exist, for one queue or all."""

    @abc.abstractmethod
    def tear_down(self, queue: str | None = None) -> list[str]:
        """Remove the fleets of `queue` (all with None); return what was removed."""


def worker_argv(request: WorkerRequest, python: str | None = None, config: str | None = None,
                token_from: str | None = None) -> list[str]:
    """The `studio worker` command line a backend starts."""
    argv = [python or sys.executable, "-m", "studio", "worker", "--queue", request.queue]
    if config:
        argv += ["--config", config]
    if request.single_run:
        argv.append("--single-run")
    if request.idle_timeout is not None:
        argv += ["--timeout", f"{request.idle_timeout:g}s"]
    if token_from:
        argv += ["--token-from", token_from]
    return argv


def shell_line(argv: list[str]) -> str:
    return shlex.join(argv)
