"""`studio queue list|show|purge`."""

from __future__ import annotations

from typing import Any

import click

from studio.cli.common import config_option, console, context, fmt_time, json_option, print_json


@click.group(short_help="Inspect and clean up queues.")
def queue() -> None:
    """Inspect and clean up queues."""


@queue.command("list")
@config_option
@json_option
def list_(config: str | None, as_json: bool) -> None:
    """Queues with their experiments counted by status."""
    from studio.queue import list_queues

    queues = list_queues(context(config))
    if as_json:
        return print_json([q.to_dict() for q in queues])
    from rich.table import Table

    from studio.queue.admin import STATUS_ORDER

    shown = [s for s in STATUS_ORDER if any(q.counts.get(s) for q in queues)]
    table = Table(title=f"{len(queues)} queue(s)")
    table.add_column("queue")
    for s in shown:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    for q in queues:
        table.add_row(q.name, *(str(q.counts.get(s, 0)) for s in shown), str(q.total))
    console().print(table)


@queue.command("show")
@config_option
@json_option
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many experiments.")
@click.argument("name")
def show(name: str, config: str | None, as_json: bool, limit: int | None) -> None:
    """The experiments of queue NAME, oldest first."""
    from studio.queue import queue_experiments

    items = queue_experiments(context(config), name, limit=limit)
    rows: list[dict[str, Any]] = [
        {"key": e.key, "status": e.status.value, "project": e.project, "script": e.script, "added": e.time_added,
         "worker": e.worker, "attempts": e.attempts, "resources": e.resources, "reason": e.status_reason}
        for e in items
    ]
    if as_json:
        return print_json(rows)
    from rich.table import Table

    table = Table(title=f"queue {name}")
    for col in ("key", "status", "project", "script", "added", "attempts", "worker", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["key"], r["status"], r["project"], r["script"], fmt_time(r["added"]), str(r["attempts"]),
                      r["worker"] or "", r["reason"] or "")
    console().print(table)


@queue.command("purge")
@config_option
@json_option
@click.argument("name")
def purge(name: str, config: str | None, as_json: bool) -> None:
    """Delete the queued experiments of queue NAME (running ones are left alone)."""
    from studio.queue import purge_queue

    result = purge_queue(context(config), name)
    if as_json:
        return print_json({"queue": name, "deleted": result.deleted, "running": result.running})
    click.echo(f"queue {name}: deleted {len(result.deleted)} queued experiment(s)")
    if result.running:
        click.echo(
            f"queue {name}: left {len(result.running)} running experiment(s) alone: "
            f"stop them with `studio runs stop {' '.join(result.running[:5])}{' ...' if len(result.running) > 5 else ''}`",
            err=True,
        )
