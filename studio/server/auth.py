"""Who is calling: tokens, browser sessions, CSRF and the Host allow-list of a studio server.

The API (what other server modules use):

- ``Auth``: the server's configuration, on ``app.state.auth``; built by ``create_app`` from
  its ``auth=`` argument. ``Auth.local(...)`` is a single-user ``studio ui`` (no accounts: every
  caller is the configured owner, as an admin; the store API needs the shared
  ``STUDIOML_SERVER_TOKEN``); ``Auth.team(accounts, ...)`` is ``studio server`` (accounts in the
  database; ``guest=`` the role of a caller without a token, or None to refuse them).
- ``current_principal(request) -> Principal | None``: a FastAPI dependency resolving the
  caller, once per request, from ``Authorization: Bearer <token>`` or else the session cookie.
  A token in a query string is never read. A presented token that is wrong or revoked is a 401,
  never a fallback to guest.
- ``guard(request)``: the app-wide dependency. It finds the route's action in
  ``rules.route_action`` (a write route without a rule is refused), checks it with
  ``rules.authorize`` (for owner rules: "could this caller act on their own record?"; the
  route then checks the record's owner), and checks CSRF on writes not sent with a bearer token.
- ``check_request(request) -> str | None``: the middleware's checks, before any route: the
  Host header must be in the allow-list (DNS rebinding), and a write's Origin must be this
  server (``Origin: null`` is refused).
- ``login(...)`` / ``logout(...)`` / ``csrf_token(request)``: the browser session: a token
  turned into an HttpOnly, SameSite=Strict cookie naming a server-side session; the session
  ends when its token is revoked. Writes from a session carry ``X-CSRF-Token`` (the pages read
  it from a ``<meta>`` tag), derived from the session id with HMAC.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fastapi import Request

from studio.exceptions import AuthenticationError, PermissionDeniedError
from studio.server.rules import RULES, Principal, authorize, route_action

if TYPE_CHECKING:
    from studio.server.accounts import Accounts

COOKIE = "studio_session"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 7 * 24 * 3600
MAX_SESSIONS = 10_000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_name(host_header: str) -> str:
    """`example.org:5000` -> `example.org`; `[::1]:5000` -> `::1`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass
