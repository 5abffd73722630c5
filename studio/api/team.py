"""Client side of a team server: `studio login` (check a token against a server and keep it)
and the audit log (`studio audit`), over HTTP (`studio-experiments[remote]`), or on the server's own
database when run there."""

from __future__ import annotations

from typing import Any

from studio.api.context import Context
from studio.credentials import normalize_url, save_token
from studio.exceptions import (
    AuthenticationError,
    PermissionDeniedError,
    StoreError,
    UsageError,
    require,
)

TIMEOUT_S = 15.0


def _get(url: str, path: str, token: str | None, params: dict[str, Any] | None = None) -> Any:
    httpx = require("httpx", "remote")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = httpx.get(f"{url}{path}", headers=headers, params=params, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise StoreError(f"cannot reach {url}: {exc}; check the URL") from exc
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UsageError(f"{url} is not a studio server (it answered {response.status_code} without studio's JSON)")
    if response.status_code == 401:
        raise AuthenticationError(f"{url} refused the token ({data.get('detail', 'unauthorized')})")
    if response.status_code >= 400:
        cls = PermissionDeniedError if response.status_code == 403 else StoreError
        raise cls(f"{url}: {data.get('detail') or response.status_code}")
    return data


def login(home: Any, url: str, token: str) -> dict[str, Any]:
    """Check `token` against the studio server at `url`; keep it for this home if it is good.
    Returns {"user", "role", "url", "path"}."""
    url = normalize_url(url)
    if not url.lower().startswith(("http://", "https://")):
        raise UsageError(f"{url} is not a server URL: give http(s)://HOST[:PORT]")
    token = token.strip()
    if not token:
        raise UsageError("no token given: paste the token `studio users add` printed")
    data = _get(url, "/api/session", token)
    if "accounts" not in data or "user" not in data:
        raise UsageError(f"{url} is not a studio server (no /api/session)")
    if not data.get("accounts"):
        raise UsageError(f"{url} is a single-user `studio ui` without accounts: nothing to log in to")
    if not data.get("user"):
        raise AuthenticationError(f"{url} refused the token (wrong, expired or revoked): ask an admin for a current one")
    path = save_token(home, url, token, str(data["user"]))
    return {"user": data["user"], "role": data["role"], "url": url, "path": str(path)}


def audit_log(ctx: Context, limit: int = 100, actor: str | None = None, action: str | None = None) -> list[dict[str, Any]]:
    """The newest entries of the audit log: from the server's API for an http(s) database
    (admins only), else from the database itself (run on the server machine)."""
    url = ctx.settings.database_url
    if url.lower().startswith(("http://", "https://")):
        params = {k: v for k, v in {"limit": limit, "actor": actor, "action": action}.items() if v}
        return list(_get(normalize_url(url), "/api/audit", ctx.settings.api_token, params)["items"])
    from studio.server.accounts import Accounts

    return Accounts.for_store(ctx.meta).audit(limit=limit, actor=actor, action=action)
