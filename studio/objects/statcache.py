"""Stat cache: remember the hash of a file while its (inode, size, mtime, ctime) stay the same.

A small SQLite file (WAL journal, busy timeout), safe for several processes: each writer
holds the lock for one short batch transaction. A lookup hits only when all four stat
fields match, so editing, replacing (new inode), truncating or `touch`-ing a file forces a
re-hash.

Racy entries: file systems record times with a coarse granularity (a kernel tick, or up to
2 s on some), so a file rewritten twice within one tick can keep its stat. Like git, the
cache does not trust a stat that is too young: entries whose mtime or ctime lies within
`RACY_NS` of the moment they were hashed are not stored, and get hashed again next time.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from studio.exceptions import StoreError

log = logging.getLogger(__name__)

RACY_NS = 2_000_000_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS stat (
    path TEXT PRIMARY KEY,
    inode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    hash TEXT NOT NULL
) WITHOUT ROWID
"""


class StatKey(NamedTuple):
    """A tuple, not a dataclass: a re-capture builds and compares one per file (10,000s),
    and a tuple's construction and equality run in C."""

    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> StatKey:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def is_racy(self, now_ns: int) -> bool:
        return now_ns - max(self.mtime_ns, self.ctime_ns) < RACY_NS


class StatCache:
    """Map absolute path -> (stat key, hash). Thread-safe; process-safe through SQLite."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                str(self.path), timeout=timeout, check_same_thread=False, isolation_level=None
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open stat cache {self.path}: {exc}; delete the file to reset it") from exc

    def lookup(self, path: str, key: StatKey) -> str | None:
        """The cached hash of `path` if its stat still matches `key`, else None."""
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT inode, size, mtime_ns, ctime_ns, hash FROM stat WHERE path = ?", (path,)
                ).fetchone()
            except sqlite3.Error as exc:  # a cache: a failure only costs a re-hash
                log.warning("stat cache %s unreadable (%s); hashing instead", self.path, exc)
                return None
        if row is None or StatKey(row[0], row[1], row[2], row[3]) != key:
            return None
        return str(row[4])

    def under(self, folder: str) -> dict[str, tuple[StatKey, str]]:
        """Every entry below `folder` (an absolute path), read in one query: a capture asks
        for thousands of files, one index range scan beats one query per file."""
        lo = folder.rstrip(os.sep) + os.sep
        hi = lo[:-1] + chr(ord(os.sep) + 1)
        return self._select("path >= ? AND path < ?", (lo, hi))

    def get(self, path: str) -> dict[str, tuple[StatKey, str]]:
        return self._select("path = ?", (path,))

    def _select(self, where: str, args: tuple[str, ...]) -> dict[str, tuple[StatKey, str]]:
        sql = f"SELECT path, inode, size, mtime_ns, ctime_ns, hash FROM stat WHERE {where}"
        with self._lock:
            try:
                rows = self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:  # a cache: a failure only costs re-hashing
                log.warning("stat cache %s unreadable (%s); hashing instead", self.path, exc)
                return {}
        make = StatKey._make
        return {r[0]: (make(r[1:5]), r[5]) for r in rows}

    def record(self, items: Iterable[tuple[str, StatKey, str]], now_ns: int | None = None) -> int:
        """Store (path, stat key, hash) rows in one transaction, skipping racy ones. Returns rows written."""
        now = time.time_ns() if now_ns is None else now_ns
        rows = [
            (path, k.inode, k.size, k.mtime_ns, k.ctime_ns, h) for path, k, h in items if not k.is_racy(now)
        ]
        if not rows:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO stat VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                log.warning("stat cache %s not updated (%s); files will be hashed again", self.path, exc)
                return 0
        return len(rows)

    def forget(self, paths: Iterable[str]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM stat WHERE path = ?", ((p,) for p in paths))
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM stat").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
