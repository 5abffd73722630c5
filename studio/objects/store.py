"""ObjectStore: content-addressed blobs and trees on top of one ObjectBackend.

Layout and formats are specified in docs/storage.md. Everything here is safe to call from
several threads and processes at once: objects are immutable and written by rename, so
concurrent writers of the same object race harmlessly.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from studio.exceptions import IntegrityError, NotFoundError
from studio.objects.backends import ObjectBackend, backend_for_url
from studio.objects.backends.local import LocalBackend
from studio.objects.hashing import VerifyingReader, check_hash, hash_bytes, is_hash, object_key
from studio.objects.ingest import BlobWriter, PutResult, TreeWriter
from studio.objects.materialize import BlobSource, Materializer
from studio.objects.scan import IgnoreFn
from studio.objects.statcache import StatCache
from studio.objects.tree import Tree, decode_manifest

log = logging.getLogger(__name__)

# Hashing and copying release the GIL; on 2 cores 4 threads keep both busy while one waits
# for the disk (measured in bench/bench_objects.py). Remote stores wait on the network.
LOCAL_WORKERS = min(8, 2 * (os.cpu_count() or 1))
REMOTE_WORKERS = 16
TEMP_MAX_AGE = 24 * 3600.0


@dataclass(frozen=True)
class GcReport:
    removed_objects: int
    removed_bytes: int
    kept_objects: int


class ObjectStore:
    """Blobs stored once by hash, and trees (manifests) naming them.

    `cache_dir` holds verified copies of blobs downloaded from a remote store (unused for a
    local store, whose object files are read in place). `stat_cache`, when given, spares
    re-hashing files whose stat has not changed.
    """

    def __init__(
        self,
        backend: ObjectBackend,
        cache_dir: Path,
        stat_cache: StatCache | None = None,
        workers: int | None = None,
    ) -> None:
        self.backend = backend
        self.cache = LocalBackend(Path(cache_dir))
        self.stat_cache = stat_cache
        local = backend.staging_dir is not None
        self.workers = workers or (LOCAL_WORKERS if local else REMOTE_WORKERS)
        self._writer = BlobWriter(backend, backend.staging_dir or self.cache.staging_dir)
        self._source = BlobSource(backend, self.cache)

    @property
    def url(self) -> str:
        return self.backend.url

    def for_experiment(self, key: str) -> ObjectStore:
        """This store, acting for experiment `key`: a studio server (http backend) authorizes
        each transfer for that experiment; other backends need no such scope (same store)."""
        scoped = getattr(self.backend, "for_experiment", None)
        if scoped is None:
            return self
        view = copy.copy(self)  # the same caches and settings; copies, not new instances,
        view.backend = scoped(key)  # of the writer and source, so only the backend differs
        view._writer = copy.copy(self._writer)
        view._writer.backend = view.backend
        view._source = copy.copy(self._source)
        view._source.backend = view.backend
        return view

    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.workers, thread_name_prefix="studio-objects")

    # -- writing -----------------------------------------------------------------------
    def put_tree(self, root: Path, ignore: IgnoreFn | None = None, previous: str | None = None) -> PutResult:
        """Store a folder (kind "dir") or a single file (kind "file") and its tree.

        Only blobs not already stored are uploaded. `ignore(rel_posix_path, is_dir)` returning
        True skips an entry (a skipped folder prunes its subtree). `previous`, the tree of the
        last capture of the same root, spares existence checks for blobs it names.
        """
        with self._pool() as pool:
            writer = TreeWriter(self._writer, pool, 4 * self.workers, self.stat_cache, self.get_tree)
            return writer.run(Path(root), ignore, previous)

    def put_bytes(self, data: bytes) -> str:
        h = hash_bytes(data)
        self._writer.put_bytes(data, h)
        return h

    # -- reading -----------------------------------------------------------------------
    def has(self, h: str) -> bool:
        return is_hash(h) and self.backend.exists(object_key(h))

    def open_blob(self, blob_hash: str) -> BinaryIO:
        """A reader that raises IntegrityError at end of file if the content does not match."""
        check_hash(blob_hash)
        path = self._source.local_file(blob_hash)
        raw = VerifyingReader(cast(BinaryIO, open(path, "rb", buffering=0)), blob_hash)
        return cast(BinaryIO, io.BufferedReader(raw))

    def blob_path(self, blob_hash: str, size: int | None = None) -> Path:
        """A local file holding the blob, for readers that need a path (memory maps, pyarrow):
        the object file itself in a local store, else a copy in the blob cache, downloaded and
        verified once. Read it; never write to it."""
        check_hash(blob_hash)
        return self._source.local_file(blob_hash, size)

    def read_blob(self, blob_hash: str) -> bytes:
        check_hash(blob_hash)
        key = object_key(blob_hash)
        if self.backend.local_path(key) is None and not self.cache.exists(key):
            try:
                with self.backend.open(key) as f:  # small reads (manifests) skip the cache
                    data = f.read()
            except FileNotFoundError:
                raise NotFoundError(f"object {blob_hash} is not in store {self.url}") from None
        else:
            with open(self._source.local_file(blob_hash), "rb") as f:
                data = f.read()
        actual = hash_bytes(data)
        if actual != blob_hash:
            self._source.forget(blob_hash)
            raise IntegrityError(f"object {blob_hash} in {self.url} is corrupt (hashes to {actual})")
        return data

    def get_tree(self, tree_hash: str) -> Tree:
        try:
            data = self.read_blob(tree_hash)
        except NotFoundError:
            raise NotFoundError(f"tree {tree_hash} is not in store {self.url}") from None
        return decode_manifest(data, tree_hash)

    def materialize(self, tree_hash: str, dest: Path, readonly: bool = False) -> Path:
        """Write a tree into `dest` (a folder; for kind "file", the file itself). Never deletes
        files the tree does not name; rewrites a file only if its content differs."""
        tree = self.get_tree(tree_hash)
        with self._pool() as pool:
            return Materializer(self._source, pool, self.stat_cache).run(tree, Path(dest), readonly)

    # -- maintenance -------------------------------------------------------------------
    def gc(self, keep_trees: Iterable[str], dry_run: bool = False, grace_seconds: float = 0.0) -> GcReport:
        """Delete every object that no kept tree is or names.

        `grace_seconds` also keeps objects younger than that: a capture running meanwhile
        stores blobs before its tree is recorded anywhere, and would lose them otherwise.
        A kept tree that is missing is skipped with a warning; one that cannot be read stops
        the collection (its blobs are unknown, so nothing could be deleted safely).
        """
        keep: set[str] = set()
        for t in keep_trees:
            try:
                tree = self.get_tree(t)
            except NotFoundError:
                log.warning("gc: kept tree %s is not in the store", t)
                continue
            keep.add(t)
            keep.update(e.hash for e in tree.entries)
        cutoff = time.time() - grace_seconds
        removed = removed_bytes = kept = 0
        for key, size, mtime in self.backend.walk("objects/"):
            h = key[len("objects/") :].replace("/", "")
            if not is_hash(h):
                continue  # not ours: leave foreign files alone
            if h in keep or (grace_seconds > 0 and mtime > cutoff):
                kept += 1
                continue
            if not dry_run:
                self.backend.delete(key)
            removed += 1
            removed_bytes += size
        if not dry_run:
            self.backend.purge_temporary(max(grace_seconds, TEMP_MAX_AGE))
        return GcReport(removed_objects=removed, removed_bytes=removed_bytes, kept_objects=kept)


def open_object_store(
    url: str, cache_dir: Path, stat_cache: Path | None = None, *, token: str | None = None
) -> ObjectStore:
    """The store at `url`: a path or file:// (local folder), http(s):// (a studio server,
    reached with `token`), or s3://, gs://, memory://, ... (fsspec, imported lazily; a missing
    plugin raises MissingDependencyError with the extra to install). `stat_cache` is the
    SQLite file of the stat cache (None: always hash)."""
    backend = backend_for_url(str(url), token=token)
    cache = StatCache(Path(stat_cache)) if stat_cache is not None else None
    return ObjectStore(backend, Path(cache_dir), cache)
