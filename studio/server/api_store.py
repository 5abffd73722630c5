"""`POST /api/store/{method}`: the server's metadata store, for `http(s)://` database URLs.

A remote procedure call per MetaStore method: the body is ``{"args": [...], "kwargs": {...}}``
and the answer ``{"result": ...}`` in `studio.meta.wire`'s JSON form, or ``{"error": class,
"detail": message}`` with the dashboard's status codes. Each call is one call of the server's
own store, so it keeps that store's guarantees (one transaction, exactly-once claims).

Every call passes the rules (`studio.server.rules.STORE_METHODS`): each method is allowed per
caller, owner rules are checked against the stored experiment, and methods mapped to
``server-only`` are not exposed. On a team server (`studio server`) the owner of a created
experiment is the authenticated caller, whatever the client sent. A single-user `studio ui`
exposes this API only with a shared token (``STUDIOML_SERVER_TOKEN``), to its one user.

Time: leases, heartbeats and expiry are judged by the server's clock. A client sends its own
clock in ``X-Studio-Clock``; the times it records (``time_added``, ``heartbeat``,
``lease_expires``, ...) are moved by the difference, so a client whose clock is minutes off
neither expires its own lease at once nor keeps one forever. Not in the OpenAPI schema (its
bodies are not JSON Schema).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from studio.entities import Experiment
from studio.exceptions import StudioError, UsageError
from studio.meta import wire
from studio.meta.base import MetaStore
from studio.meta.records import MIN_SKEW_S, TIME_FIELDS, shift_times
from studio.server.api_runs import context
from studio.server.app import status_for
from studio.server.auth import Auth, auth_of, bearer, current_principal
from studio.server.rules import (
    RECORDED_FIELDS,
    RULES,
    SERVER_ONLY,
    STORE_METHODS,
    Principal,
    allowed,
    authorize,
)

router = APIRouter(prefix="/api/store", include_in_schema=False)

#: The MetaStore methods a client may call.
METHODS = frozenset(
    name
    for name, action in STORE_METHODS.items()
    if action != SERVER_ONLY and callable(getattr(MetaStore, name, None)) and not name.startswith("_")
)
#: Methods whose first argument is an experiment key (owner rules look at its owner).
KEYED = frozenset({
    "update_experiment", "set_status", "delete_experiment", "put_artifact", "put_checkpoint", "heartbeat",
    "request_stop", "append_output", "put_metric_summaries",
})
CLOCK_HEADER = "x-studio-clock"


def _answer(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(wire.dumps(payload), status_code=status, media_type="application/json")


def _error(name: str, detail: str, status: int) -> Response:
    return _answer({"error": name, "detail": detail}, status)


def clock_skew(request: Request) -> float:
    """Server time minus the caller's (0 when unknown or within latency)."""
    try:
        theirs = float(request.headers.get(CLOCK_HEADER, "nan"))
    except ValueError:
        return 0.0
    if not math.isfinite(theirs):
        return 0.0
    skew = time.time() - theirs
    return skew if abs(skew) >= MIN_SKEW_S else 0.0


class Owners:
    """experiment key -> owner, cached: owner rules need it on every supervisor write."""

    def __init__(self, limit: int = 20_000) -> None:
        self._items: dict[str, str] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def get(self, store: MetaStore, key: str) -> str:
        with self._lock:
            owner = self._items.get(key)
        if owner is None:
            owner = store.get_experiment(str(key)).owner
            with self._lock:
                if len(self._items) >= self._limit:
                    self._items.clear()
                self._items[key] = owner
        return owner

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


def _owners(request: Request) -> Owners:
    state = request.app.state
    if not hasattr(state, "store_owners"):
        state.store_owners = Owners()
    return state.store_owners  # type: ignore[no-any-return]


def owner_of(request: Request, key: str) -> str:
    """The owner of experiment `key` (cached; NotFoundError if there is none). Blocking."""
    return _owners(request).get(context(request).meta, key)


