"""A team's studio: `studio server`, `studio users add|list|revoke|rotate`, `studio login`,
`studio logout` and `studio audit`. See docs/team-server.md."""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

import click

from studio.cli.common import config_option, console, context, fmt_time, json_option, print_json


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command(short_help="Serve the dashboard and store API to a team, with accounts.")
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Host name clients use (repeatable); loopback names are always allowed.")
@click.option("--guest", is_flag=True, help="Let callers without a token read (the seed's `guest: true`).")
@click.option("--guest-writes", is_flag=True, help="With --guest: callers without a token may also create runs, as `guest`.")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM).")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM).")
@click.option("--behind-proxy", is_flag=True, help="TLS ends at a reverse proxy in front (cookies are Secure).")
def server(
    config: str | None, host: str, port: int, allow_hosts: tuple[str, ...], guest: bool, guest_writes: bool,
    certfile: str | None, keyfile: str | None, behind_proxy: bool,
) -> None:
    """Serve the dashboard and the store API over the configured database and storage, to
    the users of `studio users`. Clients `studio login https://HOST` with their token."""
    from studio.exceptions import UsageError, require

    uvicorn = require("uvicorn", "ui")
    require("fastapi", "ui")
    from studio.server.accounts import Accounts
    from studio.server.app import create_app, settle_for_serving
    from studio.server.auth import Auth

    if bool(certfile) != bool(keyfile):
        raise UsageError("give both --certfile and --keyfile, or neither")
    if guest_writes and not guest:
        raise UsageError("--guest-writes needs --guest")
    ctx = context(config)
    accounts = Accounts.for_store(ctx.meta)
    tls = bool(certfile)
    names = [*allow_hosts, host]
    auth = Auth.team(accounts, guest=("user" if guest_writes else "guest") if guest else None,
                     hosts=names, secure_cookies=tls or behind_proxy)
    app = create_app(ctx, auth=auth)
    if not accounts.has_users():
        click.echo("studio server: no users yet: create one with `studio users add NAME --admin`", err=True)
    if not _loopback(host) and not (tls or behind_proxy):
        click.echo(
            f"studio server: WARNING: serving {host} over plain http: tokens and session cookies cross the "
            "network unencrypted. Give --certfile/--keyfile, or put a TLS reverse proxy in front "
            "(--behind-proxy); see docs/team-server.md", err=True,
        )
    scheme = "https" if tls else "http"
    click.echo(f"studio server: {scheme}://{host}:{port} (Ctrl-C to stop)", err=True)
    settle_for_serving()
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                    ssl_certfile=certfile, ssl_keyfile=keyfile, proxy_headers=behind_proxy)
    finally:
        ctx.close()


@click.group(short_help="Accounts of a team server: add, list, revoke, rotate.")
def users() -> None:
    """Accounts of a team server, in its database (run on the server machine)."""


def _accounts(config: str | None):  # type: ignore[no-untyped-def]
    from studio.server.accounts import Accounts

    ctx = context(config)
    return ctx, Accounts.for_store(ctx.meta)


def _actor(ctx: Any) -> str:
    return f"cli:{ctx.settings.owner}"


def expires_option(f: Any) -> Any:
    return click.option("--expires", default=None, metavar="DURATION",
                        help="The token stops working after this long (e.g. 90d); default: until revoked.")(f)


def _seconds(duration: str | None) -> float | None:
    from studio.units import parse_duration

    return None if duration is None else parse_duration(duration)


@users.command("add")
@config_option
@click.argument("name")
@click.option("--admin", "role", flag_value="admin", help="May change and delete anything, and read the audit log.")
@click.option("--worker", "role", flag_value="worker", help="May claim queued work and record runs, for any user.")
@expires_option
def users_add(config: str | None, name: str, role: str | None, expires: str | None) -> None:
    """Create user NAME and print their token (shown once: only its hash is stored)."""
    ctx, accounts = _accounts(config)
    token = accounts.add_user(name, role or "user", expires_in=_seconds(expires))
    click.echo(f"studio: user {name} ({role or 'user'}) created; their token (shown once, keep it secret):", err=True)
    click.echo(token)
    ctx.close()


