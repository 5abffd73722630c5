"""The SQLite store's fast path: a supervisor's statements on the standard library's `sqlite3`.

Importing SQLAlchemy costs about 0.2 s, two thirds of what `studio run` would add to a short
script. A supervisor runs a handful of fixed statements (create the experiment, change its
status, heartbeat, store output chunks, artifacts and metric summaries, read one experiment),
so `LiteSqliteStore` runs those directly on `sqlite3` and hands every other method (queries,
claims, listings, deletes, lease expiry) to a `SqlMetaStore` on the same file, opened on first
use. Migrations stay with Alembic: a file that is missing or not at `HEAD_REVISION` is opened
by the SQLAlchemy store first, which creates, migrates or refuses it.

Both implementations write the same rows: the values come from `studio.meta.records`, the
connection settings are the same (WAL, busy timeout, `synchronous=NORMAL`, foreign keys), and
writers take the same locks (`WriterQueue`'s flock, then `BEGIN IMMEDIATE`), so processes of
either kind share a database safely. The MetaStore contract suite runs against both.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from studio.entities import (
    ArtifactSpec,
    Experiment,
    ExperimentQuery,
    MetricSummary,
    Status,
    StatusEvent,
)
from studio.exceptions import ConflictError, StoreError
from studio.meta.base import MetaStore, OutputChunk, Page
from studio.meta.records import (
    HEAD_REVISION,
    JSON_COLUMNS,
    METRIC_UPDATES,
    artifact_entity,
    artifact_values,
    check_status_change,
    column_values,
    duplicate_key,
    experiment_entity,
    lease_lost,
    metric_values,
    new_experiment_values,
    not_found,
    status_changes,
)
from studio.meta.writer_queue import BUSY_TIMEOUT_S, RETRIES, WriterQueue, retry_delay

log = logging.getLogger(__name__)

T = TypeVar("T")

_PREFIX = "sqlite:///"
#: WAL pages at which a commit checkpoints itself when a background thread is meant to
#: (`LiteSqliteStore.checkpoint_in_background`) but has fallen behind: 16 MB of 4 KB pages.
BACKGROUND_AUTOCHECKPOINT = 4000
_ARTIFACT_COLUMNS = tuple(artifact_values("", ArtifactSpec(tag="")))
_METRIC_COLUMNS = tuple(metric_values("", MetricSummary(key="", last=0.0, min=0.0, max=0.0, count=0), 0.0))


def sqlite_file(url: str) -> Path | None:
    """The database file of a plain `sqlite:///PATH` URL; None for anything the fast path
    leaves to SQLAlchemy (in-memory databases, query parameters, another driver)."""
    if not url.startswith(_PREFIX) or "?" in url:
        return None
    path = url[len(_PREFIX) :]
    if path in ("", ":memory:"):
        return None
    return Path(os.path.expanduser(path))


def _q(name: str) -> str:
    return f'"{name}"'


def _insert_sql(table: str, columns: Sequence[str], tail: str = "") -> str:
    names = ", ".join(_q(c) for c in columns)
    params = ", ".join(f":{c}" for c in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({params}){tail}"


def _upsert_sql(table: str, columns: Sequence[str], keys: Sequence[str], updates: Iterable[str]) -> str:
    sets = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in updates)
    conflict = ", ".join(_q(k) for k in keys)
    return _insert_sql(table, columns, f" ON CONFLICT ({conflict}) DO UPDATE SET {sets}")


_INSERT_ARTIFACT = _insert_sql("artifacts", _ARTIFACT_COLUMNS)
_UPSERT_ARTIFACT = _upsert_sql(
    "artifacts", _ARTIFACT_COLUMNS, ("experiment_key", "tag"), _ARTIFACT_COLUMNS[2:]
)
_UPSERT_METRIC = _upsert_sql("metric_summaries", _METRIC_COLUMNS, ("experiment_key", "name"), METRIC_UPDATES)
_INSERT_OUTPUT = (
    "INSERT INTO output_chunks (experiment_key, attempt, seq, text, time) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (experiment_key, attempt, seq) DO NOTHING"
)
_INSERT_EVENT = "INSERT INTO status_events (experiment_key, status, time, reason, worker) VALUES (?, ?, ?, ?, ?)"
_ANY_LAPSED = (
    "SELECT 1 FROM experiments WHERE (status = 'running' AND lease_expires < ?)"
    " OR (status = 'queued' AND lifetime IS NOT NULL AND time_added + lifetime < ?)"
    " OR (status = 'queued' AND queue IS NULL AND time_added < ?) LIMIT 1"
)
_SELECT_ROW = 'SELECT * FROM experiments WHERE "key" = ?'
# What a checkpoint or an end needs of the row (not its JSON columns: pythonenv alone is kBs).
_SELECT_STATE = 'SELECT status, time_started, time_finished FROM experiments WHERE "key" = ?'
_SELECT_ARTIFACTS = "SELECT * FROM artifacts WHERE experiment_key = ? ORDER BY tag"


def _encode(values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values as SQLite stores them: JSON columns as JSON text (as SQLAlchemy's JSON type
    writes them), booleans as 0/1."""
    return {
        c: _json(c, v) if c in JSON_COLUMNS else int(v) if isinstance(v, bool) else v
        for c, v in values.items()
    }


