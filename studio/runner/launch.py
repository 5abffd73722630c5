"""What a supervisor needs to start a script, here or on a worker: its environment, the
artifact mapping file it reads, its command line, and the supervisor's own id.

Below `api/` (which re-exports these for its callers), so `runner/` takes them without
importing upward (architecture.md: import direction is downward only).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

from studio.capture.secrets import MASK as REDACTED
from studio.context import Context
from studio.entities import Experiment


def worker_id() -> str:
    # platform.node() is socket.gethostname() without importing socket (uname's node name).
    return f"{platform.node()}:{os.getpid()}:{os.urandom(3).hex()}"


def child_env(ctx: Context, exp: Experiment, mapping_file: Path, paths: dict[str, Path]) -> dict[str, str]:
    env = dict(os.environ)
    # The submitter's recorded `env:` values (secrets were redacted when recorded), under the
    # running machine's own `env:` section, which holds its secrets.
    env.update({k: v for k, v in exp.env.items() if REDACTED not in v})
    env.update(ctx.settings.env)
    env.update(
        STUDIOML_EXPERIMENT=exp.key,
        STUDIOML_HOME=str(ctx.settings.home),
        STUDIOML_ARTIFACT_MAPPING=str(mapping_file),
        STUDIOML_METRICS_DIR=str(paths["metrics"]),
        STUDIOML_PARAMS=json.dumps(exp.params),
        PYTHONUNBUFFERED="1",
    )
    if ctx.settings.config_path is not None:
        env.setdefault("STUDIOML_CONFIG", str(ctx.settings.config_path))
    return env


def write_mapping(ctx: Context, key: str, paths: dict[str, Path], directory: Path | None = None) -> Path:
    """Write `STUDIOML_ARTIFACT_MAPPING` (tag -> local path) into `directory` (default: the
    experiment's own directory under STUDIOML_HOME; workers pass their run directory)."""
    mapping_file = (directory or ctx.settings.experiment_dir(key)) / "artifacts.json"
    mapping_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = mapping_file.with_name(f".artifacts-{os.urandom(4).hex()}.tmp")
    tmp.write_text(json.dumps({tag: str(p) for tag, p in sorted(paths.items())}, indent=1))
    os.replace(tmp, mapping_file)
    return mapping_file


def command_for(exp: Experiment, python: str | None = None) -> list[str]:
    python = python or sys.executable
    if exp.module:
        return [python, "-m", exp.script, *exp.args]
    return [python, exp.script, *exp.args]
