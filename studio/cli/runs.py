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
from studio.cli.tables import (
    TERMINAL_LIMIT,
    Col,
    emit,
    format_options,
    iso_time,
    resolve_format,
    show_duration,
    show_list,
    show_time,
)


@click.group(short_help="List, inspect, stop and delete experiments.")
def runs() -> None:
    """List, inspect, stop and delete experiments."""


@runs.command("list")
@config_option
@json_option
@format_options
@click.option("--filter", "filter_", default=None, metavar="EXPR",
              help="Only runs matching EXPR, as in the dashboard: 'lr < 0.01 and status = finished'.")
@click.option("--sort", "sort", default=None,
              help="Column, params.x or metrics.x (prefix - for descending); `best` = best metric first.")
@click.option("--status", multiple=True, help="Only these statuses.")
@click.option("--limit", type=click.IntRange(0, 1_000_000), default=None,
              help=f"At most this many rows; 0 = all (default: {TERMINAL_LIMIT} on a terminal, all when piped).")
@click.argument("what", nargs=-1)
def list_(what: tuple[str, ...], config: str | None, as_json: bool, fmt: str | None, no_pager: bool,
          filter_: str | None, sort: str | None, status: tuple[str, ...], limit: int | None) -> None:
    """List experiments: [users | projects | user U | project P | all] (default: yours).

    On a terminal: a table of the newest runs (a project's best first), paged when long.
    Piped: tab-separated lines with full keys, every param (params.NAME) and every metric's
    last value (metrics.NAME); `--format csv|json` for other tools."""
    from studio.api.experiments import list_experiments
    from studio.api.query_parser import parse_filter, parse_sort
    from studio.entities import ExperimentQuery, Status
    from studio.exceptions import UsageError

    fmt = resolve_format(fmt, as_json)
    ctx = context(config)
    words = list(what)
    if words == ["users"]:
        cols = [Col("name"), Col("count", numeric=True), Col("last_added", show=show_time)]
        return emit(ctx.meta.users(), cols, fmt, pager=not no_pager)
    if words == ["projects"]:
        cols = [Col("name"), *(Col(c, numeric=True) for c in ("count", "running", "finished")),
                Col("last_added", show=show_time)]
        return emit(ctx.meta.projects(), cols, fmt, pager=not no_pager)
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
    # A project's runs share a metric: best first, in that metric's direction (`best`).
    order = parse_sort(sort, default="best" if query.get("project") else "-time_added")
    if limit is None:
        limit = TERMINAL_LIMIT if fmt == "table" else 0
    q = parse_filter(filter_).apply(
        ExperimentQuery(status=statuses, order_by=order, limit=limit or None, **query))
    page = list_experiments(ctx, q)
    summaries = ctx.meta.metric_summaries([e.key for e in page.items]) if page.items else {}
    rows = [run_row(e, summaries.get(e.key, [])) for e in page.items]
    cols = run_columns(rows, wide=fmt != "table")
    flat = [flatten(r) for r in rows]
    note = None
    if len(rows) < page.total:
        note = f"showing {len(rows)} of {page.total}; --limit 0 shows all, --filter narrows"
    emit(flat, cols, fmt, title=f"{len(rows)} of {page.total} experiments", json_rows=rows,
         pager=not no_pager, note=note)


def metric_name(spec: str | None) -> str | None:
    """`loss:min` -> `loss`."""
    if not spec:
        return None
    name, _, goal = spec.rpartition(":")
    return name if name and goal in ("min", "max") else spec


def run_row(e: Any, summaries: list[Any]) -> dict[str, Any]:
    return {
        "key": e.key, "name": e.display_name, "tags": list(e.tags), "project": e.project, "owner": e.owner, "script": e.script, "status": e.status.value,
        "added": e.time_added, "duration": e.duration, "metric": e.metric, "metric_value": e.metric_value,
        "params": e.params, "metrics": {s.key: s.last for s in summaries},
    }


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in row.items() if k not in ("params", "metrics")}
    flat.update({f"params.{k}": v for k, v in row["params"].items()})
    flat.update({f"metrics.{k}": v for k, v in row["metrics"].items()})
    return flat


def run_columns(rows: list[dict[str, Any]], *, wide: bool) -> list[Col]:
    """Fixed columns, then params and metrics: all of them for scripts (`wide`), the ones most
    rows have (the runs' own metric first) on a terminal."""
    cols = [Col("key", no_wrap=True), Col("name", optional=True), Col("tags", show=show_list, raw=show_list, optional=True),
            Col("project", no_wrap=True), Col("script", optional=True),
            Col("status", no_wrap=True), Col("added", show=show_time, raw=iso_time, no_wrap=True, optional=True),
            Col("duration", show=show_duration, numeric=True, no_wrap=True),
            Col("metric", optional=True), Col("metric_value", header="value", numeric=True, no_wrap=True)]
    if wide:
        cols.insert(3, Col("owner"))
    params = _by_frequency(rows, "params")
    metrics = _by_frequency(rows, "metrics")
    own = [m for m in dict.fromkeys(metric_name(r["metric"]) for r in rows) if m in metrics]
    metrics = own + [m for m in metrics if m not in own]
    if not wide:
        params, metrics = params[:6], metrics[:4]
    cols += [Col(f"params.{p}", header=p, numeric=True, optional=True) for p in params]
    cols += [Col(f"metrics.{m}", header=m, numeric=True, optional=True) for m in metrics]
    return cols


