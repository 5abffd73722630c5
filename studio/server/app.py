"""`create_app(ctx)`: the dashboard and its JSON API as one FastAPI application.

Errors: every StudioError becomes JSON `{"detail", "error"}` with a status code by branch
(NotFound 404, Usage 400, Conflict 409, MissingDependency 501, Store 503); a page request gets
the same message as an HTML page instead. Nothing a client sends is meant to produce a 500.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from studio import __version__
from studio.api.context import Context
from studio.exceptions import (
    AuthenticationError,
    ConflictError,
    IntegrityError,
    MissingDependencyError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
    StudioError,
    UsageError,
)
from studio.server.auth import (
    Auth,
    check_identity,
    check_request,
    guard,
    identity_checked,
    needs_lookup,
)
from studio.server.responses import SafeJSONResponse

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def status_for(exc: StudioError) -> int:
    if isinstance(exc, AuthenticationError):
        return 401
    if isinstance(exc, PermissionDeniedError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, UsageError):
        return 400
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, MissingDependencyError):
        return 501
    if isinstance(exc, IntegrityError):
        return 500  # stored data is corrupt: the server's problem, said plainly
    if isinstance(exc, StoreError):
        return 503
    return 500


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


def plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class Compression:
    """brotli (when the client accepts `br`) or gzip for what compresses (pages, JSON) but not
    for artifact files and archives, which are streamed as they are (often compressed already,
    and a download must not wait for a compressor), nor for TensorBoard's own responses, nor
    for static files (`studio.server.assets` serves them compressed ahead)."""

    def __init__(self, app: Any) -> None:
        from starlette.middleware.gzip import GZipMiddleware

        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024, compresslevel=6)
        self.brotli = _brotli_responder()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path or "/artifacts/" in path or path.startswith(("/tensorboard/", "/static/", "/vendor/")):
            await self.app(scope, receive, send)
            return
        if self.brotli is not None:
            from starlette.datastructures import Headers

            from studio.server.assets import accepted

            if "br" in accepted(Headers(scope=scope).get("accept-encoding", "")):
                await self.brotli(self.app, 1024)(scope, receive, send)
                return
        await self.gzip(scope, receive, send)


def _brotli_responder() -> Any:
    """starlette's gzip responder with brotli as its compressor; None without brotli (or with a
    starlette older than 0.46, whose gzip middleware has no responder to build on)."""
    from studio.server.assets import brotli_module

    brotli = brotli_module()
    try:
        from starlette.middleware.gzip import IdentityResponder
    except ImportError:
        return None
    if brotli is None:
        return None

    class BrotliResponder(IdentityResponder):  # type: ignore[misc]
        content_encoding = "br"

        def __init__(self, app: Any, minimum_size: int) -> None:
            super().__init__(app, minimum_size)
            self._compressor: Any = None

        async def apply_compression(self, body: bytes, *, more_body: bool) -> bytes:
            if len(body) >= 128 << 10:  # as starlette's gzip: a large body off the event loop
                return await run_in_threadpool(self._compress, body, more_body)
            return self._compress(body, more_body)

        def _compress(self, body: bytes, more_body: bool) -> bytes:
            if self._compressor is None:  # the first chunk tells a page from a chart's megabytes
                small = not more_body and len(body) < LARGE_BODY
                self._compressor = brotli.Compressor(quality=DYNAMIC_BROTLI_QUALITY if small else LARGE_BROTLI_QUALITY)
            out = self._compressor.process(body)
            return bytes(out + (self._compressor.flush() if more_body else self._compressor.finish()))

    return BrotliResponder


#: Pages and JSON are compressed as they go out: quality 4 is faster than gzip -6 and smaller.
#: Large bodies (the runs+charts view's series: 1.6 MB of JSON for 100 runs) get quality 1:
#: 25 ms for 1.6 MB -> 0.72 MB, where quality 4 takes 200-330 ms (and gzip -6 330 ms) for
#: 0.66-0.73 MB, which on a loopback or LAN costs more than it saves.
DYNAMIC_BROTLI_QUALITY = 4
LARGE_BROTLI_QUALITY = 1
LARGE_BODY = 64 << 10

#: Static files are addressed with `?v=<studio version>`: such a URL never changes content.
STATIC_CACHE = "public, max-age=31536000, immutable"


class ServerTiming:
    """`Server-Timing: app;dur=<ms>` on every response: the time from the request reaching the
    application to its response starting, so a client (and `bench/bench_server.py`) can tell
    the server's own latency from time spent in the network, in queues, or waiting for a CPU."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Any) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1e3
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), (b"server-timing", f"app;dur={took:.2f}".encode())]
            await send(message)

        await self.app(scope, receive, timed)


