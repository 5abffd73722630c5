"""Capture: turn a folder or file into stored blobs plus a tree (the work behind `put_tree`).

For each file the stat cache answers first. A miss reads the file exactly once: a small
file whole into memory, a large one copied into a private staging file while being hashed.
Either way the stored blob is exactly the content that was hashed, even if the file changes
meanwhile. New blobs are staged, then renamed into the object folder (local backend) or
uploaded and dropped (remote backends); blobs already stored cost no write.

Invariant relied on for the fast path: a tree object is written only after every blob it
names is stored. So when the manifest of an unchanged folder already exists, nothing else
needs checking: one existence check re-captures 10,000 unchanged files.

Every stored object a capture relies on instead of writing (a blob found present, the tree
of an unchanged folder, the previous tree trusted for stat-cache hits) is freshened: that is
what keeps a concurrent `studio gc` from collecting it (see `ObjectStore.gc`).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, cast

from studio.exceptions import NotFoundError, StoreError, UsageError
from studio.objects.backends.base import ObjectBackend
from studio.objects.hashing import copy_and_hash, hash_bytes, is_hash, object_key
from studio.objects.memo import CaptureMemo, Snapshot, ignore_identity
from studio.objects.scan import IgnoreFn, ScanItem, scan_tree
from studio.objects.statcache import StatCache, StatKey
from studio.objects.tree import EXEC_MODE, FILE_MODE, Tree, TreeEntry, make_tree, mode_of

if TYPE_CHECKING:
    from studio.objects.watch import FolderWatch

log = logging.getLogger(__name__)

# Files up to this size are read whole (one read, written only if new); larger ones stream.
# Memory held at once is at most this much per worker thread.
SMALL_FILE = 4 << 20
# Cache misses are handed to the thread pool in batches of this many files or bytes.
BATCH_FILES = 64
BATCH_BYTES = 16 << 20


@dataclass(frozen=True)
class PutResult:
    """What one `put_tree` did. `files`/`size` describe the tree; `uploaded_*` count blobs that
    were not stored before (the manifest itself not included); `hashed_files` counts files
    read because the stat cache could not vouch for them."""

    tree: str
    files: int
    size: int
    uploaded_files: int
    uploaded_bytes: int
    hashed_files: int


@dataclass(frozen=True)
class _Ingested:
    item: ScanItem
    hash: str
    size: int
    uploaded: bool
    key: StatKey | None  # stat to remember, None if the file changed while being read


class BlobWriter:
    """Stage-then-store of single blobs, shared by put_tree and put_bytes."""

    def __init__(self, backend: ObjectBackend, staging: Path, freshen_after: float) -> None:
        self.backend = backend
        self.staging = staging
        self.freshen_after = freshen_after

    def present(self, h: str, size: int | None) -> bool:
        """True if blob `h` is stored, which the caller then relies on instead of writing it:
        so it is freshened (its age restarts; `ObjectStore.gc` spares what captures reuse).
        Comparing sizes also catches a truncated object left by a power loss."""
        return self.backend.freshen(object_key(h), size, self.freshen_after)

    def present_many(self, blobs: list[tuple[str, int]], pool: ThreadPoolExecutor) -> list[bool]:
        """`present` for many blobs: one question for backends that answer in bulk (a studio
        server), else one check per blob on the pool."""
        sizes = getattr(self.backend, "sizes", None)
        if sizes is not None:
            found = sizes([h for h, _ in blobs], freshen_after=getattr(self, "freshen_after", None))
            return [found.get(h) == size for h, size in blobs]
        return list(pool.map(lambda b: self.present(*b), blobs))

    def store_staged(self, tmp: str, h: str) -> None:
        self.backend.put_file(Path(tmp), object_key(h), move=True)

    def put_bytes(self, data: bytes, h: str) -> bool:
        """Store `data` as `h` unless present. True if it was written."""
        if self.present(h, len(data)):
            return False
        self._store_bytes(data, h)
        return True

    def _store_bytes(self, data: bytes, h: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.staging, prefix="blob-")
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                write_all(out, data)
            self.store_staged(tmp, h)
        except BaseException:
            _unlink(tmp)
            raise

    def ingest(
        self, item: ScanItem, claim: Callable[[str], bool], link: bool = False
    ) -> _Ingested | None:
        """Read `item` once, hash it and store it if new.

        Small files are read into memory, hashed, and written only if the blob is missing
        (files touched but unchanged cost no write). Large ones are copied to a staging file
        while being hashed (one read pass, memory bounded by the chunk size). Either way the
        stored bytes are exactly the hashed bytes, even if the file changes meanwhile.

        `claim(h)` is True for the first caller of a capture to meet blob `h` (others skip
        it: same content). None if the file vanished or is unreadable (left out of the tree).

        `link`: the file is never rewritten in place (a metric segment: written once, renamed
        into place, later only deleted), so a local store on the same file system keeps it by
        a hard link instead of a second copy, once its hash is known and its stat unchanged.
        """
        try:
            src = open(item.path, "rb", buffering=0)
        except FileNotFoundError:
            log.debug("%s vanished before capture; leaving it out", item.path)
            return None
        except PermissionError:
            log.warning("skipping %s: permission denied", item.path)
            return None
        try:
            with src:
                before = StatKey.of(os.fstat(src.fileno()))
                # One byte more than the stat said tells a file that grew meanwhile.
                data = src.read(before.size + 1) if before.size <= SMALL_FILE else None
                if data is not None and len(data) <= before.size:
                    after = StatKey.of(os.fstat(src.fileno()))
                    h, size = hash_bytes(data), len(data)
                    uploaded = claim(h) and not self.present(h, size)
                    linked = link and uploaded and self._link(item.path, h, before, after)
                    if linked:
                        before = after = linked  # linking changed the ctime
                    elif uploaded:
                        self._store_bytes(data, h)
                elif link:
                    src.seek(0)
                    h, size = copy_and_hash(src, cast(BinaryIO, _Discard()))
                    after = StatKey.of(os.fstat(src.fileno()))
                    uploaded = claim(h) and not self.present(h, size)
                    linked = uploaded and self._link(item.path, h, before, after)
                    if linked:
                        before = after = linked
                    elif uploaded:
                        src.seek(0)
                        h, size, uploaded, after = self._ingest_large(src, claim, claimed=True)
                else:  # large, or grew past the limit while we looked
                    src.seek(0)
                    h, size, uploaded, after = self._ingest_large(src, claim)
        except OSError as exc:
            raise StoreError(f"cannot store {item.path}: {exc}; check free space and permissions") from exc
        stable = before == after and after.size == size
        return _Ingested(item, h, size, uploaded, after if stable else None)

    def _link(self, path: str, h: str, before: StatKey, after: StatKey) -> StatKey | None:
        """Keep `path` as blob `h` by a hard link, only while its stat is the one hashed;
        its stat afterwards (the link changed its ctime), or None if it was not linked."""
        if before != after:
            return None
        try:
            current = StatKey.of(os.stat(path))
        except OSError:
            return None
        if (current.inode, current.size, current.mtime_ns) != (after.inode, after.size, after.mtime_ns):
            return None
        if not self.backend.link_file(Path(path), object_key(h)):
            return None
        try:
            linked = StatKey.of(os.stat(path))
        except OSError:
            return None
        return linked if linked.inode == after.inode else None

    def _ingest_large(
        self, src: BinaryIO, claim: Callable[[str], bool], claimed: bool = False
    ) -> tuple[str, int, bool, StatKey]:
        fd, tmp = tempfile.mkstemp(dir=self.staging, prefix="ingest-")
        try:
            with os.fdopen(fd, "wb", buffering=0) as out:
                h, size = copy_and_hash(src, out)
            after = StatKey.of(os.fstat(src.fileno()))
            uploaded = (claimed or claim(h)) and not self.present(h, size)
            if uploaded:
                self.store_staged(tmp, h)
        finally:
            _unlink(tmp)
        return h, size, uploaded, after


def write_all(out: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = out.write(view)
        view = view[n or 0 :]


class _Discard:
    """A writer that drops what it is given (hashing a file without copying it)."""

    def write(self, data: bytes) -> int:
        return len(data)


class TreeWriter:
    """One capture of a folder or file. Memory holds the manifest list, a bounded window of
    pending jobs and one read buffer per worker thread: not the files."""

    def __init__(
        self,
        writer: BlobWriter,
        pool: ThreadPoolExecutor,
        window: int,
        stat_cache: StatCache | None,
        load_tree: Callable[[str], Tree],
        link: bool = False,
        on_file: Callable[[int], None] | None = None,
        memo: CaptureMemo | None = None,
        watch: bool = False,
    ) -> None:
        self.memo = memo
        self.arm_watch = watch
        self._watch: FolderWatch | None = None
        self.on_file = on_file  # told each file's size as it is hashed (or found unchanged)
        self.writer = writer
        self.link = link
        self.pool = pool
        self.window = window
        self.stat_cache = stat_cache
        self.load_tree = load_tree
        self.entries: list[TreeEntry] = []
        self.to_record: list[tuple[str, StatKey, str]] = []
        self.uploaded_files = 0
        self.uploaded_bytes = 0
        self.hashed_files = 0
        self._snap_hits = 0
        self._rel_of: dict[str, str] = {}  # path -> entry name of the files hashed (for the memo)
        self._claimed: set[str] = set()  # blobs this capture found in or put into the store
        self._claim_lock = threading.Lock()

    def claim(self, h: str) -> bool:
        with self._claim_lock:
            if h in self._claimed:
                return False
            self._claimed.add(h)
            return True

    def run(self, root: Path, ignore: IgnoreFn | None, previous: str | None) -> PutResult:
        try:
            return self._run(root, ignore, previous)
        finally:
            if self._watch is not None:  # armed, but not handed to a snapshot
                self._watch.close()

    def _run(self, root: Path, ignore: IgnoreFn | None, previous: str | None) -> PutResult:
        real = os.path.realpath(root)
        snap = self.memo.get(real, load=self.arm_watch) if self.memo is not None else None
        ignore_id = ignore_identity(ignore)
        if snap is not None and snap.watch is not None and snap.ignore_id == ignore_id \
                and snap.watch.unchanged() and self.writer.present(snap.tree, None):
            # Nothing it keeps changed since the capture that armed the watch: not even a scan.
            return PutResult(tree=snap.tree, files=snap.files, size=snap.size, uploaded_files=0,
                             uploaded_bytes=0, hashed_files=0)
        watch = None
        if self.arm_watch and self.memo is not None:
            from studio.objects.watch import FolderWatch

            watch = self._watch = FolderWatch.open(real, ignore)
        # Files the last capture kept under the same rules are kept again without asking them
        # (the rules judge a file by its path alone; its folders are still asked).
        kept = snap.by_rel if snap is not None and snap.ignore_id is not None and snap.ignore_id == ignore_id \
            else None
        kind, real, items = self._items(root, ignore, watch, kept)
        if kind != "dir":
            snap = None
        cached: dict[str, tuple[StatKey, str]] = {}
        if self.stat_cache is not None and snap is None:
            cached = self.stat_cache.under(real) if kind == "dir" else self.stat_cache.get(real)
        unverified: list[tuple[int, str]] = []
        trusted: dict[str, tuple[str, StatKey, str]] = {}  # the next snapshot
        misses = 0
        for batch in self._bounded(self._classify(items, cached, unverified, snap, trusted)):
            misses += 1
            for result in batch:
                self._add(result)
        del cached
        if snap is not None and not misses and self._snap_hits == len(snap.by_rel) == len(self.entries) \
                and self.writer.present(snap.tree, None):
            # Every file of the last capture, unchanged, and no other (names are unique within
            # a scan, and each hit is one of the snapshot's): the same tree.
            if self.memo is not None:  # (again) this process's, with the watch armed now if any
                armed = watch if watch is not None and watch.valid else None
                self.memo.put(real, dataclasses.replace(snap, watch=armed, ignore_id=ignore_id))
                if armed is not None:
                    self._watch = None
            return PutResult(tree=snap.tree, files=snap.files, size=snap.size, uploaded_files=0,
                             uploaded_bytes=0, hashed_files=0)
        tree, data = make_tree(kind, self.entries)
        changed = False
        if not self.writer.present(tree.hash, len(data)):
            if unverified and self._verify(unverified, previous):
                tree, data = make_tree(kind, self.entries)
                changed = True
                self.writer.put_bytes(data, tree.hash)
            else:  # just found missing: no second question to the store (a round trip to a server)
                self.writer._store_bytes(data, tree.hash)
        now = time.time_ns()
        if self.stat_cache is not None and self.to_record:
            self.stat_cache.record(self.to_record, now)
        if self.memo is not None and kind == "dir":
            snapshot = None
            if not changed:  # entries re-read by _verify: rare, not worth tracking
                for path, key, h in self.to_record:
                    rel = self._rel_of.get(path)
                    if rel is not None and not key.is_racy(now):
                        trusted[rel] = (path, key, h)
                snapshot = Snapshot(tree.hash, len(tree.entries), tree.size, trusted,
                                     watch if watch is not None and watch.valid else None, ignore_id)
                if snapshot.watch is not None:
                    self._watch = None  # the snapshot's now
            self.memo.put(real, snapshot, persist=self.arm_watch)
        return PutResult(
            tree=tree.hash,
            files=len(tree.entries),
            size=tree.size,
            uploaded_files=self.uploaded_files,
            uploaded_bytes=self.uploaded_bytes,
            hashed_files=self.hashed_files,
        )

    def _items(
        self, root: Path, ignore: IgnoreFn | None, watch: FolderWatch | None = None,
        kept: Container[str] | None = None,
    ) -> tuple[Literal["dir", "file"], str, Iterable[ScanItem]]:
        real = os.path.realpath(root)
        try:
            st = os.stat(real)
        except FileNotFoundError:
            raise NotFoundError(f"cannot capture {root}: it does not exist") from None
        if stat.S_ISDIR(st.st_mode):
            return "dir", real, scan_tree(real, ignore, watch, kept)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read forever
            raise UsageError(f"cannot capture {root}: it is a {_kind(st.st_mode)}, not a file or folder")
        name = os.path.basename(os.path.abspath(root))
        return "file", real, [ScanItem(name, real, st)]

    def _classify(
        self,
        items: Iterable[ScanItem],
        cached: dict[str, tuple[StatKey, str]],
        unverified: list[tuple[int, str]],
        snap: Snapshot | None = None,
        trusted: dict[str, tuple[str, StatKey, str]] | None = None,
    ) -> Iterator[Future[list[_Ingested | None]]]:
        """Stat-cache hits become entries at once (their blobs checked later only if needed);
        misses are grouped into batches (fewer tasks, less hand-over between threads).
        With `snap` (this process's last capture of the folder) it answers instead of `cached`,
        and a name it does not know is looked up in the stat cache alone. `trusted` collects
        the hits (for the next snapshot)."""
        batch: list[ScanItem] = []
        batch_bytes = 0
        submitted = False
        by_rel = snap.by_rel if snap is not None else None
        trusted = {} if trusted is None else trusted
        entries, on_file = self.entries, self.on_file
        new_entry = tuple.__new__  # a NamedTuple's own __new__ is Python code: once per file
        snap_hits = 0
        for item in items:
            rel, path, st = item
            # A plain tuple equals the StatKey of the same fields (StatKey is a NamedTuple).
            key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            h: str | None = None
            if by_rel is not None:
                known = by_rel.get(rel)
                if known is not None and known[1] == key and known[0] == path:
                    # The common case of a re-capture (every file of an unchanged folder), in
                    # the fewest steps: the snapshot's own (path, key, hash) is trusted as is.
                    snap_hits += 1
                    trusted[rel] = known
                    unverified.append((len(entries), path))
                    entries.append(new_entry(TreeEntry, (rel, known[2], key[1], EXEC_MODE if st.st_mode & 0o111 else FILE_MODE)))  # type: ignore[arg-type]
                    if on_file is not None:
                        on_file(key[1])
                    continue
                if self.stat_cache is not None:
                    h = self.stat_cache.lookup(path, StatKey._make(key))
            else:
                hit = cached.get(path)
                if hit is not None and hit[0] == key:
                    h = hit[1]
            if h is not None:
                trusted[rel] = (path, key, h)  # type: ignore[assignment]
                unverified.append((len(entries), path))
                entries.append(new_entry(TreeEntry, (rel, h, st.st_size, EXEC_MODE if st.st_mode & 0o111 else FILE_MODE)))  # type: ignore[arg-type]
                if on_file is not None:
                    on_file(st.st_size)
                continue
            self._rel_of[path] = rel
            batch.append(item)
            batch_bytes += st.st_size
            if len(batch) >= BATCH_FILES or batch_bytes >= BATCH_BYTES:
                yield self.pool.submit(self._ingest_batch, batch)
                submitted = True
                batch, batch_bytes = [], 0
        self._snap_hits += snap_hits
        if batch and not submitted:
            # A capture whose misses fit in one batch hashes them on the calling thread: it
            # would only wait for the pool (and start its threads) otherwise.
            done: Future[list[_Ingested | None]] = Future()
            done.set_result(self._ingest_batch(batch))
            yield done
        elif batch:
            yield self.pool.submit(self._ingest_batch, batch)

    def _ingest_batch(self, batch: list[ScanItem]) -> list[_Ingested | None]:
        return [self.writer.ingest(item, self.claim, self.link) for item in batch]

    def _bounded(self, jobs: Iterator[Future[list[_Ingested | None]]]) -> Iterator[list[_Ingested | None]]:
        pending: collections.deque[Future[list[_Ingested | None]]] = collections.deque()
        for job in jobs:
            pending.append(job)
            while len(pending) >= self.window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def _add(self, result: _Ingested | None, index: int | None = None) -> None:
        if result is None:
            return
        self.hashed_files += 1
        if result.uploaded:
            self.uploaded_files += 1
            self.uploaded_bytes += result.size
        item = result.item
        entry = TreeEntry(item.rel, result.hash, result.size, mode_of(item.st.st_mode))
        if index is None:
            self.entries.append(entry)
        else:
            self.entries[index] = entry
        if result.key is not None:
            self.to_record.append((item.path, result.key, result.hash))
        if self.on_file is not None and index is None:
            self.on_file(result.size)

    def _verify(self, unverified: list[tuple[int, str]], previous: str | None) -> bool:
        """Make sure the blobs of stat-cache hits are stored (the cache is per machine, the
        store may be new or garbage-collected). Returns True if an entry changed."""
        if previous and is_hash(previous) and self.writer.present(previous, None):  # trusted below: freshen it
            try:
                known = {e.hash for e in self.load_tree(previous).entries}
            except (NotFoundError, StoreError) as exc:
                log.debug("ignoring previous tree %s: %s", previous, exc)
                known = set()
            with self._claim_lock:
                self._claimed |= known
        todo = [(i, path) for i, path in unverified if self.claim(self.entries[i].hash)]
        checks = self.writer.present_many([(self.entries[i].hash, self.entries[i].size) for i, _ in todo], self.pool)
        missing = [job for job, ok in zip(todo, checks, strict=True) if not ok]
        results = self.pool.map(lambda j: self._reingest(self.entries[j[0]].path, j[1]), missing)
        changed = False
        gone: list[int] = []
        for (index, _path), result in zip(missing, results, strict=True):
            if result is None:
                gone.append(index)
                continue
            changed |= result.hash != self.entries[index].hash
            self._add(result, index)
        for index in sorted(gone, reverse=True):
            del self.entries[index]
        return changed or bool(gone)

    def _reingest(self, rel: str, path: str) -> _Ingested | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return self.writer.ingest(ScanItem(rel, path, st), _always)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _always(h: str) -> bool:
    return True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
