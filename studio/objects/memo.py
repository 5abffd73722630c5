"""What a process remembers of its last captures of a folder (see `CaptureMemo`).

A re-capture compares its scan with the last capture instead of reading the stat cache's
rows, and when nothing changed returns its tree without building a manifest; `studio run`'s
workspace capture is also kept on disk for the next process, and may carry an inotify watch
(`studio.objects.watch`) that spares the next capture its scan. The guarantees are the stat
cache's (docs/storage.md).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import marshal
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.objects.scan import IgnoreFn
from studio.objects.statcache import StatKey

if TYPE_CHECKING:
    from studio.objects.watch import FolderWatch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """The last capture of a folder in this process: its tree, and each file's path, stat and
    hash by entry name (only entries the stat cache would trust: none younger than RACY_NS)."""

    tree: str
    files: int
    size: int
    by_rel: dict[str, tuple[str, StatKey, str]]
    #: Armed during that capture (`put_tree(watch=True)`): vouches for the folder while the
    #: same ignore rules (`ignore_id`) apply, without a scan. See `studio.objects.watch`.
    watch: FolderWatch | None = None
    ignore_id: object = None


def lasting_identity(ignore_id: object) -> bool:
    """Whether `ignore_id` means the same in another process (not a function's id)."""
    return ignore_id == "keep-all" or (isinstance(ignore_id, tuple) and ignore_id[:1] != ("function",))


def ignore_identity(ignore: IgnoreFn | None) -> object:
    """Two captures with equal identities keep the same paths: no ignore at all, the same
    function, or functions with equal `fingerprint`s (`studio.capture.workspace_ignore`'s)."""
    if ignore is None:
        return "keep-all"
    return getattr(ignore, "fingerprint", None) or ("function", id(ignore))


class CaptureMemo:
    """What this process last captured of a few folders (`ObjectStore.put_tree` keeps one).

    A re-capture of the same folder compares the scan with it instead of reading the stat
    cache's rows again, and when every file is there, unchanged, and nothing else is, the tree
    is the one it names: no manifest is built or hashed. That is a run's final checkpoint of
    an untouched workspace (the same process captured it at start). The guarantees are the
    stat cache's: a file counts as unchanged while its inode, size, mtime and ctime are.

    With `disk` (a folder), snapshots of folders captured with `put_tree(watch=True)` (the
    workspace of `studio run`) are also kept there, one small file per folder (the newest
    `DISK_KEEP`), so the next process's first capture of the folder starts from it.
    """

    DISK_KEEP = 32
    _FORMAT = 2  # 2: with the ignore rules' identity

    def __init__(self, roots: int = 4, disk: Path | None = None) -> None:
        self.roots = roots
        self.disk = disk
        self._last: collections.OrderedDict[str, Snapshot] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, root: str, load: bool = False) -> Snapshot | None:
        """The last capture of `root` in this process; with `load`, else the one on disk."""
        with self._lock:
            snap = self._last.get(root)
            if snap is not None:
                self._last.move_to_end(root)
                return snap
        return self._load(root) if load and self.disk is not None else None

    def put(self, root: str, snap: Snapshot | None, persist: bool = False) -> None:
        """Remember `snap` for `root` (None: forget it). A watch it replaces is closed."""
        with self._lock:
            old = self._last.pop(root, None)
            if snap is not None:
                self._last[root] = snap
                while len(self._last) > self.roots:
                    _root, evicted = self._last.popitem(last=False)
                    _close_watch(evicted, None)
            _close_watch(old, snap)
        if persist and snap is not None and self.disk is not None:
            self._save(root, snap)

    def _file(self, root: str) -> Path:
        assert self.disk is not None
        return self.disk / (hashlib.sha256(os.fsencode(root)).hexdigest()[:40] + ".snap")

    def _load(self, root: str) -> Snapshot | None:
        try:
            data = self._file(root).read_bytes()
            fmt, saved_root, tree, files, size, by_rel, ignore_id = marshal.loads(data)
            if fmt != self._FORMAT or saved_root != root or not isinstance(by_rel, dict):
                return None
            return Snapshot(tree, files, size, by_rel, ignore_id=ignore_id)
        except FileNotFoundError:
            return None
        except Exception as exc:  # a cache: a bad file costs a stat-cache read
            log.debug("ignoring capture snapshot of %s: %s", root, exc)
            return None

    def _save(self, root: str, snap: Snapshot) -> None:
        assert self.disk is not None
        by_rel = {rel: (path, tuple(key), h) for rel, (path, key, h) in snap.by_rel.items()}
        # An identity that only means something in this process (a function's id) is not kept.
        ignore_id: Any = snap.ignore_id if lasting_identity(snap.ignore_id) else None
        try:
            data = marshal.dumps((self._FORMAT, root, snap.tree, snap.files, snap.size, by_rel, ignore_id))
        except ValueError:  # an identity marshal cannot write: kept without it
            data = marshal.dumps((self._FORMAT, root, snap.tree, snap.files, snap.size, by_rel, None))
        try:
            self.disk.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.disk, prefix=".snap-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, self._file(root))
            except BaseException:
                _unlink(tmp)
                raise
            kept = sorted(self.disk.glob("*.snap"), key=lambda p: p.stat().st_mtime, reverse=True)
            for stale in kept[self.DISK_KEEP:]:
                stale.unlink(missing_ok=True)
        except OSError as exc:
            log.debug("capture snapshot of %s not saved: %s", root, exc)

def _close_watch(old: Snapshot | None, new: Snapshot | None) -> None:
    if old is not None and old.watch is not None and (new is None or new.watch is not old.watch):
        old.watch.close()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
