"""`create_app(ctx)`: the dashboard and its JSON API as one FastAPI application.

Errors: every StudioError becomes JSON `{"detail", "error"}` with a status code by branch
(NotFound 404, Usage 400, Conflict 409, MissingDependency 501, Store 503); a page request gets
the same message as an HTML page instead. Nothing a client sends is meant to produce a 500.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from studio import __version__
from studio.api.context import Context
from studio.exceptions import (
    ConflictError,
    IntegrityError,
    MissingDependencyError,
    NotFoundError,
    StoreError,
    StudioError,
    UsageError,
)
from studio.server.responses import SafeJSONResponse

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def status_for(exc: StudioError) -> int:
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


def create_app(ctx: Context, *, tensorboard_command: list[str] | None = None) -> FastAPI:
    """The application over `ctx`'s stores. `tensorboard_command` replaces
    `python -m tensorboard.main` (tests use a stand-in)."""
    from studio.server import (
        api_blobs,
        api_files,
        api_lists,
        api_metrics,
        api_runs,
        api_store,
        pages,
        tensorboard,
    )
    from studio.server.tensorboard import TensorBoards

    boards = TensorBoards(ctx, command=tensorboard_command)
    # Open the stores now: request threads would otherwise race to open them (and a database
    # that needs `studio db upgrade` says so before the first page, not in it).
    _ = ctx.meta, ctx.objects

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from studio.server.series import warm_up

        threading.Thread(target=warm_up, name="studio-warm-up", daemon=True).start()
        try:
            yield
        finally:
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
    )
    app.state.ctx = ctx
    app.state.store_token = ctx.settings.server_token
    app.state.tensorboards = boards
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["version"] = __version__
    app.state.templates = templates

    def error_page(request: Request, status: int, message: str) -> Response:
        return templates.TemplateResponse(
            request, "error.html",
            {"status": status, "message": message, "title": "Not found" if status == 404 else f"Error {status}",
             "me": ctx.settings.owner, "nav": ""},
            status_code=status,
        )

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> Response:
        status = status_for(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        if wants_html(request):
            return error_page(request, status, str(exc))
        body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
        position = getattr(exc, "position", None)
        if isinstance(position, int):
            body["position"] = position
        return SafeJSONResponse(body, status_code=status)

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

    @app.middleware("http")
    async def same_origin_writes(request: Request, call_next: Any) -> Response:
        # Guest mode has no login, so a page on another site must not be able to make a
        # visitor's browser stop or delete experiments here (a cross-site form POST needs no
        # CORS preflight). Browsers send Origin on such requests; it must be this server.
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin and origin != "null":
            if urlsplit(origin).netloc != request.headers.get("host", ""):
                return SafeJSONResponse(
                    {"detail": f"cross-origin {request.method} from {origin} refused", "error": "Forbidden"},
                    status_code=403,
                )
        response: Response = await call_next(request)
        return response

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_asset() -> Response:
        return FileResponse(
            plotly_js(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(api_runs.router)
    app.include_router(api_files.router)
    app.include_router(api_metrics.router)
    app.include_router(api_lists.router)
    app.include_router(api_store.router)
    app.include_router(api_blobs.router)
    app.include_router(tensorboard.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    return app
