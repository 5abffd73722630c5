"""`studio run`: validate, capture, record, then run here (or leave queued for a worker).

Everything that can be wrong with the user's input is checked before anything is written, so
bad input leaves no experiment row behind. Blobs written during capture are content-addressed
and complete (temp-file-then-rename), so an interrupted capture leaves nothing half-made.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.api.context import Context
from studio.api.specs import CaptureSpec, ReuseSpec, parse_capture, parse_reuse
from studio.entities import DEFAULT_ARTIFACTS, ArtifactSpec, Experiment, Status
from studio.exceptions import ConflictError, NotFoundError, UsageError
from studio.keys import check_key, new_key
from studio.runner.resources import RESOURCE_NAMES, parse_needs
from studio.units import parse_duration

SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "ACCESS_KEY", "PRIVATE", "API_KEY",
                "APIKEY", "AUTH")
REDACTED = "***"


@dataclass
class RunOptions:
    script: str
    args: list[str] = field(default_factory=list)
    module: bool = False
    project: str | None = None
    key: str | None = None
    capture_once: list[str] = field(default_factory=list)
    capture: list[str] = field(default_factory=list)
    reuse: list[str] = field(default_factory=list)
    max_duration: str | None = None
    lifetime: str | None = None
    queue: str | None = None
    python_pkgs: list[str] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    sweep: str | None = None  # set by sweeps: workers substitute `params` into the entry script
    cwd: Path = field(default_factory=Path.cwd)
    echo: bool = True


@dataclass(frozen=True)
class Target:
    """The resolved entry point: a script file in a workspace, or a module (`pkg::mod`)."""

    workspace: Path
    script: str  # relative to the workspace, or the dotted module name
    module: bool


def resolve_target(opts: RunOptions) -> Target:
    if opts.module or "::" in opts.script:
        name = opts.script.replace("::", ".")
        if not name or any(not part.isidentifier() for part in name.split(".")):
            raise UsageError(f"module {opts.script!r} is not a valid module name like pkg::mod or pkg.mod")
        return Target(opts.cwd.resolve(), name, True)
    path = (opts.cwd / os.path.expanduser(opts.script)).resolve()
    if not path.is_file():
        raise UsageError(f"script {opts.script} not found in {opts.cwd}: check the path")
    return Target(path.parent, path.name, False)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """What of the config's `env:` section may be recorded: names always, values unless secret."""
    return {k: (REDACTED if any(w in k.upper() for w in SECRET_WORDS) else v) for k, v in env.items()}


def _check_key_free(ctx: Context, key: str) -> None:
    try:
        ctx.meta.get_experiment(key)
    except NotFoundError:
        return
    raise ConflictError(
        f"experiment {key} already exists: choose another --experiment or delete it with `studio runs kill {key}`"
    )


def _reused_artifact(ctx: Context, spec: ReuseSpec) -> ArtifactSpec:
    try:
        source = ctx.meta.get_experiment(spec.experiment)
    except NotFoundError:
        raise NotFoundError(
            f"--reuse: no experiment {spec.experiment!r}; list experiments with `studio runs list all`"
        ) from None
    art = source.artifacts.get(spec.tag)
    if art is None or art.tree is None:
        tags = ", ".join(sorted(t for t, a in source.artifacts.items() if a.tree)) or "none"
        raise NotFoundError(f"--reuse: experiment {spec.experiment} has no stored artifact {spec.tag!r} (it has: {tags})")
    return ArtifactSpec(tag=spec.newtag, mutable=False, source=f"{spec.experiment}/{spec.tag}", tree=art.tree,
                        size=art.size, files=art.files, updated=art.updated)


def experiment_paths(ctx: Context, key: str) -> dict[str, Path]:
    """Local homes of the default artifacts that live in the experiment's own directory."""
    root = ctx.settings.experiment_dir(key)
    return {
        "output": root / "output.log",
        "modeldir": root / "modeldir",
        "tb": root / "tb",
        "metrics": root / "metrics",
    }


