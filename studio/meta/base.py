"""The metadata store interface: experiments, artifacts, status history, output, metrics, queue.

Implementations guarantee, for every method:
- atomicity: each call is one transaction; it either happens entirely or not at all;
- process safety: any number of processes on any number of machines may call concurrently
  (SQLite: WAL + busy timeout + BEGIN IMMEDIATE for writes; PostgreSQL: row locks);
- `claim` hands an experiment to exactly one caller (FOR UPDATE SKIP LOCKED / BEGIN IMMEDIATE);
- no secrets: callers never pass credentials, and stores never add them.

Missing experiments raise NotFoundError; duplicate keys and illegal status changes raise
ConflictError; a database at an older schema version raises SchemaVersionError naming
`studio db upgrade`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from studio.entities import (
    ArtifactSpec,
    Experiment,
    ExperimentQuery,
    MetricSummary,
    Status,
    StatusEvent,
)


@dataclass(frozen=True)
class Page:
    items: list[Experiment]
    total: int


@dataclass(frozen=True)
class OutputChunk:
    seq: int
    attempt: int
    text: str
    time: float


class MetaStore(abc.ABC):
    """Everything studio records about experiments except file contents (see ObjectStore)."""

    # -- experiments -------------------------------------------------------------------
    @abc.abstractmethod
    def create_experiment(self, exp: Experiment) -> Experiment:
        """Insert `exp` with its artifacts and a first status event. ConflictError if the key exists."""

    @abc.abstractmethod
    def get_experiment(self, key: str) -> Experiment:
        """The experiment with its artifacts. NotFoundError if absent."""

    @abc.abstractmethod
    def get_experiments(self, keys: Sequence[str]) -> list[Experiment]:
        """Several experiments in one query, in the order given; unknown keys are skipped."""

    @abc.abstractmethod
    def query(self, q: ExperimentQuery) -> Page:
        """One page of experiments (artifacts not loaded: `artifacts` is empty) and the total
        count matching the filters. Sorting and filtering happen in the database."""

    @abc.abstractmethod
    def update_experiment(self, key: str, **fields: Any) -> Experiment:
        """Set plain fields (not `status`, not `artifacts`). NotFoundError if absent."""

    @abc.abstractmethod
    def set_status(
        self,
        key: str,
        status: Status,
        *,
        expect: Iterable[Status] | None = None,
        reason: str | None = None,
        worker: str | None = None,
        **fields: Any,
    ) -> Experiment:
        """Change status (checked by `entities.check_transition`), record a StatusEvent and set
        `fields` in the same transaction. With `expect`, ConflictError unless the current
        status is one of them (compare-and-set). `status_reason` becomes `reason`.

        Bookkeeping implied by the change, unless `fields` set it: to `running`, heartbeat now,
        `time_started` now if unset, `worker` set (when given); to `queued`, worker and lease
        cleared; to a terminal status, lease cleared and `time_finished` now if unset."""

    @abc.abstractmethod
    def delete_experiment(self, key: str) -> None:
        """Delete the experiment and everything hanging off it. NotFoundError if absent."""

    @abc.abstractmethod
    def status_history(self, key: str) -> list[StatusEvent]:
        """Status events, oldest first."""

    # -- artifacts ---------------------------------------------------------------------
    @abc.abstractmethod
    def put_artifact(self, key: str, artifact: ArtifactSpec) -> None:
        """Insert or replace the experiment's artifact with this tag."""

    def put_checkpoint(
        self, key: str, artifacts: Sequence[ArtifactSpec], at: float, *, fields: Mapping[str, Any] | None = None
    ) -> None:
        """A checkpoint: the artifacts that changed (`put_artifact` each) and
        `time_last_checkpoint = at`, with plain `fields` (as `update_experiment` sets them,
        e.g. the git state found with a workspace captured in the background). Stores that
        can do it in one transaction override this."""
        for artifact in artifacts:
            self.put_artifact(key, artifact)
        self.update_experiment(key, time_last_checkpoint=at, **dict(fields or {}))

    def put_final_checkpoint(
        self,
        key: str,
        artifacts: Sequence[ArtifactSpec],
        at: float,
        status: Status,
        *,
        expect: Iterable[Status] | None = None,
        reason: str | None = None,
        worker: str | None = None,
        fields: Mapping[str, Any] | None = None,
        **status_fields: Any,
    ) -> None:
        """A run's last checkpoint and its end: `put_checkpoint(key, artifacts, at,
        fields=fields)`, then `set_status(key, status, expect=..., reason=..., worker=...,
        **status_fields)`. The checkpoint is recorded even when the status change is refused
        (its ConflictError is raised afterwards). Stores that can do both in one transaction
        override this: the end and the artifacts it ends with then become durable together."""
        self.put_checkpoint(key, artifacts, at, fields=fields)
        self.set_status(key, status, expect=expect, reason=reason, worker=worker, **status_fields)

    @abc.abstractmethod
    def referenced_trees(self) -> set[str]:
        """Every tree hash any experiment's artifact points to (for garbage collection)."""

    # -- supervision -------------------------------------------------------------------
    @abc.abstractmethod
    def heartbeat(self, key: str, worker: str, lease_seconds: float) -> bool:
        """Renew the lease of a running experiment held by `worker`. Returns `stop_requested`.
        Raises ConflictError if the experiment is no longer held by `worker` (lost the lease)."""

    @abc.abstractmethod
    def request_stop(
        self, key: str, *, status: Status = Status.STOPPED, reason: str | None = None
    ) -> Experiment:
        """Ask whoever runs the experiment to stop it (seen at its next heartbeat).
        A queued experiment becomes `stopped` at once. A running one records `status`
        (`stopped`, or `pruned` when a sweep's pruner asks) and `reason` once its supervisor
        has stopped the script (`stop_status` / `stop_reason` until then); the first request wins."""

    # -- queue -------------------------------------------------------------------------
    @abc.abstractmethod
    def claim(
        self,
        queue: str,
        worker: str,
        lease_seconds: float,
        resources: dict[str, Any] | None = None,
    ) -> Experiment | None:
        """Atomically take the oldest queued experiment on `queue` whose resource needs fit
        `resources` (None: anything): status -> running, worker set, attempts += 1, lease set,
        `time_started` now. Exactly one concurrent caller gets any given experiment.

        Fit: for each of `cpus`, `gpus`, `ram`, `hdd` (numbers; bytes for ram/hdd) that
        `resources` lists, the experiment's `resources` needs no more (a missing need is 0; a
        resource the worker does not list is not checked). Experiments past their `lifetime`
        are never handed out."""

    @abc.abstractmethod
    def requeue_expired(self, max_attempts: int) -> list[str]:
        """Judged by the store's own clock (the database host's, or the server's behind an
        API server), never a caller's: a client whose clock runs fast cannot expire anyone's
        lease. Running experiments whose lease lapsed go back to `queued` (attempts < max_attempts)
        or become `lost`. Queued experiments older than their `lifetime` become `lost` with a
        reason. Returns the keys changed.

        A lapsed experiment without a queue (a local run whose supervisor died) becomes `lost`
        at once; one whose stop was requested becomes `stopped` instead of running again.
        A queued experiment without a queue older than a minute (a preparation its supervisor
        abandoned: no worker would ever claim it) becomes `lost` too."""

    @abc.abstractmethod
    def queue_counts(self) -> dict[str, dict[str, int]]:
        """queue -> status -> count, for every queue that holds experiments."""

    # -- workers (presence, for `studio queue list` and the Queues page) ---------------
    @abc.abstractmethod
    def worker_seen(self, worker: str, queue: str, state: str, experiment: str | None = None,
                    host: str = "") -> None:
        """Record that `worker` serves `queue` now, `idle` or `busy` with `experiment` (insert
        or update; `last_seen` is the store's clock, `started` kept from the first call)."""

    @abc.abstractmethod
    def worker_gone(self, worker: str) -> None:
        """Forget `worker` (it exited). Nothing happens for an unknown worker."""

    @abc.abstractmethod
    def workers(self) -> list[dict[str, Any]]:
        """[{id, queue, host, state, experiment, started, last_seen}] sorted by queue and id."""

    # -- output (live log) -------------------------------------------------------------
    @abc.abstractmethod
    def append_output(self, key: str, attempt: int, seq: int, text: str) -> None:
        """Store one chunk of stdout/stderr. (key, attempt, seq) is unique; repeats are ignored."""

    @abc.abstractmethod
    def read_output(self, key: str, after_seq: int = -1, attempt: int | None = None) -> list[OutputChunk]:
        """Chunks with seq > after_seq, in order (default: the latest attempt)."""

    # -- metrics -----------------------------------------------------------------------
    @abc.abstractmethod
    def put_metric_summaries(self, key: str, summaries: Sequence[MetricSummary]) -> None:
        """Upsert per-metric-name summaries of the experiment's series."""

    @abc.abstractmethod
    def metric_summaries(self, keys: Sequence[str]) -> dict[str, list[MetricSummary]]:
        """experiment key -> its summaries, in one query."""

    # -- sweeps ------------------------------------------------------------------------
    @abc.abstractmethod
    def put_sweep(self, project: str, state: str) -> None:
        """Insert or replace the checkpoint of the sweep `project` (JSON text, opaque here)."""

    @abc.abstractmethod
    def get_sweep(self, project: str) -> str:
        """The checkpoint of the sweep `project`. NotFoundError if there is none."""

    @abc.abstractmethod
    def sweeps(self) -> list[str]:
        """The projects that have a sweep checkpoint, sorted."""

    # -- listings ----------------------------------------------------------------------
    @abc.abstractmethod
    def projects(self) -> list[dict[str, Any]]:
        """[{name, count, running, finished, last_added}] per project."""

    @abc.abstractmethod
    def metric_extremes(self) -> dict[str, tuple[Experiment, Experiment]]:
        """project -> (its experiment with the lowest `metric_value`, the one with the highest),
        among those that have one; ties go to the smallest key. One query for all projects;
        artifacts are not loaded."""

    @abc.abstractmethod
    def users(self) -> list[dict[str, Any]]:
        """[{name, count, last_added}] per owner."""

    # -- misc --------------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
