"""`studio start remote worker`: a worker in the studio worker image (Docker)."""

from __future__ import annotations

import click

from studio.cli.common import config_option


@click.group(short_help="Start a worker in a container (upstream spelling).")
def start() -> None:
    """Upstream's `studio start remote worker --queue Q`."""


@start.group("remote")
def remote() -> None:
    """Remote workers."""


@remote.command("worker")
@config_option
@click.option("--queue", "-q", required=True, help="Queue the worker takes experiments from.")
@click.option("--image", default=None, help="Worker image (default: studioml/studio-worker:<version>[-cuda]).")
@click.option("--gpus", is_flag=True, help="Give the container every GPU (docker run --gpus all; CUDA image).")
@click.option("--timeout", default=None, metavar="DURATION", help="The worker exits after this long without work.")
@click.option("--token-from", default=None, metavar="SOURCE", help="Where the worker reads the server token.")
@click.option("--env", "extra_env", multiple=True, metavar="NAME", help="Also pass this variable (by name).")
@click.option("--dry-run", is_flag=True, help="Print the docker command instead of running it.")
def worker(config: str | None, queue: str, image: str | None, gpus: bool, timeout: str | None,
           token_from: str | None, extra_env: tuple[str, ...], dry_run: bool) -> None:
    """Run `studio worker --queue QUEUE` in the worker image, with the caches mounted and the
    credentials passed from this environment by name (never baked into the image)."""
    import os
    import shlex
    import shutil

    from studio.cloud.container import docker_argv, prepare_mounts
    from studio.config import load_settings
    from studio.exceptions import UsageError

    settings = load_settings(config)
    argv = docker_argv(settings, queue, image=image, gpus=gpus, timeout=timeout, token_from=token_from,
                       extra_env=extra_env)
    if dry_run:
        click.echo(shlex.join(argv))
        return
    docker = shutil.which("docker")
    if docker is None:
        raise UsageError("docker not found: install Docker (and NVIDIA's container toolkit for --gpus), "
                         "or run `studio worker --queue Q` directly")
    prepare_mounts(settings)
    os.execv(docker, [docker, *argv[1:]])
