"""`studio queue list|show|purge`."""

from __future__ import annotations

from typing import Any

import click

from studio.cli.common import config_option, console, context, json_option, print_json
from studio.cli.tables import Col, emit, format_options, resolve_format, show_time


@click.group(short_help="Inspect and clean up queues.")
def queue() -> None:
    """Inspect and clean up queues."""


@queue.command("list")
@config_option
@json_option
def list_(config: str | None, as_json: bool) -> None:
    """Queues with their experiments counted by status and the workers serving them."""
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
    table.add_column("workers")
    for q in queues:
        busy = sum(1 for w in q.workers if w["state"] == "busy")
        served = f"{len(q.workers)} ({busy} busy)" if q.workers else "none"
        if not q.workers and q.counts.get("queued"):
            served = f"none: start `studio worker --queue {q.name}`"
        table.add_row(q.name, *(str(q.counts.get(s, 0)) for s in shown), str(q.total), served)
    console().print(table)
    everyone = [w for q in queues for w in q.workers]
    if everyone:
        from studio.cli.common import fmt_time

        wt = Table(title=f"{len(everyone)} worker(s)")
        for col in ("worker", "queue", "host", "state", "experiment", "since", "last seen"):
            wt.add_column(col, no_wrap=col in ("worker", "experiment"))
        for w in everyone:
            wt.add_row(str(w["id"]), str(w["queue"]), str(w["host"]), str(w["state"]), str(w["experiment"] or ""),
                       fmt_time(float(w["started"])), fmt_time(float(w["last_seen"])))  # type: ignore[arg-type]
        console().print(wt)


@queue.command("show")
@config_option
@json_option
@format_options
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many experiments.")
@click.argument("name")
def show(name: str, config: str | None, as_json: bool, fmt: str | None, no_pager: bool, limit: int | None) -> None:
    """The experiments of queue NAME, oldest first (full keys; tab-separated when piped)."""
    from studio.queue import queue_experiments

    items = queue_experiments(context(config), name, limit=limit)
    rows: list[dict[str, Any]] = [
        {"key": e.key, "status": e.status.value, "project": e.project, "script": e.script, "added": e.time_added,
         "worker": e.worker, "attempts": e.attempts, "resources": e.resources, "reason": e.status_reason}
        for e in items
    ]
    cols = [Col("key", no_wrap=True), Col("status"), Col("project"), Col("script"), Col("added", show=show_time),
            Col("attempts", numeric=True), Col("worker"), Col("reason")]
    emit(rows, cols, resolve_format(fmt, as_json), title=f"queue {name}", pager=not no_pager)


@queue.command("purge")
@config_option
@json_option
@click.option("--yes", "-y", is_flag=True, help="Delete without asking (needed when not on a terminal).")
@click.argument("name")
def purge(name: str, config: str | None, as_json: bool, yes: bool) -> None:
    """Delete the queued experiments of queue NAME (running ones are left alone; asks first unless --yes)."""
    import sys

    from studio.entities import Status
    from studio.exceptions import UsageError
    from studio.queue import purge_queue, queue_experiments

    ctx = context(config)
    if not yes:
        queued = queue_experiments(ctx, name, statuses=(Status.QUEUED,))
        if not sys.stdin.isatty():
            raise UsageError(f"queue purge deletes the {len(queued)} queued experiment(s) of {name} for good: "
                             "pass --yes to confirm when not on a terminal")
        if not click.confirm(f"Delete the {len(queued)} queued experiment(s) of queue {name}? "
                             "This cannot be undone", default=False, err=True):
            click.echo("nothing deleted", err=True)
            sys.exit(1)
    result = purge_queue(ctx, name)
    if as_json:
        return print_json({"queue": name, "deleted": result.deleted, "running": result.running,
                           "others": result.others})
    click.echo(f"queue {name}: deleted {len(result.deleted)} queued experiment(s)")
    if result.others:
        click.echo(f"queue {name}: left {len(result.others)} queued experiment(s) of other users alone "
                   "(only their owner or an admin may delete them)", err=True)
    if result.running:
        click.echo(
            f"queue {name}: left {len(result.running)} running experiment(s) alone: "
            f"stop them with `studio runs stop {' '.join(result.running[:5])}{' ...' if len(result.running) > 5 else ''}`",
            err=True,
        )
