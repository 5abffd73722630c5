"""`studio run [flags] script.py [script args]`.

Option parsing stops at the script: everything after it belongs to the script, so
`studio run train.py --experiment x` passes `--experiment x` to train.py. The command's body is
`studio.cli.running` (no click: `studio run SCRIPT ARGS...` with no studio flags starts there
directly, see `studio.cli.entry`).
"""

from __future__ import annotations

from typing import Any

import click

from studio.cli.common import config_option
from studio.cli.running import start_run


@click.command(
    context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False},
    short_help="Run a script as a recorded experiment.",
)
@config_option
@click.option("--project", default=None, help="Project name (default: 'default'; sweeps: the script's name).")
@click.option("--experiment", "-e", "key", default=None, help="Experiment key (generated when absent).")
@click.option("--capture-once", "-co", "capture_once", multiple=True, metavar="PATH:TAG",
              help="Immutable artifact captured once at start; PATH must exist.")
@click.option("--capture", "-c", "capture", multiple=True, metavar="PATH:TAG",
              help="Mutable artifact saved every saveWorkspaceFrequency and at the end.")
@click.option("--reuse", "-r", "reuse", multiple=True, metavar="EXPERIMENT/TAG[:NEWTAG]",
              help="Another experiment's artifact, read-only.")
@click.option("--max-duration", default=None, metavar="DURATION", help="Kill the experiment after this long, e.g. 48h2m10s.")
@click.option("--lifetime", default=None, metavar="DURATION", help="Discard if still queued after this long.")
@click.option("--queue", "-q", default=None, help="Submit to this queue instead of running here.")
@click.option("--num-workers", type=int, default=None, help="Start this many local workers to run what is submitted.")
@click.option("--python-pkg", "python_pkgs", multiple=True, metavar="PKG[==VER]", help="Extra package for the worker's environment.")
@click.option("--cpus", default=None, help="CPUs needed.")
@click.option("--gpus", default=None, help="GPUs needed.")
@click.option("--ram", default=None, help="Memory needed, e.g. 8g.")
@click.option("--hdd", default=None, help="Disk needed, e.g. 10G.")
@click.option("--hyperparam", "-hp", "--hp", "hyperparams", multiple=True, metavar="NAME=SPEC",
              help="Hyperparameter range (repeatable; --hp=NAME=SPEC is the seed's spelling).")
@click.option("--metric", default=None, metavar="NAME[:min|:max]", help="The scalar that ranks experiments.")
@click.option("--optimizer", "-opt", default=None, help="grid (default), random, tpe, cmaes, or a plugin path/name.")
@click.option("--pruner", default=None, type=click.Choice(["median", "halving", "none"], case_sensitive=False),
              help="Stop unpromising sweep trials early from their live metric (default: none).")
@click.option("--force", is_flag=True, help="Allow grids of more than 100,000 points.")
@click.option("--module", "-m", "module", is_flag=True, help="Run SCRIPT as a module (like python -m); also pkg::mod.")
@click.option("--guest", is_flag=True, hidden=True, help="Accepted for compatibility; local runs need no login.")
@click.option("--cloud", default=None, metavar="ec2|ec2spot|gcloud|gcspot",
              help="Run on cloud workers started for the queue (see docs/cloud.md).")
@click.option("--bid", default=None, metavar="USD|PERCENT%", help="ec2spot: max price per instance-hour.")
@click.option("--verbose", default=None, metavar="LEVEL", help="Log level: debug, info, warning, error.")
@click.option("--quiet", is_flag=True, help="No notices or closing line (they are shown only on a terminal anyway).")
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(script: str, args: tuple[str, ...], config: str | None, verbose: str | None, quiet: bool, **flags: Any) -> None:
    """Run SCRIPT (a .py file, or a module with -m / pkg::mod) and record everything about it."""
    start_run(script, args, config, verbose, quiet, flags)
