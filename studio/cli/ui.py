"""`studio ui`: serve the dashboard over the configured stores (guest mode, no login)."""

from __future__ import annotations

import click

from studio.cli.common import config_option, context


@click.command(short_help="Serve the web dashboard.")
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
def ui(config: str | None, host: str, port: int) -> None:
    """Serve the dashboard at http://HOST:PORT (experiments, projects, users, charts, artifacts)."""
    from studio.exceptions import require

    uvicorn = require("uvicorn", "ui")
    require("fastapi", "ui")
    from studio.server.app import create_app

    ctx = context(config)
    app = create_app(ctx)
    click.echo(f"studio ui: http://{host}:{port} (Ctrl-C to stop)", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        ctx.close()
