"""The start-up script of a cloud worker (EC2 user data, GCE startup-script).

It installs the studio version the submitter runs (unless the image already has it), writes
a config that names the shared database and object store but holds no secret, and runs
`studio cloud agent`, which runs `studio worker --queue Q --timeout T --token-from SOURCE`,
keeps the group sized to the queue and, when the worker exits idle, takes the instance out
of its group (deleting the group and its template when it was the last one and the queue is
drained). The worker's token is read at start from the cloud's secret store through the
instance's role; nothing in the script, the template or the tags is a credential.

Paths are variables with defaults (`STUDIO_PREFIX`, `STUDIOML_HOME`), so a test harness can
run the very same script in a sandbox.
"""

from __future__ import annotations

import shlex
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from studio import __version__
from studio.exceptions import UsageError


def shared_urls(settings: Any) -> tuple[str, str]:
    """The database and storage URLs a cloud worker uses: the submitter's, minus any password."""
    db, storage = settings.database_url, settings.storage_url
    scheme = urlsplit(db).scheme.split("+")[0]
    if scheme not in ("http", "https", "postgresql", "postgres"):
        raise UsageError(f"cloud workers cannot reach the database {db.split('://')[0]}://...: "
                         "use a studio server URL (http(s)://) or PostgreSQL in the config's `database.url`")
    if "://" not in storage or storage.startswith("file://"):
        raise UsageError("cloud workers cannot reach a local object store: set `storage.url` to s3://... or gs://...")
    parts = urlsplit(db)
    if parts.password is not None:  # workers never get it from us: pgpass, IAM auth or the server
        netloc = parts.hostname or ""
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        if parts.port:
            netloc += f":{parts.port}"
        db = urlunsplit(parts._replace(netloc=netloc))
    return db, storage


def startup_script(*, queue: str, backend: str, group: str, settings: Any, install: str,
                   idle_timeout: float, token_from: str | None, max_workers: int,
                   scale_interval: float = 30.0) -> str:
    import yaml

    db, storage = shared_urls(settings)
    config = yaml.safe_dump({"database": {"url": db}, "storage": {"url": storage}}, sort_keys=False)
    agent = ["studio", "cloud", "agent", "--backend", backend, "--group", group, "--queue", queue,
             "--timeout", f"{idle_timeout:g}s", "--max-workers", str(max_workers),
             "--scale-interval", f"{scale_interval:g}s"]
    if token_from:
        agent += ["--token-from", token_from]
    return f"""#!/bin/bash
# studio {__version__} worker for queue {queue} ({backend} group {group}). Holds no secret:
# the worker reads its token from the cloud's secret store through the instance's role.
set -eu
STUDIO_PREFIX="${{STUDIO_PREFIX:-/opt/studio}}"
export STUDIOML_HOME="${{STUDIOML_HOME:-/var/lib/studio}}"
export HOME="${{HOME:-/root}}"
mkdir -p "$STUDIOML_HOME"
cat > "$STUDIOML_HOME/config.yaml" <<'STUDIO_CONFIG'
{config}STUDIO_CONFIG
if [ ! -x "$STUDIO_PREFIX/bin/studio" ]; then
  python3 -m venv "$STUDIO_PREFIX"
  "$STUDIO_PREFIX/bin/pip" install --quiet {shlex.quote(install)}
fi
export PATH="$STUDIO_PREFIX/bin:$PATH"
{shlex.join(agent).replace("studio ", '"$STUDIO_PREFIX/bin/studio" ', 1)} || status=$?
# The agent normally removes this instance from its group. If it could not (it crashed, the
# API failed), power off: the instance shuts down and terminates rather than idle and bill.
if [ "${{status:-0}}" != 0 ] && [ -z "${{STUDIO_NO_SHUTDOWN:-}}" ]; then shutdown -h now; fi
exit "${{status:-0}}"
"""
