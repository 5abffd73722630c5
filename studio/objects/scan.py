"""Walk a directory for capture: which files go into a tree, and under which names.

Rules (documented in docs/storage.md):
- `ignore(rel_posix_path, is_dir)` returning True skips an entry; a skipped directory's
  whole subtree is pruned without being listed;
- a symlink to a file inside the root is captured as that file's content under the link's
  name; links to directories are not followed (their target is captured where it lives, and
  following could loop); dangling links and links leaving the root are skipped with a warning;
- sockets, FIFOs and devices are skipped; names that are not valid UTF-8 are skipped with a
  warning (a manifest is UTF-8 JSON).

Only one directory listing is held at a time, so memory does not grow with the tree.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Container, Iterator
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from studio.objects.watch import FolderWatch

log = logging.getLogger(__name__)

IgnoreFn = Callable[[str, bool], bool]


class ScanItem(NamedTuple):  # a tuple: one per file of every capture
    rel: str  # POSIX path relative to the root (the tree entry path)
    path: str  # absolute path to open (may be a symlink inside the root)
    st: os.stat_result  # stat of the file's content (symlinks followed)


def _inside(real: str, root_real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def _utf8(name: str, where: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        log.warning("skipping %r in %s: its name is not valid UTF-8", name, where)
        return False
    return True


def scan_tree(root_real: str, ignore: IgnoreFn | None = None, watch: FolderWatch | None = None,
              kept: Container[str] | None = None) -> Iterator[ScanItem]:
    """Yield every file to capture under the directory `root_real` (already resolved).
    `watch` is armed on each directory before it is listed, and told about each file kept.
    `kept`: paths of regular files `ignore` is known to keep (the last capture's, under the
    same rules): not asked again."""
    # Once per file of every capture (10,000s): a regular file takes no call that can be
    # spared. Its ScanItem is built directly (a NamedTuple's __new__ is Python code); the
    # watch hears only of files that end it (more than one link, another file system).
    new_item = tuple.__new__
    is_reg = stat.S_ISREG
    stack: list[tuple[str, str]] = [(root_real, "")]
    while stack:
        dirpath, prefix = stack.pop()
        if watch is not None:
            watch.arm_dir(dirpath, prefix)
        watch_dev = watch.dev if watch is not None and watch.valid else None
        try:
            entries = list(os.scandir(dirpath))
        except OSError as exc:
            log.warning("skipping directory %s: %s", dirpath, exc.strerror)
            continue
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            if not (entry.name.isascii() or _utf8(entry.name, dirpath)):
                continue
            rel = prefix + entry.name
            try:
                if entry.is_symlink():
                    item = _follow_link(entry, rel, root_real)
                    if item is not None and not (ignore and ignore(rel, False)):
                        if watch is not None:
                            watch.note_file(item.st, True)
                        yield item
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if not (ignore and ignore(rel, True)):
                        subdirs.append((entry.path, rel + "/"))
                    continue
                if ignore and (kept is None or rel not in kept) and ignore(rel, False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # deleted while we looked: not part of this version
                continue
            if is_reg(st.st_mode):
                if watch_dev is not None and (st.st_nlink > 1 or st.st_dev != watch_dev):
                    watch.note_file(st, False)  # type: ignore[union-attr]
                    watch_dev = None  # it gave up
                yield new_item(ScanItem, (rel, entry.path, st))  # type: ignore[arg-type]
            else:
                log.debug("skipping %s: not a regular file", entry.path)
        stack.extend(reversed(subdirs))


def _follow_link(entry: os.DirEntry[str], rel: str, root_real: str) -> ScanItem | None:
    target = os.path.realpath(entry.path)
    if not _inside(target, root_real):
        log.warning("skipping symlink %s: it points outside the captured folder (%s)", entry.path, target)
        return None
    try:
        st = os.stat(target)
    except OSError:
        log.warning("skipping symlink %s: its target %s does not exist", entry.path, target)
        return None
    if stat.S_ISDIR(st.st_mode):
        log.info("not following symlink %s to directory %s (captured where it lives)", entry.path, target)
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return ScanItem(rel, target, st)  # open the checked target, not the link
