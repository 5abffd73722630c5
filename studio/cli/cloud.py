"""`studio cloud list|down` (and the instances' `studio cloud agent`)."""

from __future__ import annotations

from typing import Any

import click

from studio.cli.common import config_option, json_option, print_json

BACKENDS = ("ec2", "gcloud")


def _backends(settings: Any, only: str | None) -> list[Any]:
    """The cloud backends to ask: the one named, or each whose SDK and settings are present."""
    import importlib.util

    from studio.cloud import provisioner

    if only:
        return [provisioner(only, settings)]
    found = []
    if importlib.util.find_spec("boto3") is not None:
        import boto3

        if boto3.session.Session().get_credentials() is not None:
            found.append(provisioner("ec2", settings))
    if (settings.cloud or {}).get("projectId"):
        found.append(provisioner("gcloud", settings))  # no SDK: an error that names the extra
    return found


@click.group(short_help="Cloud worker groups: list them, take them down.")
def cloud() -> None:
    """Worker groups that `studio run --cloud` made (EC2 Auto Scaling, GCE instance groups)."""


@cloud.command("list")
@config_option
@click.option("--cloud", "only", type=click.Choice(["ec2", "gcloud"]), default=None, help="Only this cloud.")
@json_option
def list_(config: str | None, only: str | None, as_json: bool) -> None:
    """Every worker group studio made, with its desired and running instances."""
    from studio.config import load_settings

    fleets = [f for b in _backends(load_settings(config), only) for f in b.list_fleets()]
    if as_json:
        return print_json([f.to_dict() for f in fleets])
    if not fleets:
        click.echo("studio: no cloud worker groups", err=True)
        return
    from rich.table import Table

    from studio.cli.common import console

    table = Table(title=f"{len(fleets)} worker group(s)")
    for col in ("cloud", "group", "queue", "desired", "running", "spot"):
        table.add_column(col)
    for f in fleets:
        table.add_row(f.backend, f.name, f.queue, str(f.desired), str(f.running), "yes" if f.detail.get("spot") else "")
    console().print(table)


@cloud.command("down")
@config_option
@click.option("--cloud", "only", type=click.Choice(["ec2", "gcloud"]), default=None, help="Only this cloud.")
@click.argument("queue", required=False)
def down(config: str | None, only: str | None, queue: str | None) -> None:
    """Delete the worker groups and templates of QUEUE (of every queue without it)."""
    from studio.config import load_settings

    removed = [name for b in _backends(load_settings(config), only) for name in b.tear_down(queue)]
    click.echo(f"studio: removed {', '.join(removed)}" if removed else "studio: nothing to remove", err=True)


@cloud.command("agent", hidden=True)
@config_option
@click.option("--backend", required=True, type=click.Choice(["ec2", "ec2spot", "gcloud", "gcspot"]))
@click.option("--group", required=True)
@click.option("--queue", required=True)
@click.option("--timeout", default="5m")
@click.option("--max-workers", type=int, default=1)
@click.option("--scale-interval", default="30s")
@click.option("--token-from", default=None)
def agent(config: str | None, backend: str, group: str, queue: str, timeout: str, max_workers: int,
          scale_interval: str, token_from: str | None) -> None:
    """Run on a cloud instance by its start-up script: the worker, scaling, preemption, leaving."""
    from studio.api.context import Context
    from studio.cloud.agent import AgentOptions, run_agent
    from studio.config import load_settings
    from studio.units import parse_duration

    settings = load_settings(config)
    if token_from:
        from studio.cloud.secrets import resolve_token

        settings = settings.replace(api_token=resolve_token(token_from))
    opts = AgentOptions(backend=backend, group=group, queue=queue, idle_timeout=parse_duration(timeout),
                        max_workers=max_workers, scale_interval=parse_duration(scale_interval), token_from=token_from)
    with Context(settings) as ctx:
        code = run_agent(ctx, opts, say=lambda text: click.echo(f"studio: {text}", err=True))
    raise SystemExit(code)
