"""`studio run`: validate, capture, record, then run here (or leave queued for a worker).

Everything that can be wrong with the user's input is checked before anything is written, so
bad input leaves no experiment row behind. Blobs written during capture are content-addressed
and complete (temp-file-then-rename), so an interrupted capture leaves nothing half-made.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.api import names
from studio.api.context import Context
from studio.capture.secrets import MASK
from studio.capture.secrets import redact_env as _redact_env
from studio.entities import DEFAULT_ARTIFACTS, ArtifactSpec, Experiment, Status
from studio.exceptions import ConflictError, NotFoundError, UsageError
from studio.keys import check_key, check_name, new_key
from studio.runner.launch import child_env, command_for, worker_id, write_mapping  # noqa: F401 - re-exported
from studio.runner.resources import RESOURCE_NAMES, parse_needs
from studio.units import parse_duration

if TYPE_CHECKING:
    from studio.api.specs import CaptureSpec, ReuseSpec

REDACTED = MASK
# Workspaces whose secret files this process already said it left out: said once, not per trial.
_SECRETS_NOTED: set[str] = set()


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
    #: Recorded with the experiment, beside the captured ones (the workbook's own folder).
    extra_artifacts: dict[str, ArtifactSpec] = field(default_factory=dict)
    #: Repeated experiments in one process: host and packages once, git while unchanged
    #: (`studio.capture.start_environment`).
    reuse_environment: bool = False
    #: `key` was just made by `studio.keys.new_key` (never taken: not looked up first).
    key_is_new: bool = False
    #: The caller captures the workspace and git later (`capture_workspace`, in the background:
    #: the workbook): the record gets a `workspace` artifact with no tree and `git` = PENDING_GIT.
    defer_workspace: bool = False
    #: Told about a large workspace before it is captured (the CLI, on a terminal); None: silent.
    notice: Callable[[str], None] | None = None
    #: For a large workspace: `progress(total_bytes)` returns `(advance(n), close())` (a bar).
    progress: Callable[[int], tuple[Callable[[int], None], Callable[[], None]]] | None = None


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


def check_names(**names: str | None) -> None:
    """Refuse a name too long for the database, naming the flag (or config key) it came from."""
    flags = {"project": "--project", "queue": "--queue", "metric": "--metric", "sweep": "the sweep name",
             "owner": "the owner (config `owner` / STUDIOML_OWNER)"}
    for field_name, value in names.items():
        check_name(value, flags.get(field_name, field_name))


def redact_env(env: dict[str, str]) -> dict[str, str]:
    """What of the config's `env:` section may be recorded (see `studio.capture.secrets`)."""
    return _redact_env(env)


def _note_secrets_left_out(workspace: Path, paths: list[str], echo: bool) -> None:
    if not paths or not echo or str(workspace) in _SECRETS_NOTED:
        return
    _SECRETS_NOTED.add(str(workspace))
    names = sorted(set(paths))
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    print(f"studio: left secret-looking files out of the recorded workspace and git diff: {shown} "
          f"(to record them, add `!{names[0].rpartition('/')[2]}` to {workspace / '.studioml_ignore'})",
          file=sys.stderr, flush=True)


