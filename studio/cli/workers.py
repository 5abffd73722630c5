"""`studio workers launch|list|stop`: workers started by a cluster scheduler (Slurm)."""

from __future__ import annotations

from typing import Any

import click

from studio.cli.common import config_option, json_option, print_json


def _backend(config: str | None) -> Any:
    from studio.cloud import provisioner
    from studio.config import load_settings

    return provisioner("slurm", load_settings(config))


@click.group(short_help="Start, list and stop workers through a cluster scheduler (Slurm).")
def workers() -> None:
    """Workers that a cluster scheduler starts: a Slurm array job of `studio worker`."""


@workers.command("launch")
@config_option
@click.option("--slurm", is_flag=True, required=True, help="Submit the workers as a Slurm array job (sbatch).")
@click.option("--queue", "-q", required=True, help="Queue the workers take experiments from.")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True, help="Array tasks (workers).")
@click.option("--max-running", type=click.IntRange(min=1), default=None,
              help="At most this many tasks at once (sbatch --array=...%N).")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--gres", default=None, help="Generic resources per task, e.g. gpu:1.")
@click.option("--time", "time_limit", default=None, help="Slurm time limit per task, e.g. 2:00:00.")
@click.option("--account", default=None, help="Slurm account to charge.")
@click.option("--single-run", is_flag=True, help="Each task runs one experiment and exits.")
@click.option("--timeout", default="5m", show_default=True, metavar="DURATION",
              help="A worker exits after this long without work.")
@click.option("--cpus", default=None, help="CPUs per task (sbatch --cpus-per-task; the worker offers as many).")
@click.option("--gpus", default=None, help="GPUs per task (--gres=gpu:N unless --gres is given).")
@click.option("--ram", default=None, help="Memory per task, e.g. 16g (sbatch --mem).")
@click.option("--token-from", default=None, metavar="SOURCE", help="Where workers read the server token.")
@json_option
def launch(config: str | None, slurm: bool, queue: str, count: int, max_running: int | None,
           partition: str | None, gres: str | None, time_limit: str | None, account: str | None,
           single_run: bool, timeout: str, token_from: str | None, as_json: bool, **needs: Any) -> None:
    """Submit COUNT workers on QUEUE as one Slurm array job; print its job id."""
    from studio.cloud.base import WorkerRequest
    from studio.runner.resources import parse_needs
    from studio.units import parse_duration

    request = WorkerRequest(
        queue=queue, count=count, resources=parse_needs({k: v for k, v in needs.items() if v is not None}),
        idle_timeout=parse_duration(timeout), single_run=single_run,
        options={"partition": partition, "gres": gres, "time": time_limit, "account": account,
                 "max_running": max_running, "token_from": token_from},
    )
    fleet = _backend(config).ensure_workers(request)
    if as_json:
        return print_json(fleet.to_dict())
    click.echo(fleet.name)
    click.echo(f"studio: Slurm job {fleet.name}: {count} worker(s) on queue {queue}; "
               f"`studio workers stop --queue {queue}` cancels them", err=True)


@workers.command("list")
@config_option
@click.option("--queue", "-q", default=None, help="Only this queue's workers.")
@json_option
def list_(config: str | None, queue: str | None, as_json: bool) -> None:
    """Slurm jobs of studio workers, with their pending and running tasks."""
    fleets = _backend(config).list_fleets(queue)
    if as_json:
        return print_json([f.to_dict() for f in fleets])
    if not fleets:
        click.echo("studio: no studio workers in Slurm's queue", err=True)
        return
    from rich.table import Table

    from studio.cli.common import console

    table = Table(title=f"{len(fleets)} Slurm job(s)")
    for col in ("job", "queue", "running", "pending", "nodes"):
        table.add_column(col)
    for f in fleets:
        table.add_row(f.name, f.queue, str(f.running), str(f.detail.get("pending", 0)),
                      ",".join(f.detail.get("nodes", [])))
    console().print(table)


@workers.command("stop")
@config_option
@click.option("--queue", "-q", default=None, help="Stop this queue's workers.")
@click.option("--all", "all_", is_flag=True, help="Stop every studio worker job.")
def stop(config: str | None, queue: str | None, all_: bool) -> None:
    """Cancel the Slurm jobs of studio workers (busy workers hand their experiment back)."""
    from studio.exceptions import UsageError

    if not queue and not all_:
        raise UsageError("say which workers to stop: --queue Q, or --all")
    jobs = _backend(config).tear_down(None if all_ else queue)
    click.echo(f"studio: cancelled Slurm job(s) {', '.join(jobs)}" if jobs else "studio: no studio workers to stop",
               err=True)
