"""The web dashboard and its JSON API (FastAPI): `create_app(ctx)`, served by `studio ui`.

Layout::

    app.py          create_app: routers, error handlers (StudioError -> JSON or an HTML page),
                    static files and plotly.js from the installed plotly package
    responses.py    JSON that survives NaN/inf, row shapes shared by the routers
    api_runs.py     /api/experiments (table page), /api/status (live polling), actions, output
    api_files.py    /api/experiments/{key}/artifacts...: tree, file download, tar.gz archive
    api_metrics.py  /api/experiments/{key}/metrics and /series (min/max-bucketed downsample)
    api_lists.py    /api/projects, /api/users, /api/compare
    series.py       reading an experiment's metric segments and bucketing them
    tensorboard.py  TensorBoard processes started on demand (capped, per user)
    api_store.py    POST /api/store/<method>: the metadata store for http(s):// database URLs
    rules.py        who may do what: one table for every route and store method
    auth.py         who calls: tokens, sessions, CSRF, Host allow-list (the app-wide guard)
    accounts.py     users, token hashes and the audit log in the server's database
    api_auth.py     /login, /logout, /api/session, /api/audit
    pages.py        HTML pages at upstream's addresses; they only call the JSON API
    api_blobs.py    /api/blobs/...: the object store for clients holding a URL and a token
    transfers.py    how blobs move: presigned S3 URLs, or streaming through the server
    gcs_transfers.py  V4 signed GCS URLs (a gs:// server with a service-account key)

This package imports FastAPI; `import studio` never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.server.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from studio.server.app import create_app

        return create_app
    raise AttributeError(f"module 'studio.server' has no attribute {name!r}")
