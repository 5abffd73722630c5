"""`SqlMetaStore`: the MetaStore on SQLAlchemy, for SQLite and PostgreSQL.

Every method is one transaction run by `engine.Transactions` (write methods take the SQLite
write lock at BEGIN and are retried on transient lock errors). Rows never escape: results are
the frozen entities of `studio.entities`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, case, delete, func, or_, select, text
from sqlalchemy.exc import IntegrityError

from studio.entities import (
    ArtifactSpec,
    Experiment,
    ExperimentQuery,
    MetricSummary,
    Status,
    StatusEvent,
)
from studio.exceptions import NotFoundError
from studio.meta.base import MetaStore, OutputChunk, Page
from studio.meta.records import (
    METRIC_UPDATES,
    MIN_SKEW_S,
    TIME_FIELDS,
    check_status_change,
    metric_values,
    shift_times,
)
from studio.meta.sql import leases, query
from studio.meta.sql.engine import Transactions
from studio.meta.sql.rows import (
    artifact_values,
    change_status,
    column_values,
    entity,
    exists,
    insert_experiment,
    load,
    load_artifacts,
    not_found,
    update_row,
)
from studio.meta.sql.tables import (
    ARTIFACTS,
    EVENTS,
    EXPERIMENTS,
    METRICS,
    OUTPUT,
    SWEEPS,
    WORKERS,
    event_entity,
    experiment_entity,
    metric_entity,
)

#: Keys per `IN (...)` list, well under every backend's bound-parameter limit.
_CHUNK = 500
#: Seconds between two readings of a shared database's clock.
CLOCK_REFRESH_S = 60.0


def _chunks(keys: Sequence[str]) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(keys))
    for i in range(0, len(unique), _CHUNK):
        yield unique[i : i + _CHUNK]


class SqlMetaStore(MetaStore):
    """The metadata store on a SQLAlchemy engine (see `studio.meta.open_meta_store`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._tx = Transactions(engine)
        self._skew, self._skew_read = 0.0, -CLOCK_REFRESH_S * 2

    def clock_skew(self) -> float:
        """Seconds to add to this machine's clock to get the database's. A PostgreSQL database
        is shared by machines whose clocks may differ: leases, heartbeats, lifetimes and the
        times a run records follow its clock (read once a minute), so a machine whose clock
        runs fast can neither requeue a healthy run nor lose its own. SQLite lives on this
        machine: 0."""
        if self.dialect != "postgresql":
            return 0.0
        mono = time.monotonic()
        if mono - self._skew_read >= CLOCK_REFRESH_S:
            before = time.time()
            with self.engine.connect() as c:
                theirs = float(c.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one())
            skew = theirs - (before + time.time()) / 2
            self._skew, self._skew_read = (skew if abs(skew) >= MIN_SKEW_S else 0.0), mono
        return self._skew

    def _now(self) -> float:
        return time.time() + self.clock_skew()

    def __repr__(self) -> str:
        return f"SqlMetaStore({self.engine.url.render_as_string(hide_password=True)!r})"

    def _insert(self, table: Any) -> Any:
        # The dialect's own INSERT (for ON CONFLICT), imported for the backend in use only:
        # the PostgreSQL dialect costs a SQLite `studio run` about 0.05 s to import.
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)

    # -- experiments -------------------------------------------------------------------
    def create_experiment(self, exp: Experiment) -> Experiment:
        skew = self.clock_skew()
        if skew:
            exp = exp.replace(**shift_times({f: getattr(exp, f) for f in TIME_FIELDS}, skew))
        now = time.time() + skew
        return self._tx.write(lambda s: insert_experiment(s, exp, now))

    def get_experiment(self, key: str) -> Experiment:
        return self._tx.read(lambda s: entity(s, load(s, key)))

    def get_experiments(self, keys: Sequence[str]) -> list[Experiment]:
        def tx(s: Connection) -> list[Experiment]:
            found: dict[str, Experiment] = {}
            for chunk in _chunks(keys):
                stmt = select(EXPERIMENTS).where(EXPERIMENTS.c.key.in_(chunk))
                rows = s.execute(stmt).mappings().all()
                artifacts = load_artifacts(s, [r["key"] for r in rows])
                found.update((r["key"], experiment_entity(r, artifacts[r["key"]])) for r in rows)
            return [found[k] for k in keys if k in found]

        return self._tx.read(tx)

    def query(self, q: ExperimentQuery) -> Page:
        page, count = query.build(q, self.dialect)

        def tx(s: Connection) -> Page:
            result = s.execute(page)
            names = list(result.keys())
            items = [experiment_entity(query.unpack(names, r)) for r in result]
            if not q.offset and (q.limit is None or len(items) < q.limit):
                total = len(items)  # the whole result fits in this page: no COUNT needed
            else:
                total = int(s.execute(count).scalar_one())
            return Page(items=items, total=total)

        return self._tx.read(tx)

    def update_experiment(self, key: str, **fields: Any) -> Experiment:
        values = column_values(shift_times(fields, self.clock_skew()))

        def tx(s: Connection) -> Experiment:
            row = load(s, key, lock=True)
            update_row(s, key, values)
            return entity(s, row, values)

        return self._tx.write(tx)

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
        """See MetaStore.set_status. Bookkeeping that every change implies, unless `fields`
        say otherwise: to `running` sets the heartbeat, `time_started` (if unset) and the
        worker; to `queued` clears worker and lease; to a terminal status clears the lease and
        sets `time_finished`. `status_reason` becomes `reason`."""
        new = Status(status)
        allowed = None if expect is None else {Status(x) for x in expect}
        skew = self.clock_skew()
        values = column_values(shift_times(fields, skew))

        def tx(s: Connection) -> Experiment:
            row = load(s, key, lock=True)
            check_status_change(key, Status(row["status"]), new, allowed)
            now = time.time() + skew
            changes = change_status(
                s, row, new, now=now, reason=reason, worker=worker, fields=values
            )
            return entity(s, row, changes)

        return self._tx.write(tx)

    def delete_experiment(self, key: str) -> None:
        def tx(s: Connection) -> None:
            # Artifacts, events, output and metric summaries go by ON DELETE CASCADE.
            result = s.execute(delete(EXPERIMENTS).where(EXPERIMENTS.c.key == key))
            if not getattr(result, "rowcount", 0):
                raise not_found(key)

        self._tx.write(tx)

    def status_history(self, key: str) -> list[StatusEvent]:
        def tx(s: Connection) -> list[StatusEvent]:
            stmt = select(EVENTS).where(EVENTS.c.experiment_key == key).order_by(EVENTS.c.id)
            events = [event_entity(e) for e in s.execute(stmt).mappings()]
            if not events and not exists(s, key):
                raise not_found(key)
            return events

        return self._tx.read(tx)

    # -- artifacts ---------------------------------------------------------------------
    def put_artifact(self, key: str, artifact: ArtifactSpec) -> None:
        values = artifact_values(key, artifact)
        ins = self._insert(ARTIFACTS).values(**values)
        stmt = ins.on_conflict_do_update(
            index_elements=["experiment_key", "tag"],
            set_={
                c: getattr(ins.excluded, c) for c in values if c not in ("experiment_key", "tag")
            },
        )

        def tx(s: Connection) -> None:
            try:
                s.execute(stmt)
            except IntegrityError as e:  # foreign key: no such experiment
                raise not_found(key) from e

        self._tx.write(tx)

    def referenced_trees(self) -> set[str]:
        stmt = select(ARTIFACTS.c.tree).where(ARTIFACTS.c.tree.is_not(None)).distinct()
        return self._tx.read(lambda s: {t for t in s.execute(stmt).scalars() if t})

    # -- supervision and queue ---------------------------------------------------------
    def heartbeat(self, key: str, worker: str, lease_seconds: float) -> bool:
        return self._tx.write(lambda s: leases.heartbeat(s, key, worker, lease_seconds, self._now()))

    def request_stop(
        self, key: str, *, status: Status = Status.STOPPED, reason: str | None = None
    ) -> Experiment:
        return self._tx.write(lambda s: leases.request_stop(s, key, status, reason, self._now()))

    def claim(
        self,
        queue: str,
        worker: str,
        lease_seconds: float,
        resources: dict[str, Any] | None = None,
    ) -> Experiment | None:
        return self._tx.write(lambda s: leases.claim(s, queue, worker, lease_seconds, resources, self._now()))

    def requeue_expired(self, max_attempts: int) -> list[str]:
        return self._tx.write(lambda s: leases.requeue_expired(s, max_attempts, self._now()))

    def queue_counts(self) -> dict[str, dict[str, int]]:
        return self._tx.read(leases.queue_counts)

    # -- output ------------------------------------------------------------------------
    def append_output(self, key: str, attempt: int, seq: int, text: str) -> None:
        stmt = (
            self._insert(OUTPUT)
            .values(experiment_key=key, attempt=attempt, seq=seq, text=text, time=time.time())
            .on_conflict_do_nothing(index_elements=["experiment_key", "attempt", "seq"])
        )

        def tx(s: Connection) -> None:
            try:
                s.execute(stmt)
            except IntegrityError as e:  # foreign key: no such experiment
                raise not_found(key) from e

        self._tx.write(tx)

    def read_output(
        self, key: str, after_seq: int = -1, attempt: int | None = None
    ) -> list[OutputChunk]:
        def tx(s: Connection) -> list[OutputChunk]:
            which = attempt
            if which is None:
                which = s.execute(
                    select(func.max(OUTPUT.c.attempt)).where(OUTPUT.c.experiment_key == key)
                ).scalar()
            if which is None:
                if not exists(s, key):
                    raise not_found(key)
                return []
            stmt = (
                select(OUTPUT.c.seq, OUTPUT.c.attempt, OUTPUT.c.text, OUTPUT.c.time)
                .where(
                    OUTPUT.c.experiment_key == key,
                    OUTPUT.c.attempt == which,
                    OUTPUT.c.seq > after_seq,
                )
                .order_by(OUTPUT.c.seq)
            )
            chunks = [
                OutputChunk(seq=r[0], attempt=r[1], text=r[2], time=r[3]) for r in s.execute(stmt)
            ]
            if not chunks and attempt is not None and not exists(s, key):
                raise not_found(key)
            return chunks

        return self._tx.read(tx)

    # -- metrics -----------------------------------------------------------------------
    def put_metric_summaries(self, key: str, summaries: Sequence[MetricSummary]) -> None:
        if not summaries:
            return
        now = time.time()
        rows = [metric_values(key, m, now) for m in {m.key: m for m in summaries}.values()]
        ins = self._insert(METRICS).values(rows)
        stmt = ins.on_conflict_do_update(
            index_elements=["experiment_key", "name"],
            set_={c: getattr(ins.excluded, c) for c in METRIC_UPDATES},
        )

        def tx(s: Connection) -> None:
            try:
                s.execute(stmt)
            except IntegrityError as e:
                raise not_found(key) from e

        self._tx.write(tx)

    def metric_summaries(self, keys: Sequence[str]) -> dict[str, list[MetricSummary]]:
        def tx(s: Connection) -> dict[str, list[MetricSummary]]:
            result: dict[str, list[MetricSummary]] = {k: [] for k in keys}
            for chunk in _chunks(keys):
                stmt = (
                    select(METRICS)
                    .where(METRICS.c.experiment_key.in_(chunk))
                    .order_by(METRICS.c.experiment_key, METRICS.c.name)
                )
                for m in s.execute(stmt).mappings():
                    result[m["experiment_key"]].append(metric_entity(m))
            return result

        return self._tx.read(tx)

    # -- sweeps ------------------------------------------------------------------------
    def put_sweep(self, project: str, state: str) -> None:
        ins = self._insert(SWEEPS).values(project=project, state=state, updated=time.time())
        stmt = ins.on_conflict_do_update(
            index_elements=["project"], set_={"state": ins.excluded.state, "updated": ins.excluded.updated}
        )
        self._tx.write(lambda s: s.execute(stmt))

    def get_sweep(self, project: str) -> str:
        stmt = select(SWEEPS.c.state).where(SWEEPS.c.project == project)
        state = self._tx.read(lambda s: s.execute(stmt).scalar())
        if state is None:
            raise NotFoundError(f"no sweep {project!r}: list sweeps with `studio sweep list`")
        return str(state)

    def sweeps(self) -> list[str]:
        stmt = select(SWEEPS.c.project).order_by(SWEEPS.c.project)
        return self._tx.read(lambda s: [str(p) for p in s.execute(stmt).scalars()])

    # -- workers -----------------------------------------------------------------------
    def worker_seen(self, worker: str, queue: str, state: str, experiment: str | None = None,
                    host: str = "") -> None:
        now = time.time()
        ins = self._insert(WORKERS).values(id=worker, queue=queue, host=host, state=state, experiment=experiment,
                                           started=now, last_seen=now)
        stmt = ins.on_conflict_do_update(index_elements=["id"], set_={
            "queue": ins.excluded.queue, "host": ins.excluded.host, "state": ins.excluded.state,
            "experiment": ins.excluded.experiment, "last_seen": ins.excluded.last_seen,
        })
        self._tx.write(lambda s: s.execute(stmt))

    def worker_gone(self, worker: str) -> None:
        self._tx.write(lambda s: s.execute(delete(WORKERS).where(WORKERS.c.id == worker)))

    def workers(self) -> list[dict[str, Any]]:
        stmt = select(WORKERS).order_by(WORKERS.c.queue, WORKERS.c.id)
        return self._tx.read(lambda s: [dict(r) for r in s.execute(stmt).mappings()])

    # -- listings ----------------------------------------------------------------------
    def projects(self) -> list[dict[str, Any]]:
        def count_of(status: Status) -> Any:
            return func.sum(case((EXPERIMENTS.c.status == status.value, 1), else_=0))

        stmt = (
            select(
                EXPERIMENTS.c.project,
                func.count(),
                count_of(Status.RUNNING),
                count_of(Status.FINISHED),
                func.max(EXPERIMENTS.c.time_added),
            )
            .group_by(EXPERIMENTS.c.project)
            .order_by(EXPERIMENTS.c.project)
        )
        keys = ("name", "count", "running", "finished", "last_added")
        return self._tx.read(
            lambda s: [
                dict(
                    zip(keys, (r[0], int(r[1]), int(r[2] or 0), int(r[3] or 0), r[4]), strict=True)
                )
                for r in s.execute(stmt)
            ]
        )

    def metric_extremes(self) -> dict[str, tuple[Experiment, Experiment]]:
        def rank(descending: bool) -> Any:
            value = EXPERIMENTS.c.metric_value
            order = (value.desc() if descending else value.asc(), EXPERIMENTS.c.key)
            return func.row_number().over(partition_by=EXPERIMENTS.c.project, order_by=order)

        ranked = (
            select(EXPERIMENTS.c.key, rank(False).label("_lo"), rank(True).label("_hi"))
            .where(EXPERIMENTS.c.metric_value.is_not(None))
            .subquery()
        )
        stmt = (
            select(EXPERIMENTS, ranked.c._lo, ranked.c._hi)
            .join(ranked, ranked.c.key == EXPERIMENTS.c.key)
            .where(or_(ranked.c._lo == 1, ranked.c._hi == 1))
        )

        def tx(s: Connection) -> dict[str, tuple[Experiment, Experiment]]:
            lows: dict[str, Experiment] = {}
            highs: dict[str, Experiment] = {}
            for row in s.execute(stmt).mappings():
                e = experiment_entity(row)
                if row["_lo"] == 1:
                    lows[e.project] = e
                if row["_hi"] == 1:
                    highs[e.project] = e
            return {p: (lows[p], highs[p]) for p in lows}

        return self._tx.read(tx)

    def users(self) -> list[dict[str, Any]]:
        stmt = (
            select(EXPERIMENTS.c.owner, func.count(), func.max(EXPERIMENTS.c.time_added))
            .group_by(EXPERIMENTS.c.owner)
            .order_by(EXPERIMENTS.c.owner)
        )
        return self._tx.read(
            lambda s: [
                {"name": r[0], "count": int(r[1]), "last_added": r[2]} for r in s.execute(stmt)
            ]
        )

    def close(self) -> None:
        self.engine.dispose()
