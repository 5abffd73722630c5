"""Metadata stores, chosen by URL.

    open_meta_store("sqlite:////home/me/.studioml/studio.db")        # default, embedded
    open_meta_store("postgresql+psycopg://user:pw@host:5432/studio")  # a team's server
    open_meta_store("https://studio.example.org", token="...")          # via `studio ui`

Backends are imported on first use (`import studio.meta` does not import SQLAlchemy).
`upgrade` and `current_revision` back the `studio db upgrade` / `studio db status` commands.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from studio.exceptions import UsageError
from studio.meta.base import MetaStore, OutputChunk, Page

__all__ = [
    "MetaStore",
    "OutputChunk",
    "Page",
    "SCHEMES",
    "current_revision",
    "head_revision",
    "open_meta_store",
    "upgrade",
]

#: URL scheme (before any `+driver`) -> "module:function" opening a store as
#: `function(url, create=...)`; the backend checks the driver.
_OPENERS: dict[str, str] = {
    "sqlite": "studio.meta.lite:open_lite_store",
    "postgresql": "studio.meta.sql:open_sql_store",
    "postgres": "studio.meta.sql:open_sql_store",
    "http": "studio.meta.http:open_http_store",
    "https": "studio.meta.http:open_http_store",
}
#: What messages suggest, one example per backend.
SCHEMES = ("sqlite:///PATH", "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE", "https://STUDIO-SERVER")
_SQL_SCHEMES = {"sqlite", "postgresql", "postgres"}


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep and url.startswith("sqlite:"):
        return "sqlite"
    return scheme.lower() if sep else ""


def _resolve(url: str, table: dict[str, str] | set[str]) -> str:
    scheme = _scheme(url)
    if scheme in ("http", "https") and scheme not in table:
        raise UsageError(f"{url} is a studio server: run `studio db` commands on the server itself")
    if scheme.partition("+")[0] not in table:
        shown = scheme or url.split(":", 1)[0] or "(none)"
        raise UsageError(
            f"unknown database URL scheme `{shown}` in {url.split('@')[-1]!r}: "
            f"use {' or '.join(SCHEMES)}"
        )
    return scheme.partition("+")[0]


def open_meta_store(url: str, *, create: bool = True, token: str | None = None) -> MetaStore:
    """The metadata store at `url`. A fresh database is created at the current schema when
    `create` (a new SQLite file, or an empty PostgreSQL database); a database at an older
    schema revision raises SchemaVersionError naming `studio db upgrade`. `token`: a studio
    server's token, for `http(s)://` URLs."""
    scheme = _resolve(url, _OPENERS)
    module, _, func = _OPENERS[scheme].partition(":")
    opener: Callable[..., Any] = getattr(importlib.import_module(module), func)
    store: MetaStore = opener(url, create=create, token=token) if scheme in ("http", "https") else opener(url, create=create)
    return store


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database at `url` to `revision` (default: this studio's newest), creating it
    if needed. Returns (revision before, revision after)."""
    _resolve(url, _SQL_SCHEMES)
    from studio.meta.sql import upgrade_database

    return upgrade_database(url, revision)


def current_revision(url: str) -> str | None:
    """The schema revision of the database at `url`; None if it has no studio schema (or, for
    SQLite, no file) yet. Creates nothing."""
    _resolve(url, _SQL_SCHEMES)
    from studio.meta.sql import database_revision

    return database_revision(url)


def head_revision() -> str:
    """The schema revision this studio writes and expects."""
    from studio.meta.records import HEAD_REVISION

    return HEAD_REVISION
