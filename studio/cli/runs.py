"""`studio runs list|show|stop|kill|logs` and `studio rerun`."""

from __future__ import annotations

import sys
from typing import Any

import click

from studio.cli.common import (
    config_option,
    console,
    context,
    fmt_time,
    fmt_value,
    json_option,
    print_json,
)


@click.group(short_help="List, inspect, stop and delete experiments.")
def runs() -> None:
    """List, inspect, stop and delete experiments."""


@runs.command("list")
@config_option
@json_option
@click.option("--sort", "sort", default=None, help="Column to sort by (prefix - for descending), e.g. -metric_value, params.lr.")
@click.option("--status", multiple=True, help="Only these statuses.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=None, help="At most this many rows.")
@click.argument("what", nargs=-1)
def list_(what: tuple[str, ...], config: str | None, as_json: bool, sort: str | None, status: tuple[str, ...], limit: int | None) -> None:
    """List experiments: [users | projects | user U | project P | all] (default: yours)."""
    from studio.api.experiments import list_experiments
    from studio.entities import ExperimentQuery, Status
    from studio.exceptions import UsageError

    ctx = context(config)
    words = list(what)
    if words == ["users"]:
        return _print_rows(ctx.meta.users(), ["name", "count", "last_added"], as_json)
    if words == ["projects"]:
        return _print_rows(ctx.meta.projects(), ["name", "count", "running", "finished", "last_added"], as_json)
    query: dict[str, Any] = {}
    if not words:
        query["owner"] = ctx.settings.owner
    elif words == ["all"]:
        pass
    elif len(words) == 2 and words[0] in ("user", "project"):
        query["owner" if words[0] == "user" else "project"] = words[1]
    elif len(words) == 1:
        query["owner"] = words[0]  # upstream: `studio runs list [user]`
    else:
        raise UsageError("usage: studio runs list [users | projects | user U | project P | all]")
    try:
        statuses = tuple(Status(s) for s in status)
    except ValueError:
        raise UsageError(f"unknown status in {status}; use one of: {', '.join(s.value for s in Status)}") from None
    order = sort or ("-metric_value" if query.get("project") else "-time_added")
    page = list_experiments(ctx, ExperimentQuery(status=statuses, order_by=order, limit=limit, **query))
    rows: list[dict[str, Any]] = [
        {
            "key": e.key,
            "project": e.project,
            "owner": e.owner,
            "script": e.script,
            "status": e.status.value,
            "added": e.time_added,
            "duration": e.duration,
            "metric": e.metric,
            "metric_value": e.metric_value,
            "params": e.params,
        }
        for e in page.items
    ]
    if as_json:
        return print_json(rows)
    from rich.table import Table

    from studio.units import format_duration

    table = Table(title=f"{len(rows)} of {page.total} experiments")
    table.add_column("key", no_wrap=True)  # keys are copied into other commands: never cut
    for col in ("project", "script", "status", "added", "duration", "metric", "value"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["key"], r["project"], r["script"], r["status"], fmt_time(r["added"]),
                      format_duration(r["duration"]), r["metric"] or "", fmt_value(r["metric_value"]))
    console().print(table)


def _print_rows(rows: list[dict[str, Any]], cols: list[str], as_json: bool) -> None:
    if as_json:
        return print_json(rows)
    from rich.table import Table

    table = Table()
    for col in cols:
        table.add_column(col)
    for r in rows:
        table.add_row(*(fmt_time(r.get(c)) if c.startswith("last_") else fmt_value(r.get(c)) for c in cols))
    console().print(table)


@runs.command("show")
@config_option
@json_option
@click.option("--tail", type=int, default=20, help="Lines of output to show (table mode).")
@click.argument("key")
def show(key: str, config: str | None, as_json: bool, tail: int) -> None:
    """Everything recorded about experiment KEY."""
    from studio.api.experiments import output_text
    from studio.api.experiments import show as show_

    ctx = context(config)
    data = show_(ctx, key)
    key = data["key"]  # a name resolves to the newest finished run of that name
    if as_json:
        return print_json(data)
    from rich.table import Table

    from studio.units import format_duration, format_size

    out = console()
    table = Table(show_header=False, title=f"experiment {key}")
    table.add_column(style="bold")
    table.add_column()
    command = " ".join([("-m " if data["module"] else "") + data["script"], *data["args"]])
    rows = [
        ("project", data["project"]), ("owner", data["owner"]), ("status", data["status"]),
        ("reason", data["status_reason"] or ""), ("returncode", fmt_value(data["returncode"])),
        ("command", command), ("params", fmt_value(data["params"] or "")),
        ("added", fmt_time(data["time_added"])), ("started", fmt_time(data["time_started"])),
        ("finished", fmt_time(data["time_finished"])), ("duration", format_duration(data["duration"])),
        ("python", data["python_version"] or ""), ("packages", str(len(data["pythonenv"]))),
        ("git", " ".join(str(data["git"].get(k, "")) for k in ("remote_url", "branch", "commit")) if data["git"] else ""),
        ("host", data["host"].get("hostname", "")), ("queue", data["queue"] or ""), ("attempts", str(data["attempts"])),
        ("metric", f"{data['metric']} = {fmt_value(data['metric_value'])}" if data["metric"] else ""),
    ]
    for name, value in rows:
        if value:
            table.add_row(name, str(value))
    out.print(table)
    arts = Table(title="artifacts")
    for col in ("tag", "mutable", "files", "size", "local path / source", "tree"):
        arts.add_column(col)
    for tag, a in sorted(data["artifacts"].items()):
        arts.add_row(tag, "yes" if a["mutable"] else "no", str(a["files"]), format_size(a["size"]),
                     a["source"] or a["local_path"] or "", (a["tree"] or "")[:16])
    out.print(arts)
    if data["metrics"]:
        mt = Table(title="metrics")
        for col in ("name", "last", "min", "max", "count"):
            mt.add_column(col)
        for name, s in sorted(data["metrics"].items()):
            mt.add_row(name, fmt_value(s["last"]), fmt_value(s["min"]), fmt_value(s["max"]), str(s["count"]))
        out.print(mt)
    text = output_text(ctx, key, tail=tail)
    if text:
        out.print(f"[bold]output[/bold] (last {tail} lines)")
        sys.stdout.write(text)


@runs.command("logs")
@config_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the experiment ends.")
@click.argument("key")
def logs(key: str, config: str | None, follow: bool) -> None:
    """Print the output of experiment KEY (live with --follow)."""
    import time

    ctx = context(config)
    exp = ctx.meta.get_experiment(key)
    last = -1
    while True:
        for chunk in ctx.meta.read_output(key, after_seq=last):
            sys.stdout.write(chunk.text)
            last = chunk.seq
        sys.stdout.flush()
        if not follow or ctx.meta.get_experiment(key).status.terminal:
            break
        time.sleep(0.5)
    del exp


@runs.command("stop")
@config_option
@click.argument("keys", nargs=-1, required=True)
def stop(keys: tuple[str, ...], config: str | None) -> None:
    """Stop running (or queued) experiments."""
    from studio.api.experiments import stop as stop_

    ctx = context(config)
    for key in keys:
        exp = stop_(ctx, key)
        click.echo(f"{key}: {'stop requested' if not exp.status.terminal else exp.status.value}")


@runs.command("kill")
@config_option
@click.argument("keys", nargs=-1, required=True)
def kill(keys: tuple[str, ...], config: str | None) -> None:
    """Stop experiments if they run, then delete them."""
    from studio.api.experiments import kill as kill_

    ctx = context(config)
    for key in keys:
        kill_(ctx, key)
        click.echo(f"{key}: deleted")


@click.command(short_help="Run a recorded experiment again as a new one.")
@config_option
@click.option("--experiment", "-e", "new_key", default=None, help="Key of the new experiment.")
@click.option("--queue", "-q", default=None, help="Submit the rerun to this queue instead of running here.")
@click.argument("key")
def rerun(key: str, config: str | None, new_key: str | None, queue: str | None) -> None:
    """Run experiment KEY again: same stored workspace, args, artifacts and environment."""
    from studio.api.rerun import rerun as rerun_

    ctx = context(config)
    exp, outcome = rerun_(ctx, key, new_key=new_key, queue=queue)
    if outcome is None:
        click.echo(exp.key)
        return
    sys.exit(outcome.exit_code)
