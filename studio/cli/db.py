"""`studio db upgrade|status`: database schema migrations."""

from __future__ import annotations

import click

from studio.cli.common import config_option, context


@click.group(short_help="Database schema: status and upgrade.")
def db() -> None:
    """Database schema: status and upgrade."""


@db.command("upgrade")
@config_option
def upgrade(config: str | None) -> None:
    """Upgrade the configured database to this studio's schema."""
    from studio.meta import upgrade as upgrade_

    url = context(config).settings.database_url
    upgrade_(url)
    click.echo("database schema is up to date")


@db.command("status")
@config_option
def status(config: str | None) -> None:
    """Print the database's schema revision."""
    from studio.meta import current_revision

    click.echo(current_revision(context(config).settings.database_url) or "empty")
