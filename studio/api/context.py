"""`Context` lives in `studio.context` (below every layer that needs it); this name stays for
the API layer's callers and for scripts that imported it from here."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from studio.config import Settings, load_settings, studio_home
from studio.context import Context
from studio.credentials import credentials_path

#: Contexts shared by this process's workbook calls (`new_experiment()`, `ExperimentRepository()`),
#: reused while the settings, the process and the SQLite file (when the database is one) are the
#: same: a script or notebook creating experiments in a loop, or opening a repository per cell,
#: opens the database, its SQL engine and the object store once.
_shared: list[tuple[Context, Any]] = []
_shared_lock = threading.Lock()


def _identity(ctx: Context) -> Any:
    from studio.meta.lite import sqlite_file

    path = sqlite_file(ctx.settings.database_url)
    if path is None:
        return (os.getpid(),)
    try:
        st = path.stat()
    except OSError:
        return (os.getpid(), "missing")
    return (os.getpid(), st.st_dev, st.st_ino)


RACY_NS = 2_000_000_000  # as `studio.objects.statcache.RACY_NS`
#: (inputs of `load_settings`) -> the Settings they gave, for the newest inputs only.
_settings_memo: list[tuple[Any, Settings]] = []


#: Set by `new_experiment()` for each experiment it records: never read by `load_settings`
#: unless a config's `env:` section names them (then nothing is remembered).
_PER_EXPERIMENT = ("STUDIOML_EXPERIMENT", "STUDIOML_METRICS_DIR", "STUDIOML_ARTIFACT_MAPPING")
_PER_EXPERIMENT_BYTES = frozenset(os.fsencode(v) for v in _PER_EXPERIMENT)


def _environment() -> tuple[Any, ...]:
    # os.environ's underlying bytes mapping: read without decoding every variable.
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        return tuple(item for item in data.items() if item[0] not in _PER_EXPERIMENT_BYTES)
    return tuple(item for item in os.environ.items() if item[0] not in _PER_EXPERIMENT)


def _settings(config: str | None) -> Settings:
    """`load_settings(config)`, read again only when what it reads changed: the environment
    (but the variables `new_experiment()` sets per experiment), the working folder (a relative
    --config), the config file and the credentials file."""
    home = studio_home()
    path = Path(os.path.expanduser(config or os.environ.get("STUDIOML_CONFIG") or str(home / "config.yaml")))
    files = (_stat(path), _stat(credentials_path(home)))
    inputs = (config, os.getcwd(), _environment(), files)
    for seen, settings in _settings_memo:
        if seen == inputs:
            return settings
    settings = load_settings(config)
    # A file changed within the file system's timestamp granularity could change again
    # unseen (same size, same mtime): such settings are not remembered, as git does.
    now = time.time_ns()
    if all(st is None or now - max(st[2], st[3]) > RACY_NS for st in files) and not _names_per_experiment(path):
        _settings_memo[:] = [(inputs, settings)]
    return settings


def _names_per_experiment(config: Path) -> bool:
    try:
        text = config.read_text(errors="replace")
    except OSError:
        return False
    return any(name in text for name in _PER_EXPERIMENT)


def _stat(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def shared_context(config: str | None = None) -> Context:
    """The process's Context for the settings `config` (and the environment) give; see `_shared`.
    Never close it: it is shared (a closed one is replaced at the next call)."""
    settings = _settings(config)
    with _shared_lock:
        for entry in _shared:
            ctx, identity = entry
            if ctx.settings == settings and not ctx._closed:
                if identity == _identity(ctx):
                    return ctx
                _shared.remove(entry)  # the file was replaced, or this is a forked child
                if identity[0] == os.getpid():  # a parent's connections are not the child's to close
                    ctx.close()
                break
        ctx = Context(settings)
        ctx.meta  # noqa: B018 - opened now, so the identity is that of the file it opened
        _shared.append((ctx, _identity(ctx)))
        return ctx
