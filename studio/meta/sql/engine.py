"""Engines and transactions for the SQL metadata store.

SQLite is made safe for many processes at once:
- WAL journal (readers never block the writer and vice versa), `synchronous=NORMAL`
  (a commit survives a crash of the process; the last commits may be lost on power loss);
- `busy_timeout` of 30 s, so a writer waits for the lock instead of failing;
- write transactions start with `BEGIN IMMEDIATE`: the write lock is taken up front, so two
  writers never both read and then collide on upgrade to a write lock (the classic source of
  "database is locked" that no busy timeout fixes); reads use a plain deferred `BEGIN`;
- writers on one machine queue on an `flock` of `<database>-writers` before BEGIN: the kernel
  wakes the next writer the moment the lock is free, where SQLite's busy handler polls with
  sleeps of up to 100 ms (under contention writers spent most of their time asleep: 4 busy
  processes ran 2.7x slower than one);
- `Transactions.write` still retries a few times on "database is locked" as a last resort.

PostgreSQL uses READ COMMITTED with explicit row locks (`FOR UPDATE`, `SKIP LOCKED` for claims);
a serialization failure, a deadlock or a connection the server dropped is retried the same way.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool

from studio.exceptions import StoreError
from studio.meta.writer_queue import BUSY_TIMEOUT_S, RETRIES, WriterQueue, retry_delay

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def redact(url: URL | str) -> str:
    """The URL with any password hidden, for messages and logs."""
    return (make_url(url) if isinstance(url, str) else url).render_as_string(hide_password=True)


def make_engine(url: str | URL) -> Engine:
    """An engine for a `sqlite:///` or `postgresql+psycopg://` URL, configured as described above."""
    u = make_url(url) if isinstance(url, str) else url
    if u.get_backend_name() == "sqlite":
        return _sqlite_engine(u)
    # No pool_pre_ping (a round trip per transaction): a connection found dead when used is
    # invalidated by SQLAlchemy and the transaction retried (`is_retryable`).
    return create_engine(u, pool_size=5, max_overflow=10, pool_recycle=3600)


def _sqlite_engine(url: URL) -> Engine:
    memory = url.database in (None, "", ":memory:")
    engine = create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
        # A file database keeps a pooled connection per thread; an in-memory database exists
        # only inside its one connection, which every thread must share.
        poolclass=StaticPool if memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook issue BEGIN itself (pysqlite would defer it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        # Straight to the driver: SQLAlchemy's statement machinery costs more than the BEGIN.
        conn.connection.driver_connection.execute(f"BEGIN {mode}")

    return engine


def write_engine(engine: Engine) -> Engine:
    """The same engine (and pool) whose transactions take the SQLite write lock at BEGIN."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(sqlite_begin="IMMEDIATE")
    return engine


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:  # the server closed it (restart, idle timeout)
            return True
        return getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES
    return False


class Transactions:
    """Runs a function in one transaction (a Core `Connection`: the store needs no ORM session),
    committing on success and retrying the whole function when the database reports a
    transient lock conflict."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        database = engine.url.database
        self._queue: WriterQueue | None = None
        self._read_queue: WriterQueue | None = None
        if engine.dialect.name == "sqlite":
            if database and database != ":memory:":
                self._queue = WriterQueue(database)
            else:  # one shared connection: every transaction takes turns
                self._queue = self._read_queue = WriterQueue(None)
        self._write_engine = write_engine(engine)

    def read(self, fn: Callable[[Connection], T]) -> T:
        return self._run(self.engine, fn, self._read_queue)

    def write(self, fn: Callable[[Connection], T]) -> T:
        return self._run(self._write_engine, fn, self._queue)

    def _run(self, engine: Engine, fn: Callable[[Connection], T], queue: WriterQueue | None) -> T:
        for attempt in range(RETRIES + 1):
            try:
                with queue.hold() if queue else contextlib.nullcontext():
                    with engine.connect() as conn, conn.begin():
                        return fn(conn)
            except DBAPIError as exc:
                if not is_retryable(exc):
                    raise StoreError(
                        f"database error on {redact(self.engine.url)}: {exc.orig}"
                    ) from exc
                if attempt == RETRIES:
                    raise StoreError(
                        f"database {redact(self.engine.url)} stayed busy through {RETRIES} retries: "
                        "try again, or move many concurrent writers to PostgreSQL"
                    ) from exc
                delay = retry_delay(attempt)
                log.warning("transient database error (%s); retrying in %.2fs", exc.orig, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")
