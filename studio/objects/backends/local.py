"""Local folder backend: `<root>/<key>`, written through `<root>/tmp/` and os.replace."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from studio.exceptions import NotFoundError, StoreError
from studio.objects.backends.base import ObjectBackend

# Objects never change: read-only for everyone guards against a reader writing to the path
# it was given (ObjectStore.blob_path) and lets a team share one folder.
OBJECT_MODE = 0o444


class LocalBackend(ObjectBackend):
    """Objects as plain files. Writes go to a temp file in `<root>/tmp` (same file system)
    and are renamed into place, so a crash leaves at most a stray temp file, never a partial
    object. Readers open the files directly."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)
        self._tmp = self.root / "tmp"
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create object store at {self.root}: {exc.strerror}; check the storage URL") from exc
        self._made: set[str] = set()
        self._prefix = str(self.root) + os.sep

    def _path(self, key: str) -> Path:
        return self.root / key

    def _str(self, key: str) -> str:  # string paths: this runs once per file of a capture
        return self._prefix + key

    @property
    def staging_dir(self) -> Path:
        return self._tmp

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._str(key))

    def size(self, key: str) -> int | None:
        try:
            return os.stat(self._str(key)).st_size
        except FileNotFoundError:
            return None

    def _ensure_parent(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)

    def link_file(self, local_path: Path, key: str) -> bool:
        dest = self._str(key)
        self._ensure_parent(dest)
        tmp = os.path.join(self._tmp, f"link-{os.urandom(16).hex()}")
        try:
            os.link(local_path, tmp)
        except OSError:  # another file system, or links not allowed: copy instead
            return False
        try:
            os.chmod(tmp, OBJECT_MODE)  # the file it shares stays read-only too
            os.replace(tmp, dest)
        except BaseException:
            _unlink(tmp)
            raise
        return True

    def put_file(self, local_path: Path, key: str, *, move: bool = False) -> None:
        dest = self._str(key)
        self._ensure_parent(dest)
        if move:
            try:
                os.chmod(local_path, OBJECT_MODE)
                os.replace(local_path, dest)
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
        fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        try:
            with open(local_path, "rb") as src, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
                os.fchmod(out.fileno(), OBJECT_MODE)
            os.replace(tmp, dest)
        except BaseException:
            _unlink(tmp)
            raise
        if move:
            _unlink(local_path)

    def get_file(self, key: str, local_path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), local_path)
        except FileNotFoundError:
            raise NotFoundError(f"object {key} is not in store {self.url}") from None

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"object {key} is not in store {self.url}") from None

    def delete(self, key: str) -> None:
        _unlink(self._path(key))

    def walk(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if base.is_file():
            st = base.stat()
            yield prefix, st.st_size, st.st_mtime
            return
        for dirpath, _dirs, files in os.walk(base):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            for name in files:
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                yield f"{rel}/{name}", st.st_size, st.st_mtime

    def freshen(self, key: str, size: int | None, older_than: float) -> bool:
        path = self._str(key)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return False
        if size is not None and st.st_size != size:
            return False
        if time.time() - st.st_mtime <= older_than:
            return True
        try:
            os.utime(path)
        except FileNotFoundError:
            return False  # collected meanwhile: the caller writes it again
        except PermissionError:
            # Another user's object in a shared folder: a copy of our own carries the new age.
            try:
                self.put_file(Path(path), key)
            except FileNotFoundError:
                return False
            except PermissionError:
                pass  # a read-only store: nobody can collect from it either
        return True

    def delete_if_older(self, key: str, cutoff: float) -> bool:
        # Renaming first makes the age check and the removal one step as far as writers can
        # tell: a writer that freshened the object before the rename shows in the renamed
        # file's mtime (and the object goes back); one that comes after finds it missing and
        # writes it again.
        trash = os.path.join(self._tmp, f"gc-{os.urandom(16).hex()}")
        try:
            os.rename(self._str(key), trash)
        except FileNotFoundError:
            return False
        try:
            if os.stat(trash).st_mtime > cutoff:
                os.replace(trash, self._str(key))  # a writer may have stored it again: same bytes
                return False
        except BaseException:
            if os.path.exists(trash):
                os.replace(trash, self._str(key))
            raise
        _unlink(trash)
        return True

    def purge_temporary(self, older_than: float) -> int:
        cutoff = time.time() - older_than
        removed = 0
        for entry in os.scandir(self._tmp):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def _unlink(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
