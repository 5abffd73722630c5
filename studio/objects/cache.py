"""The local cache folder (``$STUDIOML_HOME/blobcache``): stored trees unpacked for reading,
and copies of blobs from a remote store, kept within a size budget.

    path = cached_tree(store, cache_root, tree_hash)        # read-only copy, filled once
    path = cached_tree(store, cache_root, tree_hash, pin=True)   # ... kept while we live
    report = prune(cache_root, max_bytes)                    # least recently used out

One way to unpack a stored tree for reading, used by `--reuse` artifacts, the dashboard's
metric charts and TensorBoard, and notebooks: ``trees/<hash>/data``, keyed by the tree hash (a
newer version of an artifact is a new entry, so nothing is ever stale), filled in a temp folder
and renamed into place, so a crash never leaves a half-filled entry.

Budget: after each fill, if the folder holds more than `max_bytes`, entries are removed least
recently used first (a tree entry counts as used when `cached_tree` returns it; a blob copy,
when written), except entries used within the last `GRACE` seconds and trees *pinned* by a
live process: a run reading a reused artifact holds a shared lock on it for its whole life
(`pin=True`), and an entry is removed only under an exclusive lock nobody else holds. Removing
is safe for readers that already opened a file (POSIX keeps it until closed); everything
removed is a copy that can be fetched again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from studio.objects.store import ObjectStore

log = logging.getLogger(__name__)

TREES = "trees"
LOCKS = ".locks"
SIZE_FILE = "size"
STAGING = "tmp"  # downloads in progress (`LocalBackend.staging_dir`)
GRACE = 600.0
#: pinned trees of this process: tree hash -> the fd holding a shared lock
_pins: dict[str, int] = {}


@dataclass(frozen=True)
class PruneReport:
    removed_entries: int
    removed_bytes: int
    kept_bytes: int


def cached_tree(store: ObjectStore, root: Path, tree: str, *, pin: bool = False, max_bytes: int | None = None) -> Path:
    """A read-only local copy of stored `tree` under `root` (see the module docstring).
    With `max_bytes`, the folder is pruned to that size after a fill."""
    trees = root / TREES
    dest = trees / tree
    if pin:
        _pin(root, tree)
    if dest.exists():
        with contextlib.suppress(OSError):
            os.utime(dest)  # used now: last in line for eviction
        return dest / "data"
    trees.mkdir(parents=True, exist_ok=True)
    tmp = trees / f".tmp-{tree}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        store.materialize(tree, tmp / "data", readonly=True)
        (tmp / SIZE_FILE).write_text(str(store.get_tree(tree).size))
        try:
            os.rename(tmp, dest)
        except OSError:  # another process filled it first
            pass
    finally:
        if tmp.exists():
            _make_writable(tmp)
            shutil.rmtree(tmp, ignore_errors=True)
    if max_bytes is not None:
        try:
            prune(root, max_bytes, keep=tree)
        except OSError:
            log.warning("could not prune the cache %s", root, exc_info=True)
    return dest / "data"


def _pin(root: Path, tree: str) -> None:
    if tree in _pins:
        return
    locks = root / LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / tree, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)  # released when this process ends
    _pins[tree] = fd


def _entries(root: Path) -> list[tuple[float, int, Path, str | None]]:
    """(last use, bytes, path, tree hash or None) of every evictable entry."""
    out: list[tuple[float, int, Path, str | None]] = []
    for dirpath, dirs, files in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirs[:] = [d for d in dirs if d not in (LOCKS, STAGING)]
        if here == root / TREES:
            for name in dirs:
                if name.startswith("."):
                    continue
                entry = here / name
                try:
                    size = int((entry / SIZE_FILE).read_text())
                except (OSError, ValueError):
                    size = _du(entry)
                with contextlib.suppress(OSError):
                    out.append((entry.stat().st_mtime, size, entry, name))
            dirs[:] = []
            continue
        for name in files:
            if name.startswith("."):
                continue
            path = here / name
            with contextlib.suppress(OSError):
                st = path.lstat()  # a link (notebooks' named copies) counts as itself
                out.append((st.st_mtime, st.st_size, path, None))
    return out


def _du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def prune(root: Path, max_bytes: int, *, grace: float = GRACE, keep: str | None = None) -> PruneReport:
    """Remove least recently used entries of `root` until it holds at most `max_bytes`,
    never one used within `grace` seconds, the tree `keep`, or a tree another process pins."""
    if not root.exists():
        return PruneReport(0, 0, 0)
    entries = sorted(_entries(root), key=lambda e: e[0])
    total = sum(e[1] for e in entries)
    removed = removed_bytes = 0
    cutoff = time.time() - grace
    for used, size, path, tree in entries:
        if total <= max_bytes:
            break
        if used > cutoff or (tree is not None and (tree == keep or tree in _pins)):
            continue
        if tree is not None:
            if not _remove_tree(root, path, tree):
                continue
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        total -= size
        removed += 1
        removed_bytes += size
    if removed:
        log.info("cache %s: removed %d entries (%d bytes) to stay under %d bytes", root, removed, removed_bytes, max_bytes)
    return PruneReport(removed, removed_bytes, total)


def _remove_tree(root: Path, entry: Path, tree: str) -> bool:
    lock = root / LOCKS / tree
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live run reads it
        gone = entry.with_name(f".gone-{tree}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(entry, gone)  # atomically out of sight, then deleted
        except FileNotFoundError:
            return False
        _make_writable(gone)
        shutil.rmtree(gone, ignore_errors=True)
        return True  # the lock file stays: a pin that opened it must keep meaning this entry
    finally:
        os.close(fd)


def _make_writable(path: Path) -> None:
    for dirpath, _dirs, files in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, 0o755)
        for name in files:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(dirpath, name), 0o644)


def default_budget(root: Path) -> int:
    """A quarter of the file system the cache is on (at least 1 GiB)."""
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    return max(1 << 30, st.f_frsize * st.f_blocks // 4)
