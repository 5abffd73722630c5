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
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from studio.exceptions import IntegrityError, NotFoundError
from studio.objects.backends import ObjectBackend, backend_for_url
from studio.objects.backends.local import LocalBackend
from studio.objects.hashing import VerifyingReader, check_hash, hash_bytes, is_hash, object_key
from studio.objects.ingest import BlobWriter, PutResult, TreeWriter
from studio.objects.materialize import BlobSource, Materializer
from studio.objects.memo import CaptureMemo
from studio.objects.scan import IgnoreFn
from studio.objects.statcache import StatCache
from studio.objects.tree import Tree, decode_manifest, make_tree

log = logging.getLogger(__name__)

# Hashing and copying release the GIL; on 2 cores 4 threads keep both busy while one waits
# for the disk (measured in bench/bench_objects.py). Remote stores wait on the network.
LOCAL_WORKERS = min(8, 2 * (os.cpu_count() or 1))
REMOTE_WORKERS = 16
TEMP_MAX_AGE = 24 * 3600.0
# Captures freshen a stored object they reuse when it is older than this (seconds): see gc.
FRESHEN_AFTER = 60.0
# Every manifest starts so (canonical JSON, sorted keys): gc reads this much to find trees.
_MANIFEST_START = b'{"algorithm":'
MAX_MANIFEST = 1 << 30


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

    #: Told about tree transfers that have no `on_file` of their own, for bars or log lines
    #: (`studio.progress.TransferLog`; `studio worker` sets one). None: nobody is told.
    observer: Any = None

    def __init__(
        self,
        backend: ObjectBackend,
        cache_dir: Path,
        stat_cache: StatCache | None = None,
        workers: int | None = None,
        freshen_after: float = FRESHEN_AFTER,
    ) -> None:
        self.backend = backend
        self.cache = LocalBackend(Path(cache_dir))
        self.stat_cache = stat_cache
        local = backend.staging_dir is not None
        self.workers = workers or (LOCAL_WORKERS if local else REMOTE_WORKERS)
        self._writer = BlobWriter(backend, backend.staging_dir or self.cache.staging_dir, freshen_after)
        self._source = BlobSource(backend, self.cache)
        # Shared with `for_experiment` views (the same store); its snapshots on disk live
        # beside the stat cache they stand in for.
        self._memo = CaptureMemo(disk=stat_cache.path.parent / "capture-snapshots" if stat_cache is not None else None)

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
        # The same interface for what captures and materializing use (submit, map, with).
        return cast(ThreadPoolExecutor, _LazyPool(self.workers))

    # -- writing -----------------------------------------------------------------------
    def put_tree(
        self, root: Path, ignore: IgnoreFn | None = None, previous: str | None = None, *, link: bool = False,
        on_file: Callable[[int], None] | None = None, watch: bool = False,
    ) -> PutResult:
        """Store a folder (kind "dir") or a single file (kind "file") and its tree.

        Only blobs not already stored are uploaded. `ignore(rel_posix_path, is_dir)` returning
        True skips an entry (a skipped folder prunes its subtree). `previous`, the tree of the
        last capture of the same root, spares existence checks for blobs it names. `link`:
        the files are never rewritten in place (metric segments), so a local store on the same
        file system hard-links new ones instead of copying them (each stored once on disk).
        `on_file(size)` is told about each file as it is done (progress bars).

        The store remembers its last capture of a few folders: capturing one again compares
        the scan with it (no stat-cache read, no manifest rebuilt if nothing changed). `watch`
        (a folder captured again and again: `studio run`'s workspace) also keeps that capture on
        disk for the next process, and (Linux, local file systems) arms an inotify watch on
        the folder while scanning, so that its next capture with the same ignore rules needs no
        scan at all while nothing it keeps changed (`studio.objects.watch`); `release(root)`
        drops it.
        """
        if _empty_folder(root):  # most run folders at most checkpoints: no scan, no pool
            tree, data = _EMPTY_TREE
            self._writer.put_bytes(data, tree)
            return PutResult(tree=tree, files=0, size=0, uploaded_files=0, uploaded_bytes=0, hashed_files=0)
        if on_file is None and self.observer is not None:
            with self.observer.upload(Path(root)) as up:
                result = self.put_tree(root, ignore, previous, link=link, on_file=up.on_file, watch=watch)
                up.moved(result.uploaded_bytes, result.uploaded_files)
                return result
        with self._pool() as pool:
            writer = TreeWriter(self._writer, pool, 4 * self.workers, self.stat_cache, self.get_tree,
                                link=link, on_file=on_file, memo=self._memo, watch=watch)
            return writer.run(Path(root), ignore, previous)

    def release(self, root: Path) -> None:
        """Forget the last capture of `root` (closing its watch, if any)."""
        self._memo.put(os.path.realpath(root), None)

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

    def materialize(self, tree_hash: str, dest: Path, readonly: bool = False,
                    on_file: Callable[[int], None] | None = None) -> Path:
        """Write a tree into `dest` (a folder; for kind "file", the file itself). Never deletes
        files the tree does not name; rewrites a file only if its content differs. `on_file(size)`
        is called (from worker threads) as each file is done, for progress bars."""
        tree = self.get_tree(tree_hash)
        if on_file is None and self.observer is not None:
            total = sum(e.size for e in tree.entries)
            with self.observer.download(Path(dest), total, len(tree.entries)) as on_file:
                with self._pool() as pool:
                    return Materializer(self._source, pool, self.stat_cache, on_file).run(tree, Path(dest), readonly)
        with self._pool() as pool:
            return Materializer(self._source, pool, self.stat_cache, on_file).run(tree, Path(dest), readonly)

    # -- maintenance -------------------------------------------------------------------
    def gc(self, keep_trees: Iterable[str], dry_run: bool = False, grace_seconds: float = 0.0) -> GcReport:
        """Delete every object that no kept tree is or names, and no capture may still need.

        Safe while other processes capture (mark and sweep, with git's freshening rule):

        - an object's age is the time since a writer last wrote *or relied on* it: captures
          freshen every stored blob and tree they reuse instead of writing it (see
          `ObjectBackend.freshen`), so "older than the grace period" means "no capture used
          it lately", not "first written long ago";
        - roots are the kept trees plus every tree younger than the grace period (a capture's
          tree exists before any database names it), and everything they name is kept;
        - unreferenced trees are swept before blobs, each deletion re-checks the age
          (`delete_if_older`), and a tree found freshened meanwhile becomes a root. So a
          capture that trusted an existing tree instead of checking its blobs one by one
          never ends up naming a deleted blob.

        The grace period must outlast the longest capture (plus the freshen interval, one
        minute): objects used by a capture that started longer ago than that may go. With
        `grace_seconds=0` the cutoff is the start of this collection. A kept tree that is
        missing is skipped with a warning; one that cannot be read stops the collection (its
        blobs are unknown, so nothing could be deleted safely).
        """
        cutoff = time.time() - max(grace_seconds, 0.0)
        marked: set[str] = set()
        for t in keep_trees:
            if t in marked:
                continue
            try:
                self._mark(t, marked)
            except NotFoundError:
                log.warning("gc: kept tree %s is not in the store", t)
        objects = []
        for key, size, mtime in self.backend.walk("objects/"):
            h = key[len("objects/") :].replace("/", "")
            if is_hash(h):  # anything else is not ours: leave foreign files alone
                objects.append((key, h, size, mtime))
        for key, h, size, mtime in objects:
            if mtime > cutoff and h not in marked and self._looks_like_tree(key, size):
                self._mark_if_tree(h, marked)
        candidates = [o for o in objects if o[1] not in marked and o[3] <= cutoff]
        trees = [o for o in candidates if self._looks_like_tree(o[0], o[2]) and self._is_tree(o[1])]
        tree_keys = {o[0] for o in trees}
        removed = removed_bytes = 0
        for key, h, size, _mtime in [*trees, *(o for o in candidates if o[0] not in tree_keys)]:
            if h in marked:
                continue
            if dry_run or self.backend.delete_if_older(key, cutoff):
                removed += 1
                removed_bytes += size
            elif key in tree_keys:
                self._mark_if_tree(h, marked)  # freshened by a capture while we looked
        if not dry_run:
            self.backend.purge_temporary(max(grace_seconds, TEMP_MAX_AGE))
        return GcReport(removed_objects=removed, removed_bytes=removed_bytes, kept_objects=len(objects) - removed)

    def _mark(self, tree_hash: str, marked: set[str]) -> None:
        tree = self.get_tree(tree_hash)
        marked.add(tree_hash)
        marked.update(e.hash for e in tree.entries)

    def _mark_if_tree(self, h: str, marked: set[str]) -> None:
        try:
            self._mark(h, marked)
        except (NotFoundError, IntegrityError):
            pass  # gone meanwhile, or a blob that only looked like a manifest

    def _looks_like_tree(self, key: str, size: int) -> bool:
        if size < len(_MANIFEST_START) or size > MAX_MANIFEST:
            return False
        try:
            with self.backend.open(key) as f:
                return bytes(f.read(len(_MANIFEST_START))) == _MANIFEST_START
        except (NotFoundError, FileNotFoundError):
            return False

    def _is_tree(self, h: str) -> bool:
        try:
            self.get_tree(h)
        except (NotFoundError, IntegrityError):
            return False
        return True


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


def _empty_folder(path: Path | str) -> bool:
    """True for a folder with no entries at all; False for anything else (a file, a missing
    path: `put_tree` reports those)."""
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def _empty_tree() -> tuple[str, bytes]:
    tree, data = make_tree("dir", [])
    return tree.hash, data


_EMPTY_TREE = _empty_tree()


class _LazyPool:
    """A ThreadPoolExecutor made at the first `submit`/`map`: a capture with nothing to read
    (an empty or unchanged folder, most checkpoints) starts and stops no pool."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def _get(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="studio-objects")
        return self._pool

    def submit(self, fn: Any, *args: Any) -> Any:
        return self._get().submit(fn, *args)

    def map(self, fn: Any, *iterables: Any) -> Any:
        return self._get().map(fn, *iterables)

    def __enter__(self) -> _LazyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
