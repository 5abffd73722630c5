"""Write a stored tree into a destination, safely and without destroying anything.

Rules:
- every entry path is validated when the manifest is read (no `..`, no absolute paths), and
  before anything is written each target folder is resolved: one that leads outside the
  destination through an existing symlink makes the whole call fail with IntegrityError;
- files in the destination that the tree does not name are never touched;
- a file already holding the right content is left alone (only its mode is fixed); others
  are written to a temp file next to the target, verified against their hash while being
  copied, then renamed over the target (atomic per file);
- blobs come from the local object folder, or for remote stores through the local blob
  cache (downloaded to a temp file, verified, then renamed into the cache).
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from studio.exceptions import ConflictError, IntegrityError, NotFoundError
from studio.objects.backends.base import ObjectBackend
from studio.objects.backends.local import LocalBackend
from studio.objects.hashing import copy_and_hash, hash_file, object_key
from studio.objects.statcache import StatCache, StatKey
from studio.objects.tree import Tree, TreeEntry

log = logging.getLogger(__name__)


class BlobSource:
    """Local, readable copies of blobs: the object files themselves for a local store, the
    blob cache (filled on demand, verified) for remote ones."""

    def __init__(self, backend: ObjectBackend, cache: LocalBackend) -> None:
        self.backend = backend
        self.cache = cache

    def local_file(self, h: str, size: int | None = None) -> Path:
        key = object_key(h)
        direct = self.backend.local_path(key)
        if direct is not None:
            if not direct.is_file():
                raise NotFoundError(f"object {h} is not in store {self.backend.url}; capture the artifact again")
            return direct
        cached = self.cache.local_path(key)
        if cached.is_file() and (size is None or cached.stat().st_size == size):
            return cached
        fd, tmp = tempfile.mkstemp(dir=self.cache.staging_dir, prefix="get-")
        os.close(fd)
        try:
            self.backend.get_file(key, Path(tmp))
            actual, _ = hash_file(tmp)
            if actual != h:
                raise IntegrityError(f"object {h} in {self.backend.url} is corrupt (hashes to {actual})")
            self.cache.put_file(Path(tmp), key, move=True)
        finally:
            _unlink(tmp)
        return cached

    def forget(self, h: str) -> None:
        """Drop a cached copy that failed verification, so the next read downloads it again."""
        if self.backend.local_path(object_key(h)) is None:
            self.cache.delete(object_key(h))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Materializer:
    def __init__(self, source: BlobSource, pool: ThreadPoolExecutor, stat_cache: StatCache | None,
                 on_file: Callable[[int], None] | None = None) -> None:
        self.on_file = on_file
        self.source = source
        self.pool = pool
        self.stat_cache = stat_cache
        self._known: dict[str, tuple[StatKey, str]] = {}
        self._hashed: list[tuple[str, StatKey, str]] = []  # appended from worker threads

    def run(self, tree: Tree, dest: Path, readonly: bool) -> Path:
        dest = Path(os.path.abspath(os.path.expanduser(dest)))
        if tree.kind == "file":
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_dir() and not dest.is_symlink():
                raise ConflictError(f"cannot write file artifact to {dest}: it is a directory; choose a file path")
            self._known = self.stat_cache.get(str(dest)) if self.stat_cache is not None else {}
            self._write(tree.entries[0], str(dest), readonly)
        else:
            if dest.exists() and not dest.is_dir():
                raise ConflictError(f"cannot write artifact into {dest}: it is a file; choose a directory")
            dest.mkdir(parents=True, exist_ok=True)
            root = os.path.realpath(dest)
            self._check_parents(tree.entries, root)
            self._known = self.stat_cache.under(root) if self.stat_cache is not None else {}
            targets = [(e, os.path.join(root, *e.path.split("/"))) for e in tree.entries]
            for _ in self.pool.map(lambda t: self._write(t[0], t[1], readonly), targets):
                pass
        if self.stat_cache is not None and self._hashed:
            self.stat_cache.record(self._hashed)
        return dest

    def _check_parents(self, entries: Iterable[TreeEntry], root: str) -> None:
        """Refuse the tree if any target folder resolves outside `root`, then create them."""
        parents = sorted({e.path.rpartition("/")[0] for e in entries} - {""})
        for rel in parents:
            real = os.path.realpath(os.path.join(root, *rel.split("/")))
            if not _inside(real, root):
                raise IntegrityError(
                    f"refusing to materialize into {root}: {rel!r} leads outside it through a symlink"
                )
        for rel in parents:
            path = os.path.join(root, *rel.split("/"))
            try:
                os.makedirs(path, exist_ok=True)
            except FileExistsError:
                raise ConflictError(f"cannot create folder {path}: a file is in the way") from None

    def _write(self, entry: TreeEntry, target: str, readonly: bool) -> None:
        self._write_one(entry, target, readonly)
        if self.on_file is not None:
            self.on_file(entry.size)

    def _write_one(self, entry: TreeEntry, target: str, readonly: bool) -> None:
        mode = (entry.mode & 0o555) if readonly else entry.mode
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise ConflictError(f"cannot write {target}: a directory is in the way")
        if st is not None and stat.S_ISREG(st.st_mode) and self._same(target, st, entry):
            if stat.S_IMODE(st.st_mode) != mode:
                os.chmod(target, mode)
            return
        src = self.source.local_file(entry.hash, entry.size)
        parent, name = os.path.split(target)
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{name}.", suffix=".studio-tmp")
        try:
            with open(src, "rb", buffering=0) as fin, os.fdopen(fd, "wb", buffering=0) as fout:
                actual, _ = copy_and_hash(fin, fout)  # type: ignore[arg-type]
            if actual != entry.hash:
                self.source.forget(entry.hash)
                raise IntegrityError(
                    f"object {entry.hash} for {entry.path!r} is corrupt (hashes to {actual}); "
                    "run the command again to re-download, or capture the artifact again"
                )
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            _unlink(tmp)
            raise

    def _same(self, target: str, st: os.stat_result, entry: TreeEntry) -> bool:
        """Does the existing file hold the entry's content? The stat cache answers for files
        seen before; others are hashed (and remembered)."""
        if st.st_size != entry.size:
            return False
        key = StatKey.of(st)
        known = self._known.get(target)
        if known is not None and known[0] == key:
            return known[1] == entry.hash
        try:
            actual, _ = hash_file(target)
        except OSError:
            return False
        self._hashed.append((target, key, actual))
        return actual == entry.hash


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
