"""`studio ui`: serve the dashboard over the configured stores, for one user (no accounts)."""

from __future__ import annotations

import click

from studio.cli.common import config_option, context


@click.command(short_help="Serve the web dashboard (one user; a team uses `studio server`).")
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Host name the browser uses (repeatable); loopback names are always allowed.")
def ui(config: str | None, host: str, port: int, allow_hosts: tuple[str, ...]) -> None:
    """Serve the dashboard at http://HOST:PORT (experiments, projects, users, charts, artifacts).

    Without accounts every visitor acts as the configured owner: keep it on 127.0.0.1, and
    run `studio server` (users, tokens, owner-only rules) to share a dashboard."""
    from studio.exceptions import require

    uvicorn = require("uvicorn", "ui")
    require("fastapi", "ui")
    from studio.cli.team import _loopback
    from studio.server.app import create_app, settle_for_serving
    from studio.server.auth import Auth

    ctx = context(config)
    app = create_app(ctx, auth=Auth.local(ctx.settings.owner, ctx.settings.server_token, hosts=[*allow_hosts, host]))
    if not _loopback(host):
        click.echo(
            f"studio ui: WARNING: {host} is not loopback, and `studio ui` has no accounts: anyone who reaches it "
            "can stop and delete experiments. Share a dashboard with `studio server` (docs/team-server.md).",
            err=True,
        )
    click.echo(f"studio ui: http://{host}:{port} (Ctrl-C to stop)", err=True)
    settle_for_serving()
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        ctx.close()
