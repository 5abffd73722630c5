"""Browser login and logout, the caller's session (`/api/session`), and the audit log.

`POST /login` takes a token (form field or JSON `token`), checks it, and sets an HttpOnly,
SameSite=Strict session cookie (Secure when the server has TLS); the token is never put in a
URL, a page or a log. Pages then send writes with the session's CSRF token, which they read
from their `<meta name="csrf-token">` (or a script from `GET /api/session`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from studio.exceptions import AuthenticationError, NotFoundError, UsageError
from studio.server.auth import (
    COOKIE,
    SESSION_SECONDS,
    auth_of,
    csrf_token,
    current_principal,
    login,
    logout,
)
from studio.server.responses import ERRORS

router = APIRouter(responses=ERRORS)
MAX_LOGIN_BODY = 4096


def _next_path(value: str | None) -> str:
    # Only a path on this server: never `//evil.example` or `https://...` (open redirect).
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


@router.get("/login", include_in_schema=False, response_class=HTMLResponse)
def login_page(request: Request, next: str | None = Query(None, max_length=2000)) -> Response:
    if not auth_of(request).team_mode:
        return RedirectResponse("/", status_code=303)
    return request.app.state.templates.TemplateResponse(  # type: ignore[no-any-return]
        request, "login.html",
        {"title": "Log in", "nav": "", "me": "", "csrf": "", "next": _next_path(next), "message": ""},
    )


@router.post("/login", include_in_schema=False)
async def login_submit(request: Request) -> Response:
    body = await request.body()
    if len(body) > MAX_LOGIN_BODY:
        raise UsageError("login request too large")
    as_json = request.headers.get("content-type", "").startswith("application/json")
    try:
        if as_json:
            data = json.loads(body or b"{}")
            token, next_path = str(data.get("token") or ""), data.get("next")
        else:
            form = parse_qs(body.decode("utf-8", "replace"))
            token, next_path = (form.get("token") or [""])[0], (form.get("next") or [""])[0]
    except (ValueError, AttributeError):
        raise UsageError("send the token as a form field or JSON `token`") from None
    try:
        who, sid = login(request, token.strip())
    except AuthenticationError as exc:
        if as_json:
            raise
        return request.app.state.templates.TemplateResponse(  # type: ignore[no-any-return]
            request, "login.html",
            {"title": "Log in", "nav": "", "me": "", "csrf": "", "next": _next_path(next_path), "message": str(exc)},
            status_code=401,
        )
    response: Response
    if as_json:
        response = Response(json.dumps({"user": who.name, "role": who.role}), media_type="application/json")
    else:
        response = RedirectResponse(_next_path(next_path), status_code=303)
    response.set_cookie(
        COOKIE, sid, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
        secure=auth_of(request).secure_cookies, path="/",
    )
    return response


@router.post("/logout", include_in_schema=False)
def logout_submit(request: Request) -> Response:
    logout(request)
    response = RedirectResponse("/login" if auth_of(request).team_mode else "/", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/api/session", tags=["meta"], summary="Who the caller is, and the CSRF token for its writes")
def session(request: Request) -> dict[str, Any]:
    try:
        who = current_principal(request)
    except AuthenticationError:
        who = None
    return {
        "user": who.name if who else None, "role": who.role if who else None,
        "csrf": csrf_token(request) if who else "", "accounts": auth_of(request).team_mode,
    }


def _audit_rows(request: Request, limit: int, actor: str | None, action: str | None) -> list[dict[str, Any]]:
    accounts = auth_of(request).accounts
    if accounts is None:
        raise NotFoundError("this server has no accounts and no audit log: start it with `studio server`")
    return accounts.audit(limit=limit, actor=actor, action=action)


@router.get("/api/audit", tags=["meta"], summary="Destructive actions: who, when, what (admins only)")
def audit(
    request: Request,
    limit: int = Query(100, ge=1, le=10_000),
    actor: str | None = Query(None, max_length=255),
    action: str | None = Query(None, max_length=64),
) -> dict[str, Any]:
    return {"items": _audit_rows(request, limit, actor, action)}


@router.get("/audit", include_in_schema=False, response_class=HTMLResponse)
def audit_page(request: Request, limit: int = Query(200, ge=1, le=10_000)) -> Response:
    who = current_principal(request)
    return request.app.state.templates.TemplateResponse(  # type: ignore[no-any-return]
        request, "audit.html",
        {"title": "Audit log", "nav": "audit", "me": who.name if who else "", "csrf": csrf_token(request),
         "items": _audit_rows(request, limit, None, None)},
    )