def _reused_artifact(ctx: Context, spec: ReuseSpec) -> ArtifactSpec:
    """`spec.experiment` is a reference (`studio.api.names`): NAME is the newest finished run."""
    try:
        source = names.resolve(ctx.meta, spec.experiment)
    except NotFoundError:
        raise NotFoundError(
            f"--reuse: no experiment {spec.experiment!r}; list experiments with `studio runs list all`"
        ) from None
    art = source.artifacts.get(spec.tag)
    if art is None or art.tree is None:
        tags = ", ".join(sorted(t for t, a in source.artifacts.items() if a.tree)) or "none"
        raise NotFoundError(f"--reuse: experiment {source.key} has no stored artifact {spec.tag!r} (it has: {tags})")
    return ArtifactSpec(tag=spec.newtag, mutable=False, source=f"{source.key}/{spec.tag}", tree=art.tree,
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


def environment_cache(ctx: Context) -> Path:
    """Where the environment collectors keep what they may reuse (`studio.capture.host`)."""
    return ctx.settings.home / "cache"


def running_fields(ctx: Context, worker: str) -> dict[str, Any]:
    """The fields of an experiment that `worker` starts supervising now (one attempt, a lease)."""
    now = time.time()
    return dict(status=Status.RUNNING, worker=worker, time_started=now, heartbeat=now,
                lease_expires=now + ctx.settings.lease_seconds, attempts=1)


def prepare(ctx: Context, opts: RunOptions, worker: str | None = None,
            recording: list[str] | None = None) -> Experiment:
    """Validate every input, capture workspace and environment, record the experiment.

    Recording is the last step and one transaction: an interrupted preparation leaves no row.
    With `worker` (a run supervised here) the row is born `running` under that worker's lease,
    so if the supervisor dies before the script starts the lease lapses and the run becomes
    `lost`; without, it is born `queued` and complete, ready for a worker to claim.
    `recording`: the key is appended just before the row is created, so a caller that a
    signal interrupts can find the row it may have left. A named run whose key another run of
    the same name takes meanwhile becomes the next free `NAME.N`.
    """
    exp = build(ctx, opts, local=worker is not None)
    if worker is not None:
        exp = exp.replace(**running_fields(ctx, worker))
    while True:
        if recording is not None:
            recording.append(exp.key)
        try:
            return ctx.meta.create_experiment(exp)
        except ConflictError:  # another run of the same name took the key meanwhile
            if not opts.key:
                raise
            key = names.free_key(ctx.meta, exp.key)
            artifacts = dict(exp.artifacts)
            artifacts.update({tag: dataclasses.replace(artifacts[tag], local_path=str(path))
                              for tag, path in experiment_paths(ctx, key).items()})
            exp = dataclasses.replace(exp, key=key, artifacts=artifacts)


def build(ctx: Context, opts: RunOptions, *, local: bool = False) -> Experiment:
    """`prepare` up to the record: every input validated, workspace and environment captured,
    the experiment (`queued`) not yet created. `local`: it runs here, so `--capture` paths are
    captured at its first checkpoint instead of now (a queued run stores them now: a worker
    starts from that data, seed 8.1.3), and the workspace capture arms a watch that spares the
    checkpoints a scan while nothing in it changes (`ObjectStore.put_tree(watch=True)`)."""
    from studio.capture import start_environment, static_environment, workspace_ignore

    target = resolve_target(opts)
    # Collected read-only (nothing is written) while the checks below open the metadata store.
    environment_future = None if opts.defer_workspace else start_environment(
        target.workspace / target.script if not target.module else target.workspace,
        reuse=opts.reuse_environment, cache_dir=environment_cache(ctx),
    )
    key = check_key(opts.key) if opts.key else new_key()
    check_names(project=opts.project, queue=opts.queue, metric=opts.metric, sweep=opts.sweep, owner=ctx.settings.owner)
    captures: list[CaptureSpec] = []
    once: list[CaptureSpec] = []
    reuses: list[ReuseSpec] = []
    if opts.capture or opts.capture_once or opts.reuse:  # most runs have none: no import
        from studio.api.specs import parse_capture, parse_reuse

        captures = [parse_capture(s, "--capture") for s in opts.capture]
        once = [parse_capture(s, "--capture-once") for s in opts.capture_once]
        reuses = [parse_reuse(s) for s in opts.reuse]
    _check_unique_tags(captures, once, reuses)
    for spec in once:
        if not spec.path.exists():
            raise UsageError(f"--capture-once {spec.path}:{spec.tag}: {spec.path} does not exist; check the path")
        if not (spec.path.is_file() or spec.path.is_dir()):  # a FIFO or a device: reading it could hang
            raise UsageError(f"--capture-once {spec.path}:{spec.tag}: {spec.path} is not a file or folder")
    for spec in captures:
        _check_capture_path(spec)
    max_duration = parse_duration(opts.max_duration) if opts.max_duration else None
    lifetime = parse_duration(opts.lifetime) if opts.lifetime else None
    python_pkgs: list[str] = []
    if opts.python_pkgs:  # `packaging` and the venv machinery only when asked for
        from studio.runner.venv import check_requirements

        python_pkgs = check_requirements(opts.python_pkgs)
    # Upstream configs may list needs studio does not schedule on (e.g. gpuMem): not an error.
    configured = {k: v for k, v in ctx.settings.resources_needed.items() if k in RESOURCE_NAMES}
    resources = parse_needs({**configured, **opts.resources})
    if opts.key and not opts.key_is_new:  # a re-run of a named experiment: NAME.2, NAME.3, ...
        key = names.free_key(ctx.meta, key)
    else:  # a new key is never taken (create_experiment refuses one that is); open the store
        ctx.meta  # noqa: B018 - before capturing: a store that cannot open fails first
    reused = {spec.newtag: _reused_artifact(ctx, spec) for spec in reuses}

    objects = ctx.objects_for(key)
    artifacts: dict[str, ArtifactSpec] = {}
    secrets_left_out: list[str] = []
    if environment_future is None:  # defer_workspace
        artifacts["workspace"] = ArtifactSpec(tag="workspace", mutable=True, local_path=str(target.workspace))
    else:
        ignore = workspace_ignore(target.workspace, secrets_left_out)
        total = _size_notice(target.workspace, ignore, opts.notice) if opts.notice is not None else 0
        if total and opts.progress is not None:
            advance, close = opts.progress(total)
            try:
                ws = objects.put_tree(target.workspace, ignore=ignore, on_file=advance, watch=local)
            finally:
                close()
        else:
            ws = objects.put_tree(target.workspace, ignore=ignore, watch=local)
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
        artifacts[spec.tag] = _capture_artifact(ctx, spec, stored=not local)
    artifacts.update(reused)
    artifacts.update(opts.extra_artifacts)
    if environment_future is None:
        environment = {**static_environment(environment_cache(ctx)), "git": dict(PENDING_GIT)}
    else:
        environment = environment_future.result(ws.tree)
        _note_secrets_left_out(target.workspace, secrets_left_out + list((environment.get("git") or {}).get(
            "diff_secrets_left_out") or ()), opts.echo)

    exp = Experiment(
        key=key,
        project=opts.project or "default",
        owner=ctx.settings.owner,
        script=target.script,
        args=tuple(opts.args),
        module=target.module,
        status=Status.QUEUED,
        queue=opts.queue,
        params=recorded_params(opts, target),
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
    return exp


#: `git` of an experiment whose workspace and git state are captured after it was recorded
#: (`RunOptions.defer_workspace`): replaced when they are; left if the process ended first,
#: with a `workspace` artifact that has no tree.
PENDING_GIT = {"pending": "recorded with the workspace after the run started; missing if the run ended first"}


def capture_workspace(ctx: Context, key: str, exp: Experiment, echo: bool = False) -> tuple[ArtifactSpec, dict[str, Any]]:
    """The deferred half of `build(..., defer_workspace=True)` for experiment `exp`: store its
    workspace and collect its git state (reused while the repository and the files are the
    same). Returns the `workspace` artifact (stored, not yet recorded) and the `git` value."""
    from studio.capture import start_environment, workspace_ignore

    workspace = Path(exp.artifacts["workspace"].local_path or ".")
    script = workspace / exp.script if not exp.module else workspace
    environment_future = start_environment(script, reuse=True, cache_dir=environment_cache(ctx))
    secrets_left_out: list[str] = []
    ws = ctx.objects_for(key).put_tree(workspace, ignore=workspace_ignore(workspace, secrets_left_out))
    git = environment_future.result(ws.tree).get("git") or {}
    _note_secrets_left_out(workspace, secrets_left_out + list(git.get("diff_secrets_left_out") or ()), echo)
    artifact = exp.artifacts["workspace"].replace(tree=ws.tree, size=ws.size, files=ws.files, updated=time.time())
    return artifact, git


def _check_capture_path(spec: CaptureSpec) -> None:
    """A `--capture` path is a file or a folder; a missing one becomes an empty folder (the
    seed's example captures ~/.weights before the script creates it). Made before anything is
    recorded, so a path that cannot be made leaves nothing behind."""
    if spec.path.is_file() or spec.path.is_dir():
        return
    if spec.path.exists():
        raise UsageError(f"--capture {spec.path}:{spec.tag}: {spec.path} is neither a file nor a folder")
    try:
        spec.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--capture {spec.path}:{spec.tag}: cannot create the folder ({exc.strerror}); "
                         "check the path") from None


def _capture_artifact(ctx: Context, spec: CaptureSpec, stored: bool) -> ArtifactSpec:
    """A `--capture` artifact. `stored`: what the path holds now is stored with the experiment,
    so a worker starts from that data (seed 8.1.3) instead of an empty folder; a local run
    captures it at its first checkpoint instead."""
    art = ArtifactSpec(tag=spec.tag, mutable=True, local_path=str(spec.path))
    if not stored or (spec.path.is_dir() and not any(spec.path.iterdir())):
        return art
    res = ctx.objects.put_tree(spec.path)
    return art.replace(tree=res.tree, size=res.size, files=res.files, updated=time.time())


def _size_notice(root: Path, ignore: Any, notice: Callable[[str], None]) -> int:
    """Tell `notice` about a workspace over LARGE_WORKSPACE; its size then, else 0."""
    from studio.capture.workspace import LARGE_WORKSPACE, workspace_size
    from studio.units import format_size

    total, files, largest = workspace_size(root, ignore)
    if total < LARGE_WORKSPACE:
        return 0
    biggest = ", ".join(f"{name} {format_size(size)}" for name, size in largest)
    notice(f"capturing {format_size(total)} in {files:,} files from {root} (largest: {biggest}); "
           f"only changed files are stored again, and paths listed in {root / '.studioml_ignore'} "
           "(gitignore syntax) are left out")
    return total


def recorded_params(opts: RunOptions, target: Target) -> dict[str, Any]:
    """The script's own command line read as params (options, Hydra overrides, config files),
    under the params studio was given (a sweep's point, `studio.params()`), which win. A param
    whose name looks secret (`--api-key`, a config file's `password:`) is recorded as `***`,
    and secret values inside others are masked, as for the config's `env:`."""
    if not opts.args:  # before the imports: most runs have no arguments
        return dict(opts.params)
    from studio.capture.cli_params import params_from_args
    from studio.capture.secrets import MASK, is_secret_name, mask_text, secret_values

    script = None if target.module else target.workspace / target.script
    found = params_from_args(opts.args, script=script, cwd=opts.cwd)
    secrets = secret_values()
    for name, value in found.items():
        if is_secret_name(name.rsplit(".", 1)[-1]):
            found[name] = MASK
        elif isinstance(value, str):
            found[name] = mask_text(value, secrets)
    return {**found, **opts.params}


def _check_unique_tags(captures: list[CaptureSpec], once: list[CaptureSpec], reuses: list[ReuseSpec]) -> None:
    seen: set[str] = set()
    for tag in [c.tag for c in captures] + [c.tag for c in once] + [r.newtag for r in reuses]:
        if tag in seen:
            raise UsageError(f"artifact tag {tag!r} is given twice; give each --capture/--capture-once/--reuse its own tag")
        if tag in ("output", "metrics"):
            raise UsageError(f"artifact tag {tag!r} is reserved for studio's own records; choose another tag")
        seen.add(tag)


__all__ = ["RunOptions", "prepare", "resolve_target", "DEFAULT_ARTIFACTS", "Status"]