@users.command("list")
@config_option
@json_option
def users_list(config: str | None, as_json: bool) -> None:
    """Users with their role and whether they are revoked."""
    ctx, accounts = _accounts(config)
    rows = accounts.users()
    ctx.close()
    if as_json:
        return print_json(rows)
    from rich.table import Table

    table = Table(title=f"{len(rows)} user(s)")
    for col in ("user", "role", "created", "token issued", "token expires", "revoked"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["role"], fmt_time(r["created"]), fmt_time(r["token_created"]),
                      fmt_time(r["token_expires"]), fmt_time(r["revoked"]))
    console().print(table)


@users.command("revoke")
@config_option
@click.argument("name")
def users_revoke(config: str | None, name: str) -> None:
    """Revoke user NAME: every token of theirs stops working at once."""
    ctx, accounts = _accounts(config)
    accounts.revoke(name, _actor(ctx))
    ctx.close()
    click.echo(f"studio: user {name} revoked")


@users.command("rotate")
@config_option
@click.argument("name")
@expires_option
def users_rotate(config: str | None, name: str, expires: str | None) -> None:
    """Revoke NAME's tokens and print a new one (also re-enables a revoked user)."""
    ctx, accounts = _accounts(config)
    token = accounts.rotate(name, _actor(ctx), expires_in=_seconds(expires))
    ctx.close()
    click.echo(f"studio: new token for {name} (shown once; the old ones no longer work):", err=True)
    click.echo(token)


@click.command(short_help="Log in to a studio server with a token.")
@click.argument("url")
@click.option("--token-stdin", is_flag=True, help="Read the token from standard input instead of asking.")
def login(url: str, token_stdin: bool) -> None:
    """Check a token against the studio server at URL and keep it in ~/.studioml (mode 0600).
    The server then becomes the database of every studio command (unless a config or
    STUDIOML_DATABASE_URL names another)."""
    from studio.api.team import login as login_
    from studio.config import studio_home

    if token_stdin or not sys.stdin.isatty():
        token = sys.stdin.readline()
    else:
        token = click.prompt("token", hide_input=True)
    who = login_(studio_home(), url, token)
    click.echo(f"studio: logged in to {who['url']} as {who['user']} ({who['role']}); token kept in {who['path']}")


@click.command(short_help="Forget the token of a studio server.")
@click.argument("url")
def logout(url: str) -> None:
    """Remove the token kept for URL by `studio login`."""
    from studio.config import studio_home
    from studio.credentials import forget
    from studio.exceptions import NotFoundError

    if not forget(studio_home(), url):
        raise NotFoundError(f"no token kept for {url}")
    click.echo(f"studio: logged out of {url}")


@click.command(short_help="The audit log of a team server (admins).")
@config_option
@json_option
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--user", "actor", default=None, help="Only actions of this user.")
@click.option("--action", default=None, help="Only this action (delete, stop, rerun, change-owner, revoke, rotate).")
def audit(config: str | None, as_json: bool, limit: int, actor: str | None, action: str | None) -> None:
    """Destructive actions (delete, stop, rerun, owner change, token revoke): who, when, what."""
    from studio.api.team import audit_log

    ctx = context(config)
    rows = audit_log(ctx, limit=limit, actor=actor, action=action)
    ctx.close()
    if as_json:
        return print_json(rows)
    from rich.table import Table

    table = Table(title=f"audit log ({len(rows)} newest)")
    for col in ("when", "who", "action", "what", "detail"):
        table.add_column(col)
    for r in rows:
        table.add_row(fmt_time(r["time"]), r["actor"], r["action"], r["target"], r.get("detail") or "")
    console().print(table)
