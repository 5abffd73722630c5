"""Trees from the object store as local directories: cached read-only copies and worker copies."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from studio.api.context import Context


def cached_tree(ctx: Context, tree: str) -> Path:
    """A read-only local copy of a stored tree, shared by every experiment that reuses it.

    Keyed by the tree hash, so a newer version of the source artifact is a new cache entry
    (upstream's cache, keyed by name, never refreshed). Filled in a temp dir then renamed,
    so a crash never leaves a half-filled entry.
    """
    root = ctx.settings.blob_cache / "trees"
    dest = root / tree
    if dest.exists():
        return _entry(dest)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{tree}-{uuid.uuid4().hex[:8]}"
    try:
        ctx.objects.materialize(tree, tmp / "data", readonly=True)
        try:
            os.rename(tmp, dest)
        except OSError:  # another process filled it first
            pass
    finally:
        if tmp.exists():
            _make_writable(tmp)
            shutil.rmtree(tmp, ignore_errors=True)
    return _entry(dest)


def _entry(dest: Path) -> Path:
    return dest / "data"


def _make_writable(path: Path) -> None:
    for dirpath, _dirs, files in os.walk(path):
        os.chmod(dirpath, 0o755)
        for name in files:
            try:
                os.chmod(os.path.join(dirpath, name), 0o644)
            except OSError:
                pass
