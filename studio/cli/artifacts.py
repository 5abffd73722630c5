"""`studio artifacts get KEY TAG [DEST]` and `studio gc`."""

from __future__ import annotations

from pathlib import Path

import click

from studio.cli.common import config_option, context, json_option, print_json


@click.group(short_help="Fetch experiments' artifacts.")
def artifacts() -> None:
    """Fetch experiments' artifacts."""


@artifacts.command("get")
@config_option
@click.argument("key")
@click.argument("tag")
@click.argument("dest", required=False, type=click.Path())
def get(key: str, tag: str, dest: str | None, config: str | None) -> None:
    """Copy artifact TAG of experiment KEY to DEST (default: ./TAG)."""
    from studio.api.experiments import fetch_artifact
    from studio.progress import DISPLAY

    # A bar on the terminal (stderr), the path alone on stdout for scripts.
    with DISPLAY.bar(f"{key}/{tag}", None) as bar:
        path = fetch_artifact(context(config), key, tag, Path(dest) if dest else None,
                              progress=lambda done, total: bar.update(completed=done, total=total))
    click.echo(str(path))


@click.command(short_help="Delete stored objects no experiment references.")
@config_option
@json_option
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@click.option("--grace", default="1h", show_default=True, metavar="DURATION",
              help="Keep unreferenced objects younger than this (captures in progress).")
def gc(config: str | None, as_json: bool, dry_run: bool, grace: str) -> None:
    """Delete stored objects that no experiment references any more."""
    from studio.api.experiments import gc as gc_
    from studio.units import format_size, parse_duration

    report = gc_(context(config), dry_run=dry_run, grace_seconds=parse_duration(grace))
    if as_json:
        return print_json(report)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {report['removed_objects']} objects ({format_size(report['removed_bytes'])}); "
               f"kept {report['kept_objects']}")
