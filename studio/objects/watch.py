"""Know, without scanning it again, that a captured folder has not changed since (Linux inotify).

`studio run` captures the workspace at start and again when the script ends (the workspace is
a mutable artifact). The second capture of an untouched 10,000-file folder is one `lstat` per
file; with a watch armed during the first capture it is one `read` of an empty event queue.

How it stays exact: `FolderWatch.arm_dir` puts a watch on each directory *before* the scan
lists it, so any change after the listing is an event; a change before it is in the listing.
The watch vouches for the folder only while it has seen no event about a path the capture
keeps (events about ignored paths are judged by the same ignore rules) and none of these
holds, each a way for a file to change without an event on a watched directory:

- a file with more than one hard link (written through another name elsewhere);
- a symlink inside the folder (its target is what is captured, and may live elsewhere);
- a directory or file on another file system than the folder's root (a mount inside it);
- a root on a file system whose other writers inotify does not see (NFS, SMB, FUSE, 9p, ...):
  only local file systems in `_LOCAL_FS` qualify;
- the kernel's event queue overflowed, a watch could not be added (limits), or inotify is
  unavailable (not Linux): then the folder is simply scanned, as without a watch.

A file written through a writable `mmap` gets no IN_MODIFY, but its descriptor was opened for
writing, and closing it (at the latest when its process exits, before the final capture)
is an IN_CLOSE_WRITE: counted as a change.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x1000000
IN_DONT_FOLLOW = 0x2000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
         | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW)
# Whatever the name, these mean the watch can no longer vouch for anything.
_LOST = IN_Q_OVERFLOW | IN_UNMOUNT | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF
_EVENT = struct.Struct("iIII")

# statfs f_type of file systems where every writer goes through this kernel.
_LOCAL_FS = frozenset({
    0xEF53,      # ext2/3/4
    0x58465342,  # xfs
    0x9123683E,  # btrfs
    0x01021994,  # tmpfs
    0x2FC12FC1,  # zfs
    0xF2F52010,  # f2fs
    0x794C7630,  # overlayfs (a container's root)
})  # fmt: skip

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return None
    return _libc


def _fs_type(path: str) -> int | None:
    lib = _lib()
    if lib is None:
        return None
    buf = ctypes.create_string_buffer(256)  # struct statfs: f_type is its first field (a long)
    if lib.statfs(os.fsencode(path), buf) != 0:
        return None
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


class FolderWatch:
    """Watches on the directories of one captured folder. Not thread-safe: one capture arms
    it, later captures of the same folder (under the memo's lock) ask `unchanged`."""

    def __init__(self, root: str, ignore: Callable[[str, bool], bool] | None) -> None:
        self.root = root
        self.ignore = ignore
        self.fd = -1
        self.valid = False
        self._dirs: dict[int, str] = {}  # watch descriptor -> rel dir ("" for the root)
        lib = _lib()
        if lib is None or _fs_type(root) not in _LOCAL_FS:
            return
        try:
            self.dev = os.stat(root).st_dev
        except OSError:
            return
        fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            log.debug("no inotify instance (%s): %s will be scanned", os.strerror(ctypes.get_errno()), root)
            return
        self.fd = fd
        self.valid = True

    @classmethod
    def open(cls, root: str, ignore: Callable[[str, bool], bool] | None) -> FolderWatch | None:
        watch = cls(root, ignore)
        return watch if watch.valid else None

    # -- arming, called by the scan --------------------------------------------------
    def arm_dir(self, path: str, rel_prefix: str) -> None:
        """Before `path` (rel `rel_prefix`, "" or ending in "/") is listed."""
        if not self.valid:
            return
        lib = _lib()
        assert lib is not None
        try:
            if os.stat(path, follow_symlinks=False).st_dev != self.dev:
                self.give_up("a mount inside the folder")
                return
        except OSError:
            self.give_up("a directory vanished while armed")
            return
        wd = lib.inotify_add_watch(self.fd, os.fsencode(path), _MASK)
        if wd < 0:
            err = ctypes.get_errno()
            self.give_up("inotify_add_watch: " + (os.strerror(err) if err != errno.ENOSPC else "watch limit"))
            return
        self._dirs[wd] = rel_prefix

    def note_file(self, st: os.stat_result, is_link: bool) -> None:
        """Each file the scan keeps: what would let it change unseen ends the watch."""
        if not self.valid:
            return
        if is_link:
            self.give_up("a symlink")
        elif st.st_nlink > 1:
            self.give_up("a file with several hard links")
        elif st.st_dev != self.dev:
            self.give_up("a file on another file system")

    def give_up(self, why: str) -> None:
        if self.valid:
            log.debug("not watching %s: %s", self.root, why)
        self.close()

    # -- asking --------------------------------------------------------------------------
    def unchanged(self) -> bool:
        """True if nothing the capture keeps has changed since each directory was armed.
        Reads the queued events; once a change is seen the watch is closed (False ever after)."""
        if not self.valid:
            return False
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return True
            except OSError as exc:
                self.give_up(f"read: {exc}")
                return False
            if not data or self._changed(data):
                self.give_up("a change")
                return False

    def _changed(self, data: bytes) -> bool:
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & _LOST:
                return True
            prefix = self._dirs.get(wd)
            if prefix is None:
                return True
            rel = prefix + os.fsdecode(name)
            if not name or self.ignore is None or not self.ignore(rel, bool(mask & IN_ISDIR)):
                return True
        return False

    def close(self, background: bool = True) -> None:
        """Stop watching. Closing an inotify descriptor waits for a kernel grace period
        (0.1-10 ms here): `background` leaves that to a daemon thread, so a run records its
        outcome meanwhile; never while the interpreter shuts down (a thread started then
        would never run, and starting it would wait forever)."""
        self.valid = False
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            if background and not sys.is_finalizing():
                try:
                    threading.Thread(target=os.close, args=(fd,), name="studio-unwatch", daemon=True).start()
                    fd = -1
                except RuntimeError:  # no new threads now
                    pass
            if fd >= 0:
                os.close(fd)
        self._dirs.clear()

    def __del__(self) -> None:
        try:
            self.close(background=False)
        except Exception:  # noqa: S110 - at interpreter exit: the kernel closes it anyway
            pass