def prepare(ctx: Context, opts: RunOptions) -> Experiment:
    """Validate every input, capture workspace and environment, record the experiment `queued`."""
    from studio.capture import collect_environment_in_background, workspace_ignore

    target = resolve_target(opts)
    # Collected read-only (nothing is written) while the checks below open the metadata store.
    environment_future = collect_environment_in_background(
        target.workspace / target.script if not target.module else target.workspace
    )
    key = check_key(opts.key) if opts.key else new_key()
    captures = [parse_capture(s, "--capture") for s in opts.capture]
    once = [parse_capture(s, "--capture-once") for s in opts.capture_once]
    reuses = [parse_reuse(s) for s in opts.reuse]
    _check_unique_tags(captures, once, reuses)
    for spec in once:
        if not spec.path.exists():
            raise UsageError(f"--capture-once {spec.path}:{spec.tag}: {spec.path} does not exist; check the path")
    max_duration = parse_duration(opts.max_duration) if opts.max_duration else None
    lifetime = parse_duration(opts.lifetime) if opts.lifetime else None
    python_pkgs: list[str] = []
    if opts.python_pkgs:  # `packaging` and the venv machinery only when asked for
        from studio.runner.venv import check_requirements

        python_pkgs = check_requirements(opts.python_pkgs)
    # Upstream configs may list needs studio does not schedule on (e.g. gpuMem): not an error.
    configured = {k: v for k, v in ctx.settings.resources_needed.items() if k in RESOURCE_NAMES}
    resources = parse_needs({**configured, **opts.resources})
    _check_key_free(ctx, key)
    reused = {spec.newtag: _reused_artifact(ctx, spec) for spec in reuses}

    objects = ctx.objects_for(key)
    artifacts: dict[str, ArtifactSpec] = {}
    ws = objects.put_tree(target.workspace, ignore=workspace_ignore(target.workspace))
    artifacts["workspace"] = ArtifactSpec(
        tag="workspace", mutable=True, local_path=str(target.workspace), tree=ws.tree, size=ws.size,
        files=ws.files, updated=time.time(),
    )
    for tag, path in experiment_paths(ctx, key).items():
        artifacts[tag] = ArtifactSpec(tag=tag, mutable=True, local_path=str(path))
    for spec in once:
        res = objects.put_tree(spec.path)
        artifacts[spec.tag] = ArtifactSpec(tag=spec.tag, mutable=False, local_path=str(spec.path), tree=res.tree,
                                           size=res.size, files=res.files, updated=time.time())
    for spec in captures:
        artifacts[spec.tag] = ArtifactSpec(tag=spec.tag, mutable=True, local_path=str(spec.path))
    artifacts.update(reused)
    environment = environment_future.result()

    exp = Experiment(
        key=key,
        project=opts.project or "default",
        owner=ctx.settings.owner,
        script=target.script,
        args=tuple(opts.args),
        module=target.module,
        status=Status.QUEUED,
        queue=opts.queue,
        params=dict(opts.params),
        sweep=opts.sweep,
        env=redact_env(ctx.settings.env),
        python_version=environment.get("python_version"),
        pythonenv=tuple(environment.get("pythonenv") or ()),
        python_pkgs=tuple(python_pkgs),
        git=environment.get("git") or {},
        host=environment.get("host") or {},
        resources=resources,
        metric=opts.metric,
        max_duration=max_duration,
        lifetime=lifetime,
        time_added=time.time(),
        artifacts=artifacts,
    )
    exp = ctx.meta.create_experiment(exp)
    for spec in captures:  # the seed's example captures ~/.weights before the script creates it
        spec.path.mkdir(parents=True, exist_ok=True)
    return exp


def _check_unique_tags(captures: list[CaptureSpec], once: list[CaptureSpec], reuses: list[ReuseSpec]) -> None:
    seen: set[str] = set()
    for tag in [c.tag for c in captures] + [c.tag for c in once] + [r.newtag for r in reuses]:
        if tag in seen:
            raise UsageError(f"artifact tag {tag!r} is given twice; give each --capture/--capture-once/--reuse its own tag")
        if tag in ("output", "metrics"):
            raise UsageError(f"artifact tag {tag!r} is reserved for studio's own records; choose another tag")
        seen.add(tag)


def child_env(ctx: Context, exp: Experiment, mapping_file: Path, paths: dict[str, Path]) -> dict[str, str]:
    env = dict(os.environ)
    # The submitter's recorded `env:` values (secrets were redacted when recorded), under the
    # running machine's own `env:` section, which holds its secrets.
    env.update({k: v for k, v in exp.env.items() if v != REDACTED})
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
    tmp = mapping_file.with_name(f".artifacts-{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps({tag: str(p) for tag, p in sorted(paths.items())}, indent=1))
    os.replace(tmp, mapping_file)
    return mapping_file


def command_for(exp: Experiment, python: str | None = None) -> list[str]:
    python = python or sys.executable
    if exp.module:
        return [python, "-m", exp.script, *exp.args]
    return [python, exp.script, *exp.args]


__all__ = ["RunOptions", "prepare", "resolve_target", "DEFAULT_ARTIFACTS", "Status"]
