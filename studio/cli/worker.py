"""`studio worker --queue Q` and its upstream spelling `studio remote worker --queue Q`."""

from __future__ import annotations

from typing import Any

import click

from studio.cli.boundary import setup_logging
from studio.cli.common import config_option, context


@click.command(short_help="Run experiments from a queue on this machine.")
@config_option
@click.option("--queue", "-q", required=True, help="Queue to take experiments from (it may not exist yet).")
@click.option("--single-run", is_flag=True, help="Exit after one experiment.")
@click.option("--timeout", default=None, metavar="DURATION",
              help="Exit after this long without work, e.g. 30s, 10m (default: never).")
@click.option("--cpus", default=None, help="CPUs to offer (default: detected).")
@click.option("--gpus", default=None, help="GPUs to offer (default: detected; CUDA_VISIBLE_DEVICES is honoured).")
@click.option("--ram", default=None, help="Memory to offer, e.g. 16g (default: detected).")
@click.option("--hdd", default=None, help="Disk to offer, e.g. 100G (default: free space of STUDIOML_HOME).")
@click.option("--echo", is_flag=True, help="Also print the experiments' output here.")
@click.option("--quiet", is_flag=True, hidden=True, help="No progress bars or lines (local pools use this).")
@click.option("--keep-workdirs", is_flag=True, hidden=True, help="Keep each run's directory (debugging).")
@click.option("--token-from", default=None, envvar="STUDIOML_TOKEN_FROM", metavar="SOURCE",
              help="Read the server token from env:NAME, file:PATH, ssm:PARAM or secretsmanager:ID.")
@click.option("--preemption", type=click.Choice(["ec2", "gce"]), default=None,
              help="On a spot/preemptible instance: hand the running experiment back on the interruption notice.")
@click.option("--verbose", default=None, metavar="LEVEL", help="Log level: debug, info, warning, error.")
def worker(config: str | None, queue: str, single_run: bool, timeout: str | None, verbose: str | None,
           echo: bool, quiet: bool, keep_workdirs: bool, token_from: str | None, preemption: str | None, **resources: Any) -> None:
    """Take experiments from QUEUE and run them, until idle for --timeout or sent SIGTERM.

    SIGTERM (or Ctrl-C) while an experiment runs hands it back to the queue (or stops it)
    and exits; a worker killed outright loses its lease and another worker re-runs the
    experiment.
    """
    setup_logging(verbose)
    from studio.runner.resources import parse_needs
    from studio.runner.worker import WorkerOptions, run_worker
    from studio.units import parse_duration

    idle = parse_duration(timeout) if timeout is not None else None
    overrides = parse_needs({k: v for k, v in resources.items() if v is not None})
    ctx = context(config)
    if token_from:  # kept in the settings only: the experiments' environment never sees it
        from studio.api.context import Context
        from studio.cloud.secrets import resolve_token

        ctx = Context(ctx.settings.replace(api_token=resolve_token(token_from)))
    opts = WorkerOptions(queue=queue, single_run=single_run, idle_timeout=idle, resources=overrides,
                         echo=echo, keep_workdirs=keep_workdirs, transfers=not quiet)
    if quiet:
        from studio.progress import DISPLAY

        DISPLAY.silence()
    def say(text: str) -> None:
        if not quiet:
            click.echo(f"studio: {text}", err=True)

    if preemption:  # the notice becomes a SIGTERM: stop the script, store artifacts, hand back, exit
        import os
        import signal

        from studio.cloud.preemption import watch

        watch(preemption, lambda: os.kill(os.getpid(), signal.SIGTERM))
    code = run_worker(ctx, opts, on_event=say)
    ctx.close()
    raise SystemExit(code)


@click.group(short_help="Workers in the current environment (upstream spelling).")
def remote() -> None:
    """Upstream's `studio remote worker --queue Q`: the same as `studio worker`."""


remote.add_command(worker, "worker")
