"""A sweep's checkpoint: what `studio sweep resume PROJECT` continues from.

Where: ``$STUDIOML_HOME/sweeps/<project>.json``, one plain JSON file per sweep (open format,
readable without studio). The metadata store has no place for a sweep record and the state is
the driver's, not an experiment's: the experiments themselves (params, status, metric) are in
the metadata store as usual, and the file only adds what the driver needs to carry on, namely
the command, the optimizer's own state and which experiment belongs to which generation.
So a sweep is resumed from the machine (the ``STUDIOML_HOME``) that started it.

Written after each submission and after each generation, as temp file + ``os.replace``: a
crash leaves the previous complete checkpoint, never half of one.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from studio.exceptions import NotFoundError, UsageError

STATE_VERSION = 1
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class TrialRecord:
    """One point of the sweep and the experiment that evaluates it."""

    key: str
    params: dict[str, Any]
    generation: int
    status: str = "queued"
    value: float | None = None  # the folded metric, once finished
    retried: list[str] = field(default_factory=list)  # keys of earlier, interrupted attempts


@dataclass
class SweepState:
    project: str
    script: str
    args: list[str]
    cwd: str
    hyperparams: list[str]
    optimizer: str  # "grid", "random", "tpe", "cmaes" or the plugin as given
    metric: str | None
    pruner: str
    queue: str
    local_queue: bool
    num_workers: int
    force: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    run_options: dict[str, Any] = field(default_factory=dict)  # RunOptions fields to replay
    template_key: str | None = None
    generation: int = 0
    popsize: int = 0
    trials: list[TrialRecord] = field(default_factory=list)
    optimizer_state: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    stop_reason: str | None = None
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    version: int = STATE_VERSION

    # -- queries -------------------------------------------------------------------------
    def generation_trials(self, generation: int) -> list[TrialRecord]:
        return [t for t in self.trials if t.generation == generation]

    def trial(self, key: str) -> TrialRecord | None:
        for t in self.trials:
            if t.key == key:
                return t
        return None

    # -- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepState:
        if data.get("version") != STATE_VERSION:
            raise UsageError(f"sweep state version {data.get('version')} is not supported by this studio")
        data = dict(data)
        data["trials"] = [TrialRecord(**t) for t in data.get("trials") or []]
        return cls(**data)

    def save(self, home: Path) -> Path:
        self.updated = time.time()
        path = state_path(home, self.project)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=True))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def state_path(home: Path, project: str) -> Path:
    return home / "sweeps" / f"{_SAFE.sub('_', project)}.json"


def load_state(home: Path, project: str) -> SweepState:
    path = state_path(home, project)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(list_sweeps(home)) or "none"
        raise NotFoundError(f"no sweep {project!r} in {home / 'sweeps'} (sweeps here: {known})") from None
    except ValueError as exc:
        raise UsageError(f"sweep state {path} is not valid JSON ({exc}); it cannot be resumed") from None
    return SweepState.from_dict(data)


def sweep_exists(home: Path, project: str) -> bool:
    return state_path(home, project).exists()


def list_sweeps(home: Path) -> list[str]:
    folder = home / "sweeps"
    if not folder.is_dir():
        return []
    names = []
    for path in sorted(folder.glob("*.json")):
        try:
            names.append(str(json.loads(path.read_text()).get("project") or path.stem))
        except (OSError, ValueError):
            continue
    return names


__all__ = ["SweepState", "TrialRecord", "list_sweeps", "load_state", "state_path", "sweep_exists"]
