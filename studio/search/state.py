"""A sweep's checkpoint: what `studio sweep resume PROJECT` continues from.

Where: the metadata store's `sweeps` table, one JSON document per sweep (plain JSON text, so
readable without studio). The experiments themselves (params, status, metric) are recorded as
usual; the checkpoint only adds what the driver needs to carry on: the command, the
optimizer's own state and which experiment belongs to which generation. Any machine that
shares the database (and the object store) can resume a sweep.

Written after each submission and after each generation, each time in one transaction: a crash
leaves the previous complete checkpoint, never half of one.

Studio before schema 0006 kept checkpoints in ``$STUDIOML_HOME/sweeps/<project>.json``; such a
file is still found, and copied into the store the first time it is loaded.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.exceptions import NotFoundError, UsageError

if TYPE_CHECKING:
    from studio.meta.base import MetaStore

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

    def save(self, meta: MetaStore) -> None:
        self.updated = time.time()
        meta.put_sweep(self.project, json.dumps(self.to_dict(), allow_nan=True))


def legacy_path(home: Path, project: str) -> Path:
    """Where studio before schema 0006 kept the checkpoint."""
    return home / "sweeps" / f"{_SAFE.sub('_', project)}.json"


def _parse(text: str, where: str) -> SweepState:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"sweep state {where} is not valid JSON ({exc}); it cannot be resumed") from None
    return SweepState.from_dict(data)


def load_state(meta: MetaStore, home: Path, project: str) -> SweepState:
    """The checkpoint of sweep `project`: from the metadata store, else from an older studio's
    file in `home` (then copied into the store)."""
    try:
        return _parse(meta.get_sweep(project), f"of {project!r} in the metadata store")
    except NotFoundError:
        pass
    path = legacy_path(home, project)
    try:
        text = path.read_text()
    except FileNotFoundError:
        known = ", ".join(list_sweeps(meta, home)) or "none"
        raise NotFoundError(f"no sweep {project!r} (sweeps: {known}); see `studio sweep list`") from None
    state = _parse(text, str(path))
    meta.put_sweep(project, json.dumps(state.to_dict(), allow_nan=True))
    return state


def sweep_exists(meta: MetaStore, home: Path, project: str) -> bool:
    try:
        meta.get_sweep(project)
    except NotFoundError:
        return legacy_path(home, project).exists()
    return True


def list_sweeps(meta: MetaStore, home: Path) -> list[str]:
    """Every sweep: in the metadata store, and older studio's files in `home`."""
    names = set(meta.sweeps())
    folder = home / "sweeps"
    if folder.is_dir():
        for path in folder.glob("*.json"):
            try:
                names.add(str(json.loads(path.read_text()).get("project") or path.stem))
            except (OSError, ValueError):
                continue
    return sorted(names)


__all__ = ["SweepState", "TrialRecord", "legacy_path", "list_sweeps", "load_state", "sweep_exists"]
