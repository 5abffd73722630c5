"""`POST /api/store/{method}`: the server's metadata store, for `http(s)://` database URLs.

A remote procedure call per MetaStore method: the body is ``{"args": [...], "kwargs": {...}}``
and the answer ``{"result": ...}`` in `studio.meta.wire`'s JSON form, or ``{"error": class,
"detail": message}`` with the dashboard's status codes. Each call is one call of the server's
own store, so it keeps that store's guarantees (one transaction, exactly-once claims).

Off unless the server has a token (``STUDIOML_SERVER_TOKEN`` or ``server: token:`` in its
config): this API can change and delete anything, so every request must carry
``Authorization: Bearer <token>``. Not in the OpenAPI schema (its bodies are not JSON Schema).
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from studio.exceptions import StudioError
from studio.meta import wire
from studio.meta.base import MetaStore
from studio.server.api_runs import context
from studio.server.app import status_for

router = APIRouter(prefix="/api/store", include_in_schema=False)

#: The MetaStore methods a client may call.
METHODS = frozenset(
    name
    for name, member in vars(MetaStore).items()
    if getattr(member, "__isabstractmethod__", False)
)


def _answer(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(wire.dumps(payload), status_code=status, media_type="application/json")


def _error(name: str, detail: str, status: int) -> Response:
    return _answer({"error": name, "detail": detail}, status)


@router.post("/{method}")
async def call(method: str, request: Request) -> Response:
    token = request.app.state.store_token
    if not token:
        return _error("UsageError", "this server's store API is off: start it with STUDIOML_SERVER_TOKEN set", 403)
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return _error("UsageError", "wrong or missing token: set STUDIOML_API_TOKEN to the server's token", 401)
    if method not in METHODS:
        return _error("UsageError", f"no store method {method!r}", 404)
    try:
        body = wire.loads(await request.body())
        args, kwargs = list(body.get("args") or []), dict(body.get("kwargs") or {})
    except (ValueError, TypeError, AttributeError) as exc:
        return _error("UsageError", f"malformed call: {exc}", 400)
    store = context(request).meta
    try:
        result = await run_in_threadpool(getattr(store, method), *args, **kwargs)
    except StudioError as exc:
        return _error(type(exc).__name__, str(exc), status_for(exc))
    except TypeError as exc:  # wrong arguments for the method
        return _error("UsageError", f"{method}: {exc}", 400)
    return _answer({"result": result})