def _action(method: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    action = STORE_METHODS.get(method, SERVER_ONLY)
    if method in ("update_experiment", "set_status"):
        if "owner" in kwargs:
            return "change-owner"
        if set(kwargs) - RECORDED_FIELDS - {"expect", "reason", "worker"}:
            return "change"
    elif method == "put_checkpoint":
        # Its `fields` are experiment fields as update_experiment sets them: judged the same.
        fields = kwargs.get("fields") or {}
        if not isinstance(fields, dict) or set(kwargs) - {"fields"}:
            raise UsageError("put_checkpoint: (key, artifacts, at) and an optional fields={...}")
        if "owner" in fields:
            return "change-owner"
        if set(fields) - RECORDED_FIELDS:
            return "change"
    return action


def _authorize(request: Request, who: Principal | None, method: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    action = _action(method, args, kwargs)
    if (action in RULES and not RULES[action].owner) or allowed(who, action):
        authorize(who, action, what=f"(store method {method})")
        return action
    if method not in KEYED or not args:
        raise UsageError(f"{method}: the experiment key is the first argument")
    owner = owner_of(request, str(args[0]))
    authorize(who, action, owner=owner, what=f"on experiment {args[0]} (store method {method})")
    return action


def _rewrite(auth: Auth, who: Principal, method: str, args: list[Any], kwargs: dict[str, Any], skew: float) -> None:
    """Server-owned values: the owner of what a team member creates, and server time."""
    if method == "create_experiment" and args and isinstance(args[0], Experiment):
        exp: Experiment = args[0]
        changes = shift_times({f: getattr(exp, f) for f in TIME_FIELDS}, skew)
        if auth.team_mode:
            changes["owner"] = who.name
        args[0] = exp.replace(**changes)
    elif method in ("update_experiment", "set_status"):
        kwargs.update(shift_times(kwargs, skew))
    elif method == "put_checkpoint" and skew:
        if len(args) >= 3 and isinstance(args[2], int | float):
            args[2] += skew  # the checkpoint's time
        if isinstance(kwargs.get("fields"), dict):
            kwargs["fields"] = shift_times(kwargs["fields"], skew)


@router.post("/{method}")
async def call(method: str, request: Request) -> Response:
    auth = auth_of(request)
    try:
        if not auth.team_mode:
            if not auth.shared_token:
                return _error("PermissionDeniedError", "this server's store API is off: start it with STUDIOML_SERVER_TOKEN set, or run `studio server`", 403)
            if bearer(request) is None:
                return _error("AuthenticationError", "wrong or missing token: set STUDIOML_API_TOKEN to the server's token", 401)
        who = current_principal(request)
    except StudioError as exc:
        return _error(type(exc).__name__, str(exc), status_for(exc))
    if method not in METHODS:
        return _error("UsageError", f"no store method {method!r}", 404)
    try:
        body = wire.loads(await request.body())
        args, kwargs = list(body.get("args") or []), dict(body.get("kwargs") or {})
    except (ValueError, TypeError, AttributeError) as exc:
        return _error("UsageError", f"malformed call: {exc}", 400)
    store = context(request).meta
    skew = clock_skew(request)

    def run() -> bytes:
        # One worker thread per call: the owner lookup (when not cached), the store call and
        # the audit entry are database work; the answer is encoded here too, off the event loop.
        action = _authorize(request, who, method, args, kwargs)
        assert who is not None  # authorize refuses nobody
        _rewrite(auth, who, method, args, kwargs, skew)
        result = getattr(store, method)(*args, **kwargs)
        if method in ("delete_experiment", "update_experiment") and args:
            _owners(request).forget(str(args[0]))
        if auth.accounts is not None and RULES[action].audit:
            detail = f"to {kwargs.get('owner')}" if action == "change-owner" else f"store method {method}"
            auth.accounts.record(who.name, action, str(args[0]) if args else "", detail)
        return wire.dumps({"result": result})

    try:
        answer = await run_in_threadpool(run)
    except StudioError as exc:
        return _error(type(exc).__name__, str(exc), status_for(exc))
    except TypeError as exc:  # wrong arguments for the method
        return _error("UsageError", f"{method}: {exc}", 400)
    return Response(answer, media_type="application/json")
