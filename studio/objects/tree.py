"""Trees (manifests): the canonical JSON document naming every file of an artifact version.

A manifest is UTF-8 JSON with sorted keys, no insignificant whitespace and entries sorted by
path, so the same content always gives the same bytes and therefore the same hash::

    {"algorithm":"sha256","entries":[{"hash":"<64 hex>","mode":420,"path":"a/b.txt","size":3}],
     "format":"studio-tree/1","kind":"dir"}

It is stored as an ordinary object; its hash (the tree hash) is the hash of those bytes.
Reading one back validates every path (see `check_entry_path`): a tree is data from a
possibly shared store and must never make studio write outside a destination.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from studio.exceptions import IntegrityError
from studio.objects.hashing import ALGORITHM, check_hash, hash_bytes

FORMAT = "studio-tree/1"
FILE_MODE = 0o644
EXEC_MODE = 0o755
_MODES = (FILE_MODE, EXEC_MODE)


class TreeEntry(NamedTuple):
    """One file: `path` is relative, POSIX-style; `mode` is 0o644 or 0o755. A tuple: a capture
    makes one per file, and a tuple is made in a fraction of a frozen dataclass's time."""

    path: str
    hash: str
    size: int
    mode: int = FILE_MODE


@dataclass(frozen=True)
class Tree:
    """An artifact version. kind="file": a single file, one entry named by its basename."""

    kind: Literal["dir", "file"]
    entries: tuple[TreeEntry, ...]
    hash: str

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


def check_entry_path(path: str) -> str:
    """Refuse paths that could leave the destination or are not canonical."""
    if not isinstance(path, str) or not path:
        raise IntegrityError(f"tree entry path {path!r} is empty or not a string")
    if path.startswith("/") or "\\" in path or "\x00" in path or (len(path) > 1 and path[1] == ":"):
        raise IntegrityError(f"tree entry path {path!r} is absolute or not POSIX; refusing it")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise IntegrityError(f"tree entry path {path!r} escapes its destination or is not canonical")
    return path


def mode_of(st_mode: int) -> int:
    """Only the executable bit of a file survives; everything else is normalised."""
    return EXEC_MODE if st_mode & 0o111 else FILE_MODE


def encode_manifest(kind: Literal["dir", "file"], entries: Iterable[TreeEntry]) -> bytes:
    ordered = sorted(entries, key=lambda e: e.path)
    doc = {
        "algorithm": ALGORITHM,
        "entries": [{"hash": e.hash, "mode": e.mode, "path": e.path, "size": e.size} for e in ordered],
        "format": FORMAT,
        "kind": kind,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def make_tree(kind: Literal["dir", "file"], entries: Iterable[TreeEntry]) -> tuple[Tree, bytes]:
    """The Tree and its manifest bytes; entries come from a scan, so they are already safe."""
    ordered = tuple(sorted(entries, key=lambda e: e.path))
    data = encode_manifest(kind, ordered)
    return Tree(kind=kind, entries=ordered, hash=hash_bytes(data)), data


def decode_manifest(data: bytes, tree_hash: str) -> Tree:
    """Parse and validate a manifest. IntegrityError if it is not a valid, safe tree."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(f"object {tree_hash} is not a tree manifest (not JSON)") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise IntegrityError(f"object {tree_hash} is not a tree manifest (format is not {FORMAT})")
    if doc.get("algorithm") != ALGORITHM:
        raise IntegrityError(f"tree {tree_hash} uses hash {doc.get('algorithm')!r}; this studio reads {ALGORITHM}")
    kind = doc.get("kind")
    raw = doc.get("entries")
    if kind not in ("dir", "file") or not isinstance(raw, list):
        raise IntegrityError(f"tree {tree_hash} has an invalid kind or entry list")
    entries = tuple(_entry(item, tree_hash) for item in raw)
    _check_layout(kind, entries, tree_hash)
    return Tree(kind=kind, entries=entries, hash=tree_hash)


def _entry(item: Any, tree_hash: str) -> TreeEntry:
    if not isinstance(item, dict):
        raise IntegrityError(f"tree {tree_hash} has an entry that is not an object")
    path, h, size, mode = item.get("path"), item.get("hash"), item.get("size"), item.get("mode")
    if not isinstance(path, str) or not isinstance(h, str):
        raise IntegrityError(f"tree {tree_hash} has an entry without a path or hash")
    check_entry_path(path)
    check_hash(h)
    if type(size) is not int or size < 0 or mode not in _MODES:
        raise IntegrityError(f"tree {tree_hash}: entry {path!r} has an invalid size or mode")
    return TreeEntry(path=path, hash=h, size=size, mode=mode)


def _check_layout(kind: str, entries: tuple[TreeEntry, ...], tree_hash: str) -> None:
    if kind == "file" and (len(entries) != 1 or "/" in entries[0].path):
        raise IntegrityError(f"tree {tree_hash} is a single-file tree without exactly one plain entry")
    paths = {e.path for e in entries}
    if len(paths) != len(entries):
        raise IntegrityError(f"tree {tree_hash} lists the same path twice")
    for e in entries:
        parts = e.path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in paths:
                raise IntegrityError(f"tree {tree_hash}: {e.path!r} lies under a file entry")
