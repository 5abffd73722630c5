"""Library verbs on recorded experiments: list, show, stop, kill, rerun, fetch artifacts, gc."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.api import names
from studio.api.context import Context
from studio.entities import Experiment, ExperimentQuery, Status
from studio.exceptions import NotFoundError, UsageError
from studio.meta.base import Page


def refresh_lost(ctx: Context) -> None:
    """Experiments whose supervisor stopped heartbeating are requeued or marked lost; what a
    lost one left on this machine is stored (see `runner.salvage`)."""
    from studio.runner.salvage import retire_lapsed

    retire_lapsed(ctx)


def list_experiments(ctx: Context, query: ExperimentQuery) -> Page:
    refresh_lost(ctx)
    return ctx.meta.query(query)


def show(ctx: Context, key: str) -> dict[str, Any]:
    """Everything recorded about one experiment, as one JSON-ready object. `key` is a reference
    (`studio.api.names`): NAME is the newest finished run of that name, NAME.N one run."""
    refresh_lost(ctx)
    exp = names.resolve(ctx.meta, key)
    key = exp.key
    data = exp.to_dict()
    data["duration"] = exp.duration
    data["history"] = [
        {"status": e.status.value, "time": e.time, "reason": e.reason, "worker": e.worker}
        for e in ctx.meta.status_history(key)
    ]
    data["metrics"] = {
        s.key: {"last": s.last, "min": s.min, "max": s.max, "count": s.count, "last_step": s.last_step}
        for s in ctx.meta.metric_summaries([key]).get(key, [])
    }
    return data


def output_text(ctx: Context, key: str, tail: int | None = None) -> str:
    key = names.resolve(ctx.meta, key).key
    text = "".join(c.text for c in ctx.meta.read_output(key))
    if tail is not None:
        text = "\n".join(text.splitlines()[-tail:]) + ("\n" if text else "")
    return text


def stop(ctx: Context, key: str) -> Experiment:
    """Ask the supervisor running `key` to stop it; a queued experiment stops at once."""
    exp = ctx.meta.get_experiment(key)
    if exp.status.terminal:
        return exp
    return ctx.meta.request_stop(key)


def wait_terminal(ctx: Context, key: str, timeout: float) -> Experiment:
    deadline = time.monotonic() + timeout
    while True:
        refresh_lost(ctx)
        exp = ctx.meta.get_experiment(key)
        if exp.status.terminal or time.monotonic() > deadline:
            return exp
        time.sleep(0.2)


def kill(ctx: Context, key: str, timeout: float = 30.0) -> None:
    """Stop the experiment if it runs (upstream deleted running experiments under the
    runner's feet), then delete its records. Stored objects go at the next `studio gc`."""
    exp = stop(ctx, key)
    if not exp.status.terminal:
        exp = wait_terminal(ctx, key, timeout)
        if not exp.status.terminal:
            raise UsageError(
                f"experiment {key} did not stop within {timeout:.0f}s; try again or wait for its lease to lapse"
            )
    ctx.meta.delete_experiment(key)


def fetch_artifact(ctx: Context, key: str, tag: str, dest: Path | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Path:
    """Copy artifact `tag` of `key` (a reference: NAME is the newest finished run of that name)
    to `dest` (default ./TAG). `progress(done_bytes, total_bytes)` is called as files are written."""
    exp = names.resolve(ctx.meta, key)
    key = exp.key
    art = exp.artifacts.get(tag)
    if art is None or art.tree is None:
        tags = ", ".join(sorted(t for t, a in exp.artifacts.items() if a.tree)) or "none"
        raise NotFoundError(f"experiment {key} has no stored artifact {tag!r} (stored: {tags})")
    target = Path(os.path.abspath(dest if dest is not None else Path.cwd() / tag))
    objects = ctx.objects_for(key)
    tree = objects.get_tree(art.tree)
    if tree.kind == "file" and target.is_dir():
        target = target / tree.entries[0].path
    # Like cp: the destination's folder must exist (a typo must not create a tree of folders).
    if not target.parent.is_dir():
        raise UsageError(f"cannot write to {target}: folder {target.parent} does not exist; create it or choose another destination")
    if tree.kind == "dir" and target.exists() and not target.is_dir():
        raise UsageError(f"cannot write artifact {tag!r} (a folder) to {target}: it is a file; choose a folder")
    on_file = None
    if progress is not None:
        total = sum(e.size for e in tree.entries)
        done = [0]
        lock = threading.Lock()

        def on_file(size: int) -> None:
            with lock:
                done[0] += size
                progress(done[0], total)

    try:
        return objects.materialize(art.tree, target, on_file=on_file)
    except OSError as exc:
        raise UsageError(f"cannot write to {exc.filename or target}: {exc.strerror or exc}; choose a writable destination") from exc


def gc(ctx: Context, dry_run: bool = False, grace_seconds: float = 3600.0) -> dict[str, int]:
    """Drop stored objects that no experiment references. Objects younger than the grace
    period are kept: a capture in progress has stored blobs whose tree is not recorded yet."""
    report = ctx.objects.gc(ctx.meta.referenced_trees(), dry_run=dry_run, grace_seconds=grace_seconds)
    return {
        "removed_objects": report.removed_objects,
        "removed_bytes": report.removed_bytes,
        "kept_objects": report.kept_objects,
    }


__all__ = ["list_experiments", "show", "stop", "kill", "fetch_artifact", "gc", "Status"]