def _by_frequency(rows: list[dict[str, Any]], field: str) -> list[str]:
    counts: dict[str, int] = {}
    for r in rows:
        for name in r[field]:
            counts[name] = counts.get(name, 0) + 1
    return sorted(counts, key=lambda n: (-counts[n], n))


def _git_line(git: dict[str, Any]) -> str:
    if git.get("pending"):  # a workbook run whose workspace was not stored (yet)
        return f"not recorded: {git['pending']}"
    return " ".join(str(git.get(k, "")) for k in ("remote_url", "branch", "commit")) if git else ""


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
        ("name", data["display_name"]), ("tags", ", ".join(data["tags"])),
        ("project", data["project"]), ("owner", data["owner"]), ("status", data["status"]),
        ("reason", data["status_reason"] or ""), ("returncode", fmt_value(data["returncode"])),
        ("command", command), ("params", fmt_value(data["params"] or "")),
        ("added", fmt_time(data["time_added"])), ("started", fmt_time(data["time_started"])),
        ("finished", fmt_time(data["time_finished"])), ("duration", format_duration(data["duration"])),
        ("python", data["python_version"] or ""), ("packages", str(len(data["pythonenv"]))),
        ("git", _git_line(data["git"])),
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
                     a["source"] or a["local_path"] or "", (a["tree"] or "not stored")[:16])
    out.print(arts)
    if data["metrics"]:
        mt = Table(title="metrics")
        for col in ("name", "last", "min", "max", "count"):
            mt.add_column(col)
        for name, s in sorted(data["metrics"].items()):
            mt.add_row(name, fmt_value(s["last"]), fmt_value(s["min"]), fmt_value(s["max"]), str(s["count"]))
        out.print(mt)
    if data["note"]:
        from rich.markdown import Markdown
        from rich.panel import Panel

        out.print(Panel(Markdown(data["note"]), title="note", title_align="left"))
    text = output_text(ctx, key, tail=tail)
    if text:
        out.print(f"[bold]output[/bold] (last {tail} lines)")
        sys.stdout.write(text)


@runs.command("rename")
@config_option
@click.argument("key")
@click.argument("name")
def rename(key: str, name: str, config: str | None) -> None:
    """Give experiment KEY a display name ('' restores the default: script and params)."""
    from studio.api.annotate import annotate

    exp = annotate(context(config), key, name=name)
    click.echo(f"{key}: {exp.display_name}")


@runs.command("tag")
@config_option
@click.option("--remove", is_flag=True, help="Remove these tags instead of adding them.")
@click.argument("key")
@click.argument("tags", nargs=-1, required=True)
def tag(key: str, tags: tuple[str, ...], config: str | None, remove: bool) -> None:
    """Add TAGS to experiment KEY (or remove them with --remove). Filter by them with
    `--filter 'tags = TAG'`."""
    from studio.api.annotate import annotate

    ctx = context(config)
    exp = annotate(ctx, key, remove_tags=tags) if remove else annotate(ctx, key, add_tags=tags)
    click.echo(f"{key}: tags {', '.join(exp.tags) or '(none)'}")


@runs.command("note")
@config_option
@click.argument("key")
@click.argument("text")
def note(key: str, text: str, config: str | None) -> None:
    """Set the markdown note of experiment KEY to TEXT ('-' reads it from stdin; '' clears it)."""
    from studio.api.annotate import annotate

    if text == "-":
        text = sys.stdin.read()
    annotate(context(config), key, note=text)
    click.echo(f"{key}: note {'set' if text.strip() else 'cleared'} ({len(text.strip())} characters)")


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
@click.option("--yes", "-y", is_flag=True, help="Delete without asking (needed when not on a terminal).")
@click.argument("keys", nargs=-1, required=True)
def kill(keys: tuple[str, ...], config: str | None, yes: bool) -> None:
    """Stop experiments if they run, then delete them (asks first unless --yes)."""
    from studio.api.experiments import kill as kill_
    from studio.exceptions import NotFoundError, UsageError

    ctx = context(config)
    found = {e.key: e for e in ctx.meta.get_experiments(list(keys))}
    missing = [k for k in keys if k not in found]
    if missing:
        raise NotFoundError(f"no experiment {', '.join(missing)}; nothing was deleted (see `studio runs list all`)")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"runs kill deletes {len(keys)} experiment(s) for good: pass --yes to confirm "
                             "when not on a terminal")
        listing = ", ".join(f"{k} ({found[k].status.value})" for k in keys[:10]) + (" ..." if len(keys) > 10 else "")
        if not click.confirm(f"Delete {len(keys)} experiment(s): {listing}? Running ones are stopped first; "
                             "this cannot be undone", default=False, err=True):
            click.echo("nothing deleted", err=True)
            sys.exit(1)
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