#: The last `pythonenv` written and its JSON text: experiments recorded one after another by
#: a process share their installed packages (kBs of JSON). Lists of strings only: equal
#: values then have equal JSON (unlike True and 1).
_last_pythonenv: list[tuple[tuple[str, ...], str]] = []


def _json(column: str, value: Any) -> str:
    if column != "pythonenv" or not isinstance(value, (list, tuple)):
        return json.dumps(value)
    packages = tuple(value)
    if _last_pythonenv and _last_pythonenv[0][0] == packages:
        return _last_pythonenv[0][1]
    text = json.dumps(value)
    if all(type(p) is str for p in packages):
        _last_pythonenv[:] = [(packages, text)]
    return text


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    values = dict(zip(row.keys(), row, strict=True))
    for c in JSON_COLUMNS:
        if values.get(c) is not None:
            values[c] = json.loads(values[c])
    return values


def _revision(conn: sqlite3.Connection) -> str | None:
    """The schema revision of the database (None without a studio schema)."""
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # no such table: not a studio database yet
        return None
    return None if row is None else str(row[0])


def open_lite_store(url: str, *, create: bool = True) -> MetaStore:
    """A store on `url`: the fast path for a SQLite file at the current schema; anything else
    is opened (and created, migrated or refused) by the SQLAlchemy store."""
    path = sqlite_file(url)
    if path is not None and path.is_file():
        store = LiteSqliteStore(url, path)
        try:
            # On the store's own connection: closing a separate one would checkpoint the WAL.
            current = store._read(_revision) == HEAD_REVISION
        except StoreError:
            current = False  # not a database, or unreadable: the SQLAlchemy store says why
        if current:
            return store
        store.close()
    from studio.meta.sql import open_sql_store

    full = open_sql_store(url, create=create)
    if path is None:
        return full
    return LiteSqliteStore(url, path, full=full)