class Gate:
    """Before any route: a Host outside the allow-list (DNS rebinding: attacker.example
    resolving to this server) and a write from another origin, or from an opaque `Origin: null`
    (sandboxed frames, data: URLs), never reach the application; on a team server neither does
    a write from nobody. Sets the static files' Cache-Control. A plain ASGI middleware: no task
    group or response stream per request (as `@app.middleware("http")` costs), and no thread
    unless the caller must be looked up in the database."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refused = check_request(request)
        if refused is not None:
            await SafeJSONResponse({"detail": refused, "error": "Forbidden"}, status_code=403)(scope, receive, send)
            return
        if identity_checked(request):
            if needs_lookup(request):
                nobody = await run_in_threadpool(check_identity, request)  # a database lookup
            else:
                nobody = check_identity(request)
            if nobody is not None:
                body = {"detail": str(nobody), "error": type(nobody).__name__}
                await SafeJSONResponse(body, status_code=401)(scope, receive, send)
                return
        if not scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        # Versioned URLs (what the pages link) are immutable; a bare URL revalidates.
        versioned = request.query_params.get("v") == __version__

        async def cached(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                message = dict(message)
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"cache-control"]
                message["headers"] = [*headers, (b"cache-control", (STATIC_CACHE if versioned else "no-cache").encode())]
            await send(message)

        await self.app(scope, receive, cached)


def settle_for_serving() -> None:
    """Called by `studio ui` / `studio server` once the app is built, before serving: what is
    imported and built by now lives as long as the process, so it is taken out of the cyclic
    collector's way (`gc.freeze`): a later full collection, which stalls every request in
    flight, then walks only what requests made, not the libraries (the full collections at
    start-up took 80-700 ms on a loaded machine). Not in `create_app`: a process that builds
    many apps (the tests) would keep their cyclic garbage forever."""
    import gc

    gc.collect()
    gc.freeze()


def create_app(
    ctx: Context, *, tensorboard_command: list[str] | None = None, auth: Auth | None = None,
    tensorboard_limits: tuple[int, int] = (8, 2),
) -> FastAPI:
    """The application over `ctx`'s stores. `auth`: how callers are authenticated (default:
    a single-user `studio ui`, see `studio.server.auth`). `tensorboard_command` replaces
    `python -m tensorboard.main` (tests use a stand-in); `tensorboard_limits` caps the
    TensorBoards running at once, in all and per user."""
    from studio.server import (
        api_auth,
        api_blobs,
        api_files,
        api_lists,
        api_media,
        api_metrics,
        api_runs,
        api_store,
        api_sweeps,
        pages,
        tensorboard,
    )
    from studio.server.tensorboard import TensorBoards

    boards = TensorBoards(ctx, command=tensorboard_command, limits=tensorboard_limits)
    # Open the stores now: request threads would otherwise race to open them (and a database
    # that needs `studio db upgrade` says so before the first page, not in it).
    _ = ctx.meta, ctx.objects

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from studio.queue.claimer import requeue_interval
        from studio.runner.salvage import LapseWatcher
        from studio.server.series import warm_up

        threading.Thread(target=warm_up, name="studio-warm-up", daemon=True).start()
        # A dashboard that is up shows a dead run `lost` within a fraction of its lease.
        watcher = LapseWatcher(ctx, requeue_interval(ctx.settings)).start()
        try:
            yield
        finally:
            watcher.close()
            boards.stop_all()

    app = FastAPI(
        title="studio",
        version=__version__,
        description="Experiments, artifacts, metrics and output recorded by studio.",
        default_response_class=SafeJSONResponse,
        lifespan=lifespan,
        # FastAPI's /docs and /redoc pages load their scripts from a CDN; the dashboard works
        # offline, so only the schema itself is served (/openapi.json).
        docs_url=None,
        redoc_url=None,
        # Every route passes the rules table (studio.server.rules) before it runs.
        dependencies=[Depends(guard)],
    )
    app.state.ctx = ctx
    app.state.auth = auth or Auth.local(ctx.settings.owner, ctx.settings.server_token)
    app.state.tensorboards = boards
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["version"] = __version__
    templates.env.globals["accounts"] = app.state.auth.team_mode
    templates.env.filters["utc"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
    app.state.templates = templates

    def error_page(request: Request, status: int, message: str) -> Response:
        who = getattr(request.state, "principal", None)
        return templates.TemplateResponse(
            request, "error.html",
            {"status": status, "message": message, "title": "Not found" if status == 404 else f"Error {status}",
             "me": who.name if who else "", "nav": "", "csrf": ""},
            status_code=status,
        )

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> Response:
        status = status_for(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        if wants_html(request):
            if status == 401 and request.method == "GET":
                return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
            return error_page(request, status, str(exc))
        body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
        position = getattr(exc, "position", None)
        if isinstance(position, int):
            body["position"] = position
        return SafeJSONResponse(body, status_code=status)

    @app.exception_handler(OSError)
    async def os_error(request: Request, exc: OSError) -> Response:
        # A full disk (or quota) under the database or the object store: say so, in the
        # store-error shape clients turn into one line; anything else stays a 500.
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise exc
        log.error("%s %s: %s", request.method, request.url.path, exc)
        detail = (f"the studio server's storage is full ({exc.strerror}): free space on the server "
                  "(`studio gc` there removes unreferenced objects) and try again")
        if wants_html(request):
            return error_page(request, 507, detail)
        return SafeJSONResponse({"detail": detail, "error": "StoreError"}, status_code=507)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no page or endpoint at {request.url.path}"
        if wants_html(request):
            return error_page(request, exc.status_code, detail)
        return SafeJSONResponse(
            {"detail": detail, "error": "HTTPException"}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg")))
        return SafeJSONResponse(
            {"detail": "; ".join(parts) or "invalid request", "error": "ValidationError"}, status_code=422
        )

    from studio.server.assets import Assets

    assets = Assets(ctx.settings.home / "cache" / "assets")
    static_root = (HERE / "static").resolve()
    static_files = {p.name for p in static_root.iterdir() if p.is_file()}

    @app.api_route("/static/{name}", methods=["GET", "HEAD"], include_in_schema=False)
    def static_asset(name: str, request: Request) -> Response:
        if name not in static_files:
            return SafeJSONResponse({"detail": "Not Found"}, status_code=404)
        # Versioned URLs (what the pages link) are immutable; a bare URL revalidates.
        versioned = request.query_params.get("v") == __version__
        return assets.response(request, static_root / name, STATIC_CACHE if versioned else "no-cache")

    @app.api_route("/vendor/plotly.min.js", methods=["GET", "HEAD"], include_in_schema=False)
    def plotly_asset(request: Request) -> Response:
        return assets.response(request, plotly_js(), "public, max-age=86400")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    # The machine-facing APIs first: routes match in order, and these take most requests.
    app.include_router(api_store.router)
    app.include_router(api_blobs.router)
    app.include_router(api_runs.router)
    app.include_router(api_files.router)
    app.include_router(api_metrics.router)
    app.include_router(api_metrics.runs_router)
    app.include_router(api_media.router)
    app.include_router(api_lists.router)
    app.include_router(api_auth.router)
    app.include_router(api_sweeps.router)
    app.include_router(tensorboard.router)
    app.include_router(tensorboard.runs_router)
    app.include_router(tensorboard.proxy)
    app.include_router(pages.router)
    app.add_middleware(Gate)
    app.add_middleware(Compression)
    app.add_middleware(ServerTiming)  # outermost: everything the application does is timed
    return app
