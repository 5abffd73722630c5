"""The object backend interface: a flat key -> bytes store under one root.

Keys are POSIX-style relative paths such as `objects/ab/cdef...`. The ObjectStore decides
what the keys are (content hashes) and keeps every rule about hashing, trees, caching and
verification; a backend only moves bytes.

Implementations guarantee:
- atomicity: `put_file` makes a key appear with its complete content or not at all, never
  a partial object (temp file then rename, or a single-request upload);
- idempotency: putting a key that exists is harmless (keys name their content, so both
  writers carry the same bytes); deleting a missing key is not an error;
- thread and process safety: any number of threads and processes may call concurrently;
- no secrets: credentials come from the environment or the provider's own configuration,
  never from the URL stored in experiment records;
- ages for the collector: an object's mtime is when it was last written or `freshen`ed, and
  `delete_if_older` deletes only an object that nobody freshened after the cutoff. Writers
  freshen every stored object they rely on instead of writing it, so `studio gc`'s grace
  period counts from the last use of an object, not from its first write (git's rule).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


class ObjectBackend(abc.ABC):
    """Where objects live: a local folder, or any fsspec file system (S3, GCS, memory...)."""

    url: str

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """True if `key` is stored."""

    @abc.abstractmethod
    def size(self, key: str) -> int | None:
        """Size in bytes of `key`, or None if it is not stored."""

    def link_file(self, local_path: Path, key: str) -> bool:
        """Store `local_path` as `key` by hard-linking it (no copy), if this backend can: a
        local store on the same file system. False when it cannot (the caller copies)."""
        return False

    @abc.abstractmethod
    def put_file(self, local_path: Path, key: str, *, move: bool = False) -> None:
        """Store the content of `local_path` as `key`, atomically.

        With move=True the backend may consume `local_path` (rename it into place); the
        caller must not use it afterwards.
        """

    @abc.abstractmethod
    def get_file(self, key: str, local_path: Path) -> None:
        """Write `key` to `local_path` (overwritten; the caller writes to a temp path).
        NotFoundError if `key` is not stored."""

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A binary reader of `key`. NotFoundError if it is not stored."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""

    @abc.abstractmethod
    def walk(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        """Every stored (key, size, mtime in epoch seconds) whose key starts with `prefix`."""

    @abc.abstractmethod
    def freshen(self, key: str, size: int | None, older_than: float) -> bool:
        """True if `key` is stored (with `size` bytes, when given): the caller is about to rely
        on it instead of writing it. If it was last written or freshened more than
        `older_than` seconds ago, its mtime becomes now (a collector that already looked at
        it must see the new age: see `delete_if_older`)."""

    @abc.abstractmethod
    def delete_if_older(self, key: str, cutoff: float) -> bool:
        """Delete `key` only if its mtime is at or before `cutoff` (epoch seconds), judged as
        close to the deletion as the backend allows. True if it was deleted."""

    # -- optional fast paths -----------------------------------------------------------
    @property
    def staging_dir(self) -> Path | None:
        """A local folder on the same file system as the objects, where put_file(move=True)
        is a rename. None for remote backends."""
        return None

    def local_path(self, key: str) -> Path | None:
        """The local file holding `key` (readable in place), or None for remote backends."""
        return None

    def purge_temporary(self, older_than: float) -> int:
        """Remove leftovers of interrupted writes older than `older_than` seconds. Returns count."""
        return 0