class LiteSqliteStore(MetaStore):
    """See the module docstring. Thread-safe: one connection, one transaction at a time."""

    def __init__(self, url: str, path: Path, full: MetaStore | None = None) -> None:
        self.url = url
        self.path = path
        self._queue = WriterQueue(str(path))
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._full = full
        self._full_lock = threading.Lock()
        self._background_checkpoints = False
        self._written = 0  # transactions committed since the last background checkpoint
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpointer_pid = 0
        self._checkpointer_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LiteSqliteStore({self.url!r})"

    # -- plumbing ----------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        # A forked child must not use its parent's connection (SQLite forbids it): reopen.
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            if self._background_checkpoints:
                conn.execute(f"PRAGMA wal_autocheckpoint={BACKGROUND_AUTOCHECKPOINT}")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    # -- WAL checkpoints off the writer's thread ----------------------------------------
    def checkpoint_in_background(self) -> None:
        """The caller's background thread calls `checkpoint_wal()` every fraction of a second
        from now on (the workbook's ticker): commits then leave copying the WAL into the
        database, and its fsyncs, to that thread (SQLite otherwise does it inside the COMMIT
        that crosses 1,000 pages: 15-30 ms every few dozen experiments of a loop). Commits are
        as durable as before (WAL, `synchronous=NORMAL`); if that thread falls behind, a commit
        checkpoints as before once the WAL reaches BACKGROUND_AUTOCHECKPOINT pages."""
        with self._lock:
            if self._background_checkpoints:
                return
            self._background_checkpoints = True
            if self._conn is not None and self._pid == os.getpid():
                self._conn.execute(f"PRAGMA wal_autocheckpoint={BACKGROUND_AUTOCHECKPOINT}")

    def checkpoint_wal(self) -> None:
        """A passive checkpoint (never waits for readers or writers) on a connection of its
        own, if anything was committed since the last one. Never raises: a checkpoint that
        cannot run now runs next time."""
        if not self._written:
            return
        self._written = 0
        with self._checkpointer_lock:
            try:
                if self._checkpointer is None or self._checkpointer_pid != os.getpid():
                    self._checkpointer = sqlite3.connect(self.path, timeout=0, isolation_level=None,
                                                         check_same_thread=False)  # fmt: skip
                    self._checkpointer_pid = os.getpid()
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                log.debug("WAL checkpoint of %s skipped: %s", self.path, exc)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._run(fn, write=False)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._run(fn, write=True)

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        for attempt in range(RETRIES + 1):
            try:
                with self._queue.hold() if write else contextlib.nullcontext(), self._lock:
                    conn = self._connection()
                    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    try:
                        result = fn(conn)
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                    if write:
                        self._written += 1
                    return result
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise StoreError(f"database error on {self.url}: {exc}") from exc
                if attempt == RETRIES:
                    raise StoreError(
                        f"database {self.url} stayed busy through {RETRIES} retries: "
                        "try again, or move many concurrent writers to PostgreSQL"
                    ) from exc
                delay = retry_delay(attempt)
                log.warning("transient database error (%s); retrying in %.2fs", exc, delay)
                time.sleep(delay)
            except sqlite3.IntegrityError:
                raise  # a constraint the method did not expect: a bug, shown as such
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"database error on {self.url}: {exc}") from exc
        raise AssertionError("unreachable")

    def _full_store(self) -> MetaStore:
        """The SQLAlchemy store on the same file, for everything the fast path does not run."""
        if self._full is None:
            with self._full_lock:
                if self._full is None:
                    from studio.meta.sql import open_sql_store

                    self._full = open_sql_store(self.url, create=False)
        return self._full

    @staticmethod
    def _load(c: sqlite3.Connection, key: str) -> dict[str, Any]:
        row = c.execute(_SELECT_ROW, (key,)).fetchone()
        if row is None:
            raise not_found(key)
        return _decode(row)

    @staticmethod
    def _state(c: sqlite3.Connection, key: str) -> dict[str, Any]:
        row = c.execute(_SELECT_STATE, (key,)).fetchone()
        if row is None:
            raise not_found(key)
        return dict(zip(row.keys(), row, strict=True))

    @staticmethod
    def _entity(
        c: sqlite3.Connection, row: Mapping[str, Any], changes: Mapping[str, Any] | None = None
    ) -> Experiment:
        artifacts = c.execute(_SELECT_ARTIFACTS, (row["key"],)).fetchall()
        return experiment_entity({**row, **(changes or {})}, [artifact_entity(a) for a in artifacts])

    @staticmethod
    def _update(c: sqlite3.Connection, key: str, values: Mapping[str, Any]) -> None:
        if values:
            sets = ", ".join(f"{_q(name)} = :{name}" for name in values)
            c.execute(f'UPDATE experiments SET {sets} WHERE "key" = :_k', {**_encode(values), "_k": key})

    @staticmethod
    def _event(
        c: sqlite3.Connection, key: str, status: Status | str, at: float,
        reason: str | None = None, worker: str | None = None,
    ) -> None:
        c.execute(_INSERT_EVENT, (key, Status(status).value, at, reason, worker))

    # -- experiments -------------------------------------------------------------------
    def create_experiment(self, exp: Experiment) -> Experiment:
        values = new_experiment_values(exp, time.time())
        artifacts = [a.replace(tag=tag) for tag, a in exp.artifacts.items()]
        insert = _insert_sql("experiments", list(values))

        def tx(c: sqlite3.Connection) -> Experiment:
            try:
                c.execute(insert, _encode(values))
            except sqlite3.IntegrityError as e:
                if "UNIQUE constraint failed" in str(e):
                    raise ConflictError(duplicate_key(exp.key)) from e
                raise
            if artifacts:
                c.executemany(_INSERT_ARTIFACT, [_encode(artifact_values(exp.key, a)) for a in artifacts])
            self._event(c, exp.key, values["status"], values["time_added"], exp.status_reason, exp.worker)
            return experiment_entity(values, artifacts)

        return self._write(tx)

    def get_experiment(self, key: str) -> Experiment:
        return self._read(lambda c: self._entity(c, self._load(c, key)))

    def update_experiment(self, key: str, **fields: Any) -> Experiment:
        values = column_values(fields)

        def tx(c: sqlite3.Connection) -> Experiment:
            row = self._load(c, key)
            self._update(c, key, values)
            return self._entity(c, row, values)

        return self._write(tx)

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
        new = Status(status)
        allowed = None if expect is None else {Status(x) for x in expect}
        values = column_values(fields)

        def tx(c: sqlite3.Connection) -> Experiment:
            row = self._load(c, key)
            check_status_change(key, Status(row["status"]), new, allowed)
            now = time.time()
            changes = status_changes(row, new, now=now, reason=reason, worker=worker, fields=values)
            self._update(c, key, changes)
            self._event(c, key, new, now, reason, worker)
            return self._entity(c, row, changes)

        return self._write(tx)

    # -- artifacts, supervision, output, metrics -----------------------------------------
    def put_artifact(self, key: str, artifact: ArtifactSpec) -> None:
        values = _encode(artifact_values(key, artifact))

        def tx(c: sqlite3.Connection) -> None:
            try:
                c.execute(_UPSERT_ARTIFACT, values)
            except sqlite3.IntegrityError as e:  # foreign key: no such experiment
                raise not_found(key) from e

        self._write(tx)

    def put_checkpoint(
        self, key: str, artifacts: Sequence[ArtifactSpec], at: float, *, fields: Mapping[str, Any] | None = None
    ) -> None:
        rows = [_encode(artifact_values(key, a)) for a in artifacts]
        checkpoint = column_values({**(fields or {}), "time_last_checkpoint": at})

        def tx(c: sqlite3.Connection) -> None:
            self._state(c, key)  # NotFoundError, as update_experiment raises
            self._checkpoint(c, key, rows, checkpoint)

        self._write(tx)

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
        # One transaction: a workbook run that ends right after it starts writes its row twice
        # (created, ended), not three times. `synchronous=NORMAL` as for every commit here.
        rows = [_encode(artifact_values(key, a)) for a in artifacts]
        checkpoint = column_values({**(fields or {}), "time_last_checkpoint": at})
        new = Status(status)
        allowed = None if expect is None else {Status(x) for x in expect}
        values = column_values(status_fields)

        def tx(c: sqlite3.Connection) -> ConflictError | None:
            row = self._state(c, key)
            try:
                check_status_change(key, Status(row["status"]), new, allowed)
            except ConflictError as exc:  # the checkpoint is still recorded
                self._checkpoint(c, key, rows, checkpoint)
                return exc
            now = time.time()
            # One UPDATE: SQLite rewrites the whole row (its kBs of JSON) for each.
            changes = status_changes(row, new, now=now, reason=reason, worker=worker, fields=values)
            self._checkpoint(c, key, rows, {**checkpoint, **changes})
            self._event(c, key, new, now, reason, worker)
            return None

        refused = self._write(tx)
        if refused is not None:
            raise refused

    @staticmethod
    def _checkpoint(
        c: sqlite3.Connection, key: str, rows: list[dict[str, Any]], values: Mapping[str, Any]
    ) -> None:
        try:
            c.executemany(_UPSERT_ARTIFACT, rows)
        except sqlite3.IntegrityError as e:
            raise not_found(key) from e
        LiteSqliteStore._update(c, key, values)

    def heartbeat(self, key: str, worker: str, lease_seconds: float) -> bool:
        def tx(c: sqlite3.Connection) -> bool:
            now = time.time()
            updated = c.execute(
                'UPDATE experiments SET heartbeat = ?, lease_expires = ? WHERE "key" = ? AND status = ? AND worker = ?',
                (now, now + lease_seconds, key, Status.RUNNING.value, worker),
            ).rowcount
            row = c.execute('SELECT status, worker, stop_requested FROM experiments WHERE "key" = ?', (key,)).fetchone()
            if row is None:
                raise not_found(key)
            if updated:
                return bool(row["stop_requested"])
            raise lease_lost(key, worker, row["status"], row["worker"])

        return self._write(tx)

    def append_output(self, key: str, attempt: int, seq: int, text: str) -> None:
        def tx(c: sqlite3.Connection) -> None:
            try:
                c.execute(_INSERT_OUTPUT, (key, attempt, seq, text, time.time()))
            except sqlite3.IntegrityError as e:  # foreign key: no such experiment
                raise not_found(key) from e

        self._write(tx)

    def put_metric_summaries(self, key: str, summaries: Sequence[MetricSummary]) -> None:
        if not summaries:
            return
        now = time.time()
        rows = [metric_values(key, m, now) for m in {m.key: m for m in summaries}.values()]

        def tx(c: sqlite3.Connection) -> None:
            try:
                c.executemany(_UPSERT_METRIC, rows)
            except sqlite3.IntegrityError as e:
                raise not_found(key) from e

        self._write(tx)

    def get_experiments(self, keys: Sequence[str]) -> list[Experiment]:
        # `studio run -e NAME` asks for a family of keys (studio.api.names): point lookups here
        # spare every named run the SQLAlchemy import.
        def read(c: sqlite3.Connection) -> list[Experiment]:
            rows = (c.execute(_SELECT_ROW, (key,)).fetchone() for key in keys)
            return [self._entity(c, _decode(row)) for row in rows if row is not None]

        return self._read(read)

    # -- everything else: the SQLAlchemy store -------------------------------------------

    def query(self, q: ExperimentQuery) -> Page:
        return self._full_store().query(q)

    def delete_experiment(self, key: str) -> None:
        self._full_store().delete_experiment(key)

    def status_history(self, key: str) -> list[StatusEvent]:
        return self._full_store().status_history(key)

    def referenced_trees(self) -> set[str]:
        return self._full_store().referenced_trees()

    def request_stop(
        self, key: str, *, status: Status = Status.STOPPED, reason: str | None = None
    ) -> Experiment:
        return self._full_store().request_stop(key, status=status, reason=reason)

    def claim(
        self, queue: str, worker: str, lease_seconds: float, resources: dict[str, Any] | None = None
    ) -> Experiment | None:
        return self._full_store().claim(queue, worker, lease_seconds, resources)

    def requeue_expired(self, max_attempts: int) -> list[str]:
        # Usually nothing has lapsed: one indexed read here spares opening the SQLAlchemy store
        # (tens of ms for a fresh `ExperimentRepository()`). The conditions are those of
        # `studio.meta.sql.leases.requeue_expired`, which does the work when one matches; the
        # clock is this process's, as there.
        now = time.time()
        from studio.meta.records import ABANDONED_AFTER

        args = (now, now, now - ABANDONED_AFTER)
        if not self._read(lambda c: c.execute(_ANY_LAPSED, args).fetchone() is not None):
            return []
        return self._full_store().requeue_expired(max_attempts)

    def queue_counts(self) -> dict[str, dict[str, int]]:
        return self._full_store().queue_counts()

    def read_output(self, key: str, after_seq: int = -1, attempt: int | None = None) -> list[OutputChunk]:
        return self._full_store().read_output(key, after_seq, attempt)

    def metric_summaries(self, keys: Sequence[str]) -> dict[str, list[MetricSummary]]:
        return self._full_store().metric_summaries(keys)

    def projects(self) -> list[dict[str, Any]]:
        return self._full_store().projects()

    def put_sweep(self, project: str, state: str) -> None:
        self._full_store().put_sweep(project, state)

    def get_sweep(self, project: str) -> str:
        return self._full_store().get_sweep(project)

    def sweeps(self) -> list[str]:
        return self._full_store().sweeps()

    def worker_seen(self, worker: str, queue: str, state: str, experiment: str | None = None,
                    host: str = "") -> None:
        self._full_store().worker_seen(worker, queue, state, experiment, host)

    def worker_gone(self, worker: str) -> None:
        self._full_store().worker_gone(worker)

    def workers(self) -> list[dict[str, Any]]:
        return self._full_store().workers()

    def metric_extremes(self) -> dict[str, tuple[Experiment, Experiment]]:
        return self._full_store().metric_extremes()

    def users(self) -> list[dict[str, Any]]:
        return self._full_store().users()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
        with self._checkpointer_lock:
            if self._checkpointer is not None and self._checkpointer_pid == os.getpid():
                self._checkpointer.close()
            self._checkpointer, self._written = None, 0
        if self._full is not None:
            self._full.close()
