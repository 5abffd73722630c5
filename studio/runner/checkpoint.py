"""Save mutable artifacts (only what changed), import TensorBoard scalars and fold metrics.

Runs every `saveWorkspaceFrequency` seconds in a background thread of the supervisor, and
once more after the script ends. Each artifact version is a tree in the object store; the
metadata row is updated only when the tree hash changes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from studio.context import Context
from studio.entities import ArtifactSpec, MetricSummary
from studio.exceptions import ConflictError, StoreError

log = logging.getLogger(__name__)

IgnoreFn = Callable[[str, bool], bool]


class CheckpointError(StoreError):
    """Some artifacts of a checkpoint could not be stored (the others were)."""


def capture_ignores(workspace: Path) -> dict[str, IgnoreFn]:
    """What checkpoints leave out: `.studioml_ignore` and defaults in the workspace; the series
    readers' private `.`-files (temp segments, summary state) in `metrics`."""
    from studio.capture import workspace_ignore

    return {"workspace": workspace_ignore(workspace), "metrics": _private_name}


def _private_name(path: str, is_dir: bool) -> bool:
    return path.rsplit("/", 1)[-1].startswith(".")


def fold_metric(spec: str | None, summaries: list[MetricSummary]) -> float | None:
    """`name[:min|:max]` folded over the series summaries (empty suffix: last value)."""
    if not spec:
        return None
    name, _, how = spec.partition(":")
    for s in summaries:
        if s.key == name:
            return {"min": s.min, "max": s.max}.get(how, s.last)
    return None


class Checkpointer:
    def __init__(
        self,
        ctx: Context,
        key: str,
        artifacts: dict[str, ArtifactSpec],
        paths: dict[str, Path],
        ignore: dict[str, IgnoreFn] | None = None,
        metric: str | None = None,
    ) -> None:
        """artifacts: the experiment's artifact records; paths: tag -> local path to capture
        (mutable artifacts only)."""
        self.ctx = ctx
        self.key = key
        self.artifacts = dict(artifacts)
        self.paths = paths
        self.ignore = ignore or {}
        self.metric = metric
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.summaries: list[MetricSummary] = []
        self.ended = False  # the last checkpoint(end=...) recorded the end

    def start(self, interval: float) -> None:
        if interval <= 0:
            return
        self._thread = threading.Thread(target=self._loop, args=(interval,), name="studio-checkpoint", daemon=True)
        self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.checkpoint()
            except Exception as exc:
                log.warning("checkpoint of %s failed; will retry: %s", self.key, exc,
                            exc_info=not isinstance(exc, StoreError))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def release(self) -> None:
        """After the final checkpoint: the store forgets its last captures of these paths (and
        closes the watch `studio run` armed on the workspace)."""
        objects = self.ctx.objects_for(self.key)
        for path in self.paths.values():
            objects.release(path)

    def checkpoint(
        self,
        end: dict[str, Any] | None = None,
        fields: dict[str, Any] | None = None,
        stored: Sequence[ArtifactSpec] = (),
    ) -> None:
        """One pass: metrics first (so the `metrics` artifact includes imported scalars).

        Recorded in one transaction with the changed artifacts and the checkpoint time:
        `stored`, artifacts stored elsewhere (a workspace captured in the background);
        `fields`, plain experiment fields (its git state); `end`, the run's final status
        (`MetaStore.put_final_checkpoint`'s keywords: `status`, `expect`, `reason`, ...).
        `self.ended` then tells whether the end was recorded (or refused: ConflictError)."""
        self.ended = False
        with self._lock:
            try:
                self._metrics()
            except Exception:  # metrics must never cost the artifacts their checkpoint
                log.warning("metrics of %s could not be summarized", self.key, exc_info=True)
            failed: list[str] = []
            changed: list[ArtifactSpec] = list(stored)
            try:
                for tag, path in self.paths.items():
                    try:  # one artifact that cannot be stored must not cost the others theirs
                        artifact = self._capture(tag, path)
                    except Exception as exc:
                        failed.append(f"{tag}: {exc}")
                        continue
                    if artifact is not None:
                        changed.append(artifact)
            except BaseException:
                # What was captured before an interrupt is still recorded.
                self.ctx.meta.put_checkpoint(self.key, changed, time.time(), fields=fields)
                self._remember(changed)
                raise
            if end is None:
                self.ctx.meta.put_checkpoint(self.key, changed, time.time(), fields=fields)
            else:
                try:
                    self.ctx.meta.put_final_checkpoint(self.key, changed, time.time(), fields=fields, **end)
                except ConflictError:
                    self.ended = True  # refused: the checkpoint is recorded, the end is not ours
                    self._remember(changed)
                    raise
                self.ended = True
            self._remember(changed)
            if failed:
                raise CheckpointError("could not save " + "; ".join(failed))

    def _remember(self, changed: list[ArtifactSpec]) -> None:
        for artifact in changed:
            self.artifacts[artifact.tag] = artifact

    def _capture(self, tag: str, path: Path) -> ArtifactSpec | None:
        """The artifact's new version when its tree changed (stored, not yet recorded)."""
        if not path.exists():
            return None
        current = self.artifacts.get(tag) or ArtifactSpec(tag=tag, local_path=str(path))
        # Metric segments are written once (temp file, rename) and never changed in place:
        # a local store keeps them by hard link, so they are on disk once, not twice.
        result = self.ctx.objects_for(self.key).put_tree(
            path, ignore=self.ignore.get(tag), previous=current.tree, link=tag == "metrics"
        )
        if result.tree == current.tree:
            return None
        log.debug("captured %s/%s: %d files, %d uploaded", self.key, tag, result.files, result.uploaded_files)
        return current.replace(tree=result.tree, size=result.size, files=result.files, updated=time.time())

    def _metrics(self) -> None:
        metrics_dir = self.paths.get("metrics")
        tb_dir = self.paths.get("tb")
        if metrics_dir is None or not (_has_files(metrics_dir) or (tb_dir is not None and _has_files(tb_dir))):
            return  # nothing logged: don't pay for importing the series readers
        from studio.tracking import series, tensorboard

        if tb_dir is not None and tb_dir.exists():
            try:
                tensorboard.import_tensorboard(tb_dir, metrics_dir)
            except Exception:
                log.warning("could not import TensorBoard scalars from %s", tb_dir, exc_info=True)
        if not metrics_dir.exists():
            return
        summaries = series.summarize(metrics_dir)
        if summaries and summaries != self.summaries:
            self.ctx.meta.put_metric_summaries(self.key, summaries)
            self.summaries = summaries
            value = fold_metric(self.metric, summaries)
            if value is not None:
                self.ctx.meta.update_experiment(self.key, metric_value=value)


def _has_files(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return any(True for _ in entries)
    except OSError:
        return False
