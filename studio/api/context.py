"""`Context` lives in `studio.context` (below every layer that needs it); this name stays for
the API layer's callers and for scripts that imported it from here."""

from __future__ import annotations

import os
import threading
from typing import Any

from studio.config import load_settings
from studio.context import Context

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


def shared_context(config: str | None = None) -> Context:
    """The process's Context for the settings `config` (and the environment) give; see `_shared`.
    Never close it: it is shared (a closed one is replaced at the next call)."""
    settings = load_settings(config)
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
