"""Domain objects: frozen dataclasses shared by every layer.

ORM rows live in `studio.meta.sql` and convert to these with `to_entity()`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """Lifecycle of an experiment. Transitions are checked in `check_transition` only."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"  # exit code 0
    FAILED = "failed"  # non-zero exit code (recorded)
    STOPPED = "stopped"  # a user asked (Ctrl-C, `studio runs stop`)
    KILLED = "killed"  # a signal or --max-duration
    LOST = "lost"  # supervisor heartbeat lapsed and attempts used up
    PRUNED = "pruned"  # stopped early by a sweep's pruner

    @property
    def terminal(self) -> bool:
        return self not in (Status.QUEUED, Status.RUNNING)

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES = frozenset(s for s in Status if s.terminal)

_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.STOPPED, Status.KILLED, Status.LOST}),
    # RUNNING -> QUEUED is a requeue after a lapsed lease or a graceful hand-back.
    Status.RUNNING: frozenset(TERMINAL_STATUSES | {Status.QUEUED}),
}


def can_transition(old: Status, new: Status) -> bool:
    return new in _ALLOWED.get(old, frozenset())


def _short(value: Any) -> str:
    """A param value as a run's default name shows it."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple, dict)):
        import json

        return json.dumps(value, separators=(",", ":"))
    return str(value)


def check_transition(old: Status, new: Status) -> None:
    """Raise ConflictError unless old -> new is a legal status change."""
    if not can_transition(old, new):
        from studio.exceptions import ConflictError

        raise ConflictError(f"cannot change status from {old} to {new}")


@dataclass(frozen=True)
class ArtifactSpec:
    """How an experiment uses an artifact.

    mutable: captured continuously (`--capture`, default artifacts) vs once (`--capture-once`).
    local_path: where the submitter keeps it (None for reused artifacts).
    source: `experiment/tag` for `--reuse` artifacts.
    tree: hash of the latest stored tree (manifest) version, None until first captured.
    """

    tag: str
    mutable: bool = True
    local_path: str | None = None
    source: str | None = None
    tree: str | None = None
    size: int = 0
    files: int = 0
    updated: float | None = None

    def replace(self, **changes: Any) -> ArtifactSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_ARTIFACTS = ("workspace", "output", "modeldir", "tb")


@dataclass(frozen=True)
class Experiment:
    key: str
    project: str = "default"
    owner: str = "guest"
    script: str = ""
    args: tuple[str, ...] = ()
    module: bool = False
    status: Status = Status.QUEUED
    returncode: int | None = None
    status_reason: str | None = None
    queue: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    python_version: str | None = None
    pythonenv: tuple[str, ...] = ()
    python_pkgs: tuple[str, ...] = ()
    git: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None
    metric_value: float | None = None
    max_duration: float | None = None
    lifetime: float | None = None
    time_added: float | None = None
    time_started: float | None = None
    time_last_checkpoint: float | None = None
    time_finished: float | None = None
    heartbeat: float | None = None
    worker: str | None = None
    lease_expires: float | None = None
    attempts: int = 0
    stop_requested: bool = False
    stop_status: Status | None = None  # what a requested stop records (None: stopped); e.g. pruned
    stop_reason: str | None = None  # why the stop was requested, recorded as the status reason
    sweep: str | None = None  # the sweep (project) that created it: workers substitute `params`
    name: str | None = None  # set by a person; None shows `display_name`'s default
    tags: tuple[str, ...] = ()
    note: str = ""  # markdown
    artifacts: dict[str, ArtifactSpec] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Experiment:
        return dataclasses.replace(self, **changes)

    @property
    def duration(self) -> float | None:
        if self.time_started is None:
            return None
        end = self.time_finished if self.time_finished is not None else self.heartbeat
        return None if end is None else max(0.0, end - self.time_started)

    @property
    def display_name(self) -> str:
        """The run's name, or by default its script and params: `train.py lr=0.1 epochs=3`."""
        if self.name:
            return self.name
        import os

        head = os.path.basename(self.script) if self.script else self.key
        parts = [head, *(f"{k}={_short(v)}" for k, v in sorted(self.params.items()))]
        text = " ".join(parts)
        return text if len(text) <= 80 else text[:79] + "…"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        data["stop_status"] = self.stop_status.value if self.stop_status is not None else None
        data["args"] = list(self.args)
        data["pythonenv"] = list(self.pythonenv)
        data["python_pkgs"] = list(self.python_pkgs)
        data["tags"] = list(self.tags)
        data["display_name"] = self.display_name
        data["artifacts"] = {tag: a.to_dict() for tag, a in self.artifacts.items()}
        return data


@dataclass(frozen=True)
class StatusEvent:
    key: str
    status: Status
    time: float
    reason: str | None = None
    worker: str | None = None


@dataclass(frozen=True)
class MetricSummary:
    """Per-key summary of a logged series, kept in the metadata store for sorting."""

    key: str  # metric name
    last: float
    min: float
    max: float
    count: int
    last_step: int | None = None
    updated: float | None = None


@dataclass(frozen=True)
class ExperimentQuery:
    """A page of experiments. Filters combine with AND.

    where: conditions like ("lr", "<", 0.01) on columns, `params.<name>` or `metrics.<name>`.
    order_by: a column, `params.<name>` or `metrics.<name>`; prefix `-` for descending.
    """

    project: str | None = None
    owner: str | None = None
    status: tuple[Status, ...] = ()
    queue: str | None = None
    text: str | None = None
    where: tuple[tuple[str, str, Any], ...] = ()
    order_by: str = "-time_added"
    limit: int | None = None
    offset: int = 0
