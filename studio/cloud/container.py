"""`studio start remote worker --queue Q [--image IMG] [--gpus]`: the worker image, run by Docker.

The command line is built here and only then handed to `docker run`:

    docker run --rm --init --network host --name studio-worker-<queue>-<id>
      [--gpus all]
      -e STUDIOML_API_TOKEN -e AWS_ACCESS_KEY_ID ...     names only: Docker copies the values
                                                          from this environment, so no secret
                                                          is on the command line or in the image
      -v $STUDIOML_HOME/blobcache:/root/.studioml/blobcache     the seed's two caches
      -v $STUDIOML_HOME/experiments:/root/.studioml/experiments
      -v <config>:/root/.studioml/config.yaml:ro
      [-v <sqlite dir / local object store>: same path, and their URLs]   one-machine set-ups work
      IMAGE worker --queue Q [--timeout T] [--token-from SOURCE]

The image's entry point is `studio` (see the Dockerfile at the repository's root).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

from studio import __version__

DEFAULT_IMAGE = f"studioml/studio-worker:{__version__}"
CONTAINER_HOME = "/root/.studioml"
# Passed by name when set here; the values never appear on a command line.
PASSED_ENV = ("STUDIOML_API_TOKEN", "STUDIOML_DATABASE_URL", "STUDIOML_STORAGE_URL", "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
              "AWS_ENDPOINT_URL", "AWS_PROFILE", "PGPASSWORD", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")


def default_image(gpus: bool) -> str:
    return DEFAULT_IMAGE + ("-cuda" if gpus else "")


def _local_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):]).parent
    if url.startswith("file://"):
        return Path(url[len("file://"):])
    if "://" not in url:
        return Path(url)
    return None


def docker_argv(settings: Any, queue: str, *, image: str | None = None, gpus: bool = False,
                timeout: str | None = None, token_from: str | None = None, environ: dict[str, str] | None = None,
                extra_env: tuple[str, ...] = ()) -> list[str]:
    env = os.environ if environ is None else environ
    home = Path(settings.home)
    name = "studio-worker-" + re.sub(r"[^A-Za-z0-9_.-]", "-", queue)[:40] + "-" + uuid.uuid4().hex[:6]
    argv = ["docker", "run", "--rm", "--init", "--network", "host", "--name", name]
    if gpus:
        argv += ["--gpus", "all"]
    local_urls = {v for v, u in (("STUDIOML_DATABASE_URL", settings.database_url),
                                 ("STUDIOML_STORAGE_URL", settings.storage_url)) if _local_path(u) is not None}
    for var in (*PASSED_ENV, *extra_env):
        if env.get(var) and var not in local_urls:
            argv += ["-e", var]
    for sub in ("blobcache", "experiments"):
        argv += ["-v", f"{home / sub}:{CONTAINER_HOME}/{sub}"]
    if settings.config_path is not None:
        argv += ["-v", f"{settings.config_path}:{CONTAINER_HOME}/config.yaml:ro"]
    mounted: set[Path] = set()
    for var, url in (("STUDIOML_DATABASE_URL", settings.database_url), ("STUDIOML_STORAGE_URL", settings.storage_url)):
        local = _local_path(url)
        if local is None:
            continue  # a server: reached through the host network with the config's (or env's) settings
        if local not in mounted:
            argv += ["-v", f"{local}:{local}"]
            mounted.add(local)
        argv += ["-e", f"{var}={url}"]  # a path on this machine, not a secret; the same inside
    argv += ["-e", f"STUDIOML_HOME={CONTAINER_HOME}"]
    argv += [image or default_image(gpus), "worker", "--queue", queue]
    if timeout:
        argv += ["--timeout", timeout]
    if token_from:
        argv += ["--token-from", token_from]
    return argv


def prepare_mounts(settings: Any) -> None:
    """Create the cache directories first, so Docker does not create them owned by root."""
    for sub in ("blobcache", "experiments"):
        (Path(settings.home) / sub).mkdir(parents=True, exist_ok=True)
