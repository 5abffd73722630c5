"""Writing workbook artifacts: file names, atomic writes, JSON with a useful error, git status.

Every file appears under its final name only when complete (temp file in the same folder,
then rename), so a capture or a reader never sees half a file. Temp files start with ``.``;
the workbook's capture skips dot-files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

_JSON_SCALARS = (str, int, float, bool, type(None))


def artifact_name(name: str, suffix: str = "") -> str:
    """`name` plus `suffix` (unless it already ends with it), checked to be a plain file name."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"artifact name {name!r} must be a non-empty string")
    if "/" in name or "\\" in name or "\x00" in name or name.startswith("."):
        raise ValueError(
            f"artifact name {name!r} must be a plain file name (no '/', no leading '.')"
        )
    return name if not suffix or name.endswith(suffix) else name + suffix


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> Path:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def atomic_copy(src: Path, dest: Path) -> Path:
    def write(f: IO[bytes]) -> None:
        with open(src, "rb") as fin:
            shutil.copyfileobj(fin, f, 1 << 20)

    return atomic_write(dest, write)


# -- JSON ------------------------------------------------------------------------------------
def _numpy_default(obj: Any) -> Any:
    """numpy scalars and arrays become numbers and lists; anything else is an error."""
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def find_unserializable(value: Any, path: str = "value") -> tuple[str, Any] | None:
    """(key path, offending object) of the first part of `value` JSON cannot encode."""
    if isinstance(value, _JSON_SCALARS):
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, _JSON_SCALARS):
                return f"{path} (the key {k!r})", k
            found = find_unserializable(v, f"{path}[{k!r}]")
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = find_unserializable(v, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    try:
        converted = _numpy_default(value)
    except TypeError:
        return path, value
    return find_unserializable(converted, path)


def encode_json(name: str, value: Any) -> bytes:
    """`value` as indented JSON (NaN/Infinity kept, as Python's json reads them back).

    TypeError naming the key path of the first value JSON cannot encode."""
    try:
        text = json.dumps(value, indent=1, allow_nan=True, default=_numpy_default)
    except TypeError:
        found = find_unserializable(value)
        if found is None:
            raise
        where, obj = found
        raise TypeError(
            f"save_json({name!r}): {where} is a {type(obj).__module__}.{type(obj).__qualname__}, "
            f"which JSON cannot encode; convert it (str(), float(), .tolist()) or use save_pickle"
        ) from None
    return text.encode("utf-8") + b"\n"


# -- git -------------------------------------------------------------------------------------
def git_status_files(path: Path) -> dict[str, str] | None:
    """{"git-current-commit": text, "git-patch": text} for the repository around `path`, or
    None outside a repository (or without git).

    The commit file is `git log -n 1` (as upstream); the patch is studio's capture diff
    against HEAD, which (unlike upstream's `git diff HEAD`) includes untracked files. Files
    the patch leaves out (binary, too large) are named in a comment at its top, which
    `git apply` skips.
    """
    from studio.capture.git import git_info

    info = git_info(path)
    if not info:
        return None
    root = info.get("repo_root") or str(path)
    commit_text = ""
    if info.get("commit"):
        try:
            proc = subprocess.run(
                ["git", "-c", "color.ui=false", "log", "-n", "1"],
                cwd=root, capture_output=True, timeout=10, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if proc.returncode == 0:
                commit_text = proc.stdout.decode("utf-8", "replace")
        except (OSError, subprocess.TimeoutExpired):
            log.debug("git log failed in %s", root, exc_info=True)
        commit_text = commit_text or f"commit {info['commit']}\n"
    else:
        commit_text = "(no commit yet)\n"
    patch = str(info.get("diff") or "")
    notes = []
    if info.get("diff_skipped"):
        notes.append(
            "# left out of this patch (binary or too large): " + ", ".join(info["diff_skipped"])
        )
    if info.get("diff_truncated"):
        notes.append("# this patch was cut at the size cap; later files are missing")
    if notes:
        patch = "\n".join(notes) + "\n" + patch
    return {"git-current-commit": commit_text, "git-patch": patch}
