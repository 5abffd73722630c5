"""The Python interpreter and its installed distributions, as `pip freeze` would list them.

`installed_packages()` scans the `*.dist-info` / `*.egg-info` entries of `sys.path` itself
instead of going through `importlib.metadata`: names and versions come from the directory
names (PEP 427/376 escape them), so no METADATA file is parsed for ordinary wheels. That keeps
the scan to one `scandir` per `sys.path` entry plus one small read per distribution.

Lines look like:

    numpy==1.26.4
    studio==0.1.0  # editable install from file:///work/main
    mylib==0.3  # local install from file:///home/me/mylib
    tool @ git+https://github.com/org/tool@1f2e3d...

The first occurrence of a name on `sys.path` wins, as for `import` and `importlib.metadata`,
except that a bare `name.egg-info` (a by-product of building in a source checkout, often on
`sys.path` as the current directory) yields to a real installation of the same name.

With a `cache_dir`, the list is kept on disk for the next process, keyed by the interpreter,
`sys.path`, and the inode and modification time of every `sys.path` folder and of every
metadata file read for a version: installing, upgrading or removing a distribution adds or
removes a `*.dist-info` entry, which changes its folder's mtime. Like the stat cache
(docs/storage.md), nothing is cached while one of those changed less than 2 s before it was
read (file system timestamps are coarse).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

from studio.capture.cache import write_cache
from studio.capture.git import strip_credentials

log = logging.getLogger(__name__)

_SUFFIXES = (".dist-info", ".egg-info")


def python_version() -> str:
    """`3.11.7` (the running interpreter's version)."""
    return platform.python_version()


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _read_headers(path: str) -> dict[str, str]:
    """Name/Version from a METADATA or PKG-INFO file, reading only its header block."""
    headers: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    break
                key, sep, value = line.partition(":")
                if sep and key in ("Name", "Version"):
                    headers[key] = value.strip()
                    if len(headers) == 2:
                        break
    except OSError:
        pass
    return headers


def _name_version(base: str, entry: str, read: list[Any] | None = None) -> tuple[str, str] | None:
    stem, _, suffix = entry.rpartition(".")
    parts = stem.split("-")
    # `name-version.dist-info`, `name-version-pyX.Y.egg-info`; a bare `name.egg-info` (setup.py
    # develop) has no version in its name, so read it from the metadata file.
    if len(parts) >= 2 and parts[0] and parts[1]:
        return parts[0], parts[1]
    meta = "METADATA" if suffix == "dist-info" else "PKG-INFO"
    path = os.path.join(base, entry)
    meta_path = os.path.join(path, meta) if os.path.isdir(path) else path
    if read is not None:  # stat before reading: a later change shows as a newer mtime
        read.append((meta_path, _stat_key(meta_path)))
    headers = _read_headers(meta_path)
    name = headers.get("Name") or parts[0]
    version = headers.get("Version")
    return (name, version) if name and version else None


def _direct_url_note(dist_dir: str) -> tuple[str | None, str | None]:
    """(replacement requirement, trailing note) from a PEP 610 `direct_url.json`, if any."""
    try:
        with open(os.path.join(dist_dir, "direct_url.json"), encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return None, None
    if not isinstance(info, dict):
        return None, None
    url = strip_credentials(str(info.get("url", "")))
    vcs = info.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs") and vcs.get("commit_id"):
        return f"{vcs['vcs']}+{url}@{vcs['commit_id']}", None
    dir_info = info.get("dir_info")
    if isinstance(dir_info, dict) and dir_info.get("editable"):
        return None, f"editable install from {url}"
    if url.startswith("file:"):
        return None, f"local install from {url}"
    if url:
        return None, f"installed from {url}"
    return None, None


def _scan(path_entries: list[str], read: list[Any] | None = None) -> list[str]:
    """The lines for `path_entries`; `read` gets (path, stat key) of the metadata files read
    for a version."""
    seen: dict[str, str] = {}
    weak: set[str] = set()  # bare `name.egg-info` build by-products, overridden by real installs
    for raw in path_entries:
        base = raw or "."
        try:
            with os.scandir(base) as it:
                names = sorted(e.name for e in it if e.name.endswith(_SUFFIXES))
        except OSError:  # zip files, missing dirs, path hooks
            continue
        for entry in names:
            nv = _name_version(base, entry, read)
            if nv is None:
                continue
            name, version = nv
            key = _normalize(name)
            if key in seen and key not in weak:
                continue
            bare_egg_info = entry.endswith(".egg-info") and "-" not in entry[: -len(".egg-info")]
            if key in seen and bare_egg_info:
                continue
            weak.discard(key)
            if bare_egg_info:
                weak.add(key)
            requirement, note = (None, None)
            if entry.endswith(".dist-info"):
                requirement, note = _direct_url_note(os.path.join(base, entry))
            elif bare_egg_info:
                note = f"source checkout {os.path.abspath(base)}"
            if requirement:
                line = f"{name} @ {requirement}"
            else:
                line = f"{name}=={version}" + (f"  # {note}" if note else "")
            seen[key] = line
    return [seen[k] for k in sorted(seen)]


RACY_NS = 2_000_000_000  # as studio.objects.statcache.RACY_NS


@functools.lru_cache(maxsize=8)
def _installed(executable: str, path_entries: tuple[str, ...], cache_dir: Path | None) -> tuple[str, ...]:
    if cache_dir is None:
        return tuple(_scan(list(path_entries)))
    cache_file = cache_dir / ("pythonenv-" + hashlib.sha256(
        json.dumps([executable, path_entries]).encode("utf-8", "surrogatepass")).hexdigest()[:24] + ".json")
    try:
        with open(cache_file, encoding="utf-8") as fh:
            cached = json.load(fh)
        if cached["key"] == [executable, list(path_entries)] and all(
            _stat_key(path) == key for path, key in cached["stats"]
        ):
            return tuple(cached["lines"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    # Stat before scanning: a change during the scan then shows as a newer mtime next time.
    stats = [(entry or ".", _stat_key(entry or ".")) for entry in path_entries]
    read: list[Any] = []
    lines = _scan(list(path_entries), read)
    stats += read
    # Only the mtime matters here: a later change of the entries sets it to a newer time.
    if not any(key is not None and time.time_ns() - key[2] < RACY_NS for _, key in stats):
        write_cache(cache_file, {"key": [executable, list(path_entries)], "stats": stats, "lines": lines})
    return tuple(lines)


def _stat_key(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def installed_packages(cache_dir: Path | None = None) -> list[str]:
    """Installed distributions as sorted `name==version` lines (see the module docstring).

    Cached per interpreter and `sys.path`, and with `cache_dir` on disk for the next process
    while no `sys.path` folder changed; `installed_packages.cache_clear()` forgets the
    in-process cache, e.g. after installing something in the same process.
    """
    try:
        return list(_installed(sys.executable, tuple(sys.path), cache_dir))
    except Exception:  # a collector never breaks a run
        log.warning("could not list installed packages", exc_info=True)
        return []


installed_packages.cache_clear = _installed.cache_clear  # type: ignore[attr-defined]
