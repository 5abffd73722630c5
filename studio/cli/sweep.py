"""`studio sweep resume PROJECT`, `studio sweep show PROJECT`, `studio sweep list`.

Sweeps start with `studio run -hp NAME=SPEC ... [--optimizer NAME]`.
"""

from __future__ import annotations

import sys

import click

from studio.cli.common import config_option, context, json_option, print_json


@click.group(short_help="Resume and inspect hyperparameter sweeps.")
def sweep() -> None:
    """Resume and inspect hyperparameter sweeps (start one with `studio run -hp ...`)."""


@sweep.command("resume")
@config_option
@click.option("--num-workers", type=int, default=None, help="Local workers (default: as when it started).")
@click.argument("project")
def resume(project: str, config: str | None, num_workers: int | None) -> None:
    """Continue the interrupted sweep PROJECT from its last checkpoint."""
    from studio.api.sweep import resume_sweep

    sys.exit(resume_sweep(context(config), project, num_workers=num_workers))


@sweep.command("show")
@config_option
@json_option
@click.option("--limit", type=int, default=50, help="Rows of the ranking to show (table mode).")
@click.argument("project")
def show(project: str, config: str | None, as_json: bool, limit: int) -> None:
    """The sweep PROJECT: its settings and its trials ranked by the metric."""
    from studio.api.sweep import sweep_status

    data = sweep_status(context(config), project)
    if as_json:
        return print_json(data)
    from studio.api.sweep_report import print_ranking
    from studio.search.fitness import Objective
    from studio.search.state import load_state

    ctx = context(config)
    state = load_state(ctx.meta, ctx.settings.home, project)
    done = "finished" + (f" ({data['stop_reason']})" if data["stop_reason"] else "") if data["finished"] \
        else f"in progress or interrupted: `studio sweep resume {project}` continues it"
    click.echo(f"sweep {project}: {data['script']}, optimizer {data['optimizer']}, metric {data['metric']} "
               f"({data['direction']}), pruner {data['pruner']}, queue {data['queue']}")
    click.echo(f"generation {data['generation']}, {len(data['trials'])} trial(s); {done}")
    print_ranking(state, Objective.parse(state.metric), data["trials"], limit=limit)


@sweep.command("list")
@config_option
@json_option
def list_(config: str | None, as_json: bool) -> None:
    """Sweeps recorded in the metadata store."""
    from studio.search.state import list_sweeps

    ctx = context(config)
    names = list_sweeps(ctx.meta, ctx.settings.home)
    if as_json:
        return print_json(names)
    for name in names:
        click.echo(name)