class Sessions:
    """Browser sessions: id -> (token hash, expiry). In memory: a restart logs browsers out."""

    _items: dict[str, tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def new(self, digest: str) -> str:
        sid = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            if len(self._items) >= MAX_SESSIONS:
                self._items = {k: v for k, v in self._items.items() if v[1] > now}
                while len(self._items) >= MAX_SESSIONS:  # still full: drop the oldest
                    self._items.pop(next(iter(self._items)))
            self._items[sid] = (digest, now + SESSION_SECONDS)
        return sid

    def get(self, sid: str) -> str | None:
        with self._lock:
            item = self._items.get(sid)
        if item is None or item[1] < time.time():
            return None
        return item[0]

    def drop(self, sid: str) -> None:
        with self._lock:
            self._items.pop(sid, None)


@dataclass
class Auth:
    """How a server authenticates (see the module docstring)."""

    accounts: Accounts | None = None
    local_owner: str | None = None
    shared_token: str | None = field(default=None, repr=False)
    guest: Principal | None = None
    allowed_hosts: frozenset[str] = LOOPBACK_HOSTS
    secure_cookies: bool = False
    sessions: Sessions = field(default_factory=Sessions)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def local(cls, owner: str, shared_token: str | None = None, hosts: Iterable[str] = ()) -> Auth:
        return cls(local_owner=owner, shared_token=shared_token, allowed_hosts=LOOPBACK_HOSTS | _names(hosts))

    @classmethod
    def team(
        cls, accounts: Accounts, *, guest: str | None = None, hosts: Iterable[str] = (), secure_cookies: bool = False
    ) -> Auth:
        return cls(
            accounts=accounts,
            guest=Principal("guest", guest) if guest else None,
            allowed_hosts=LOOPBACK_HOSTS | _names(hosts),
            secure_cookies=secure_cookies,
        )

    @property
    def team_mode(self) -> bool:
        return self.accounts is not None

    def principal_for_token(self, token: str) -> Principal | None:
        if self.accounts is not None:
            return self.accounts.principal_for(token)
        if self.shared_token and hmac.compare_digest(token.encode(), self.shared_token.encode()):
            return Principal(self.local_owner or "owner", "admin")
        return None

    def csrf_for(self, sid: str) -> str:
        return hmac.new(self.secret, f"csrf:{sid}".encode(), "sha256").hexdigest()


def _names(hosts: Iterable[str]) -> frozenset[str]:
    return frozenset(host_name(h) for h in hosts if h and h not in ("0.0.0.0", "::"))  # noqa: S104


def auth_of(request: Request) -> Auth:
    return request.app.state.auth  # type: ignore[no-any-return]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("malformed Authorization header: send `Authorization: Bearer TOKEN`")
    return token.strip()


def _resolve(request: Request) -> Principal | None:
    auth = auth_of(request)
    token = bearer(request)
    if token is not None and (auth.team_mode or auth.shared_token):
        who = auth.principal_for_token(token)
        if who is None:
            raise AuthenticationError(
                "wrong, expired or revoked token: log in again with `studio login URL` and a current token"
            )
        return who
    if not auth.team_mode:
        return Principal(auth.local_owner or "owner", "admin")
    sid = request.cookies.get(COOKIE)
    if sid:
        digest = auth.sessions.get(sid)
        who = _principal_for_hash(auth, digest) if digest else None
        if who is not None:
            return who
    return auth.guest


def _principal_for_hash(auth: Auth, digest: str) -> Principal | None:

    accounts: Accounts | None = auth.accounts
    return accounts.principal_for_hash(digest) if accounts is not None else None


def needs_lookup(request: Request) -> bool:
    """Whether resolving the caller may query the database (a team server, and a token or
    session not verified moments ago): callers on the event loop then use a worker thread."""
    auth = auth_of(request)
    if auth.accounts is None or hasattr(request.state, "principal"):
        return False
    try:
        token = bearer(request)
    except AuthenticationError:
        return False  # refused without a lookup
    if token is None:
        sid = request.cookies.get(COOKIE)
        digest = auth.sessions.get(sid) if sid else None
        return digest is not None and auth.accounts.cached(digest) is None
    from studio.server.accounts import token_hash

    return auth.accounts.cached(token_hash(token)) is None


def current_principal(request: Request) -> Principal | None:
    """The caller (cached on the request); None when nobody is authenticated."""
    if not hasattr(request.state, "principal"):
        request.state.principal = _resolve(request)
    return request.state.principal  # type: ignore[no-any-return]


def csrf_token(request: Request) -> str:
    """The CSRF token pages embed for this caller's session ("" without a session)."""
    auth = auth_of(request)
    if not auth.team_mode:
        return auth.csrf_for("local")
    sid = request.cookies.get(COOKIE)
    return auth.csrf_for(sid) if sid and auth.sessions.get(sid) else ""


def _check_csrf(request: Request) -> None:
    if request.method in SAFE_METHODS or "authorization" in request.headers:
        return  # a bearer token is never sent by a browser on its own
    if request.url.path.startswith("/tensorboard/") and request.headers.get("x-xsrf-protected") == "1":
        return  # TensorBoard's reads: a custom header no cross-site form can send (as TensorBoard's own check)
    given = request.headers.get(CSRF_HEADER, "")
    expected = csrf_token(request)
    if not expected and auth_of(request).team_mode:
        return  # no session: the caller is a guest or nobody, and the rules decide
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise PermissionDeniedError(
            "missing or wrong CSRF token: reload the page (scripts send X-CSRF-Token from GET /api/session)"
        )


async def guard(request: Request) -> None:
    """App-wide dependency: every route passes the rules table (see the module docstring).
    Async, so a request costs no thread hop for it; only a caller whose token must be looked
    up in a team server's database is resolved on a worker thread."""
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    action = route_action(request.method, path)
    if action is None:
        raise PermissionDeniedError(f"{request.method} {path} has no authorization rule; refused")
    if RULES[action].public:
        return
    if needs_lookup(request):
        from starlette.concurrency import run_in_threadpool

        who = await run_in_threadpool(current_principal, request)
    else:
        who = current_principal(request)
    _check_csrf(request)
    authorize(who, action, owner=who.name if who else None, what=f"({request.method} {path})")


def check_request(request: Request) -> str | None:
    """Why the request is refused before routing (DNS rebinding, cross-origin writes), or None."""
    auth = auth_of(request)
    host = request.headers.get("host", "")
    if host_name(host) not in auth.allowed_hosts:
        return (
            f"host {host!r} is not served here: add it with `--allow-host {host_name(host)}` "
            "(only names in the allow-list are answered, against DNS rebinding)"
        )
    if request.method not in SAFE_METHODS:
        origin = request.headers.get("origin")
        if origin is not None:
            if origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
                return f"cross-origin {request.method} from {origin} refused"
    return None


def identity_checked(request: Request) -> bool:
    """Whether `check_identity` has anything to check (a write to a team server)."""
    return (
        auth_of(request).team_mode
        and request.method not in SAFE_METHODS
        and request.url.path not in ("/login", "/logout")
    )


def check_identity(request: Request) -> AuthenticationError | None:
    """On a team server, a write from nobody (no, a wrong or a revoked token) is refused
    before its body is read, so no malformed body gets a more telling answer than 401."""
    if not identity_checked(request):
        return None
    try:
        who = current_principal(request)
    except AuthenticationError as exc:
        return exc
    if who is None:
        return AuthenticationError(
            "authentication required: log in with `studio login URL` (or send Authorization: Bearer TOKEN)"
        )
    return None


def login(request: Request, token: str) -> tuple[Principal, str]:
    """Check `token` and open a session; returns (who, session id) for the cookie."""
    auth = auth_of(request)
    if auth.accounts is None:
        raise PermissionDeniedError("this dashboard has no accounts: nothing to log in to")
    from studio.server.accounts import token_hash

    who = auth.accounts.principal_for(token)
    if who is None:
        raise AuthenticationError("wrong, expired or revoked token: ask an admin for a current one")
    return who, auth.sessions.new(token_hash(token))


def logout(request: Request) -> None:
    sid = request.cookies.get(COOKIE)
    if sid:
        auth_of(request).sessions.drop(sid)
