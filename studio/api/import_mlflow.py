"""`studio import mlflow`: copy MLflow runs into studio, so a team moves with its history.

For each run of the chosen MLflow experiments (all of them without a name):

    MLflow                              studio
    experiment name                     project
    run id                              key ``mlflow-<run id>`` (the same run imports once)
    run name, user                      the ``mlflow.runName`` param, owner
    params (strings)                    params (numbers and booleans parsed back)
    metrics, full history               the `metrics` series: every (step, value, timestamp)
    tags                                ``mlflow/tags.json`` in the `workbook` artifact
    status FINISHED/FAILED/KILLED       finished / failed / killed
    status RUNNING/SCHEDULED            lost (reason says it was still running in MLflow)
    start / end time                    time added and started / finished
    artifacts                           the `artifacts` artifact (content-addressed)

Idempotent: a run whose key exists is skipped, so importing again picks up only new runs. A
run is recorded only complete: its series, artifacts and tags are stored first and the
experiment row is written last; if anything fails in between the row is removed again.
Needs the MLflow client (``pip install mlflow`` or ``mlflow-skinny``), imported only here.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.api.context import Context
from studio.entities import ArtifactSpec, Experiment, Status
from studio.exceptions import MissingDependencyError, NotFoundError, StudioError, UsageError

log = logging.getLogger(__name__)

STATUS = {"FINISHED": Status.FINISHED, "FAILED": Status.FAILED, "KILLED": Status.KILLED}
PAGE = 1000


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"imported": self.imported, "skipped": self.skipped, "failed": self.failed}


def client(tracking_uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MissingDependencyError(
            "studio import mlflow needs the MLflow client: pip install mlflow-skinny (or mlflow)"
        ) from None
    try:
        return MlflowClient(tracking_uri=tracking_uri)
    except Exception as exc:
        raise _unreadable(tracking_uri, exc) from None


def _unreadable(uri: str, exc: Exception) -> UsageError:
    return UsageError(
        f"could not read MLflow tracking store {uri!r}: {type(exc).__name__}: {str(exc)[:200]}; "
        "pass the URI MLflow itself uses (e.g. sqlite:///mlflow.db, file:///path/mlruns, http://host:5000)"
    )


def import_mlflow(
    ctx: Context,
    tracking_uri: str,
    experiment_names: list[str] | None = None,
    *,
    with_artifacts: bool = True,
    progress: Callable[[str, str], None] | None = None,
) -> ImportReport:
    """Import the runs of `experiment_names` (all experiments when empty) from `tracking_uri`."""
    mlflow = client(tracking_uri)
    experiments = _experiments(mlflow, tracking_uri, experiment_names)
    report = ImportReport()
    for mexp in experiments:
        for run in _runs(mlflow, mexp.experiment_id):
            key = run_key(run.info.run_id)
            try:
                ctx.meta.get_experiment(key)
            except NotFoundError:
                pass
            else:
                report.skipped.append(key)
                continue
            try:
                _import_run(ctx, mlflow, mexp, run, key, with_artifacts)
            except StudioError:
                raise
            except Exception as exc:  # one bad run must not stop the others
                log.warning("could not import MLflow run %s", run.info.run_id, exc_info=True)
                report.failed[run.info.run_id] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            report.imported.append(key)
            if progress is not None:
                progress(key, mexp.name)
    return report


def run_key(run_id: str) -> str:
    return f"mlflow-{run_id}"[:128]


def _experiments(mlflow: Any, uri: str, names: list[str] | None) -> list[Any]:
    try:
        if not names:
            return list(mlflow.search_experiments())
        found = []
        for name in names:
            exp = mlflow.get_experiment_by_name(name)
            if exp is None:
                known = ", ".join(e.name for e in mlflow.search_experiments()) or "none"
                raise UsageError(f"MLflow at {uri} has no experiment {name!r} (it has: {known})")
            found.append(exp)
        return found
    except StudioError:
        raise
    except Exception as exc:
        raise _unreadable(uri, exc) from None


def _runs(mlflow: Any, experiment_id: str) -> Iterator[Any]:
    token = None
    while True:
        page = mlflow.search_runs([experiment_id], max_results=PAGE, page_token=token, order_by=["attributes.start_time ASC"])
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def parse_param(text: str) -> Any:
    """MLflow keeps params as strings: numbers and booleans come back as such."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else text


def _import_run(ctx: Context, mlflow: Any, mexp: Any, run: Any, key: str, with_artifacts: bool) -> None:
    info, data = run.info, run.data
    started = (info.start_time or 0) / 1000 or time.time()
    ended = (info.end_time or 0) / 1000 or None
    with tempfile.TemporaryDirectory(prefix="studio-mlflow-") as tmp:
        root = Path(tmp)
        artifacts: dict[str, ArtifactSpec] = {}
        metrics_dir = root / "metrics"
        summaries = _write_series(mlflow, info.run_id, list(data.metrics), metrics_dir)
        if summaries:
            artifacts["metrics"] = _store(ctx, key, "metrics", metrics_dir)
        workbook = root / "workbook" / "mlflow"
        workbook.mkdir(parents=True)
        tags = dict(data.tags)
        (workbook / "tags.json").write_text(json.dumps({"run_id": info.run_id, "experiment": mexp.name, "tags": tags}, indent=1))
        artifacts["workbook"] = _store(ctx, key, "workbook", root / "workbook")
        if with_artifacts:
            folder = root / "artifacts"
            folder.mkdir()
            mlflow.download_artifacts(info.run_id, "", str(folder))
            if any(folder.iterdir()):
                artifacts["artifacts"] = _store(ctx, key, "artifacts", folder)
    params = {k: parse_param(v) for k, v in data.params.items()}
    run_name = getattr(info, "run_name", None) or tags.get("mlflow.runName")
    if run_name:
        params.setdefault("mlflow.runName", run_name)
    exp = Experiment(
        key=key,
        project=mexp.name,
        owner=info.user_id or tags.get("mlflow.user") or ctx.settings.owner,
        script=tags.get("mlflow.source.name") or "<mlflow>",
        args=(),
        params=params,
        git={"commit": tags["mlflow.source.git.commit"]} if tags.get("mlflow.source.git.commit") else {},
        time_added=started,
        artifacts=artifacts,
    )
    ctx.meta.create_experiment(exp)
    try:
        ctx.meta.set_status(key, Status.RUNNING, worker="mlflow-import", time_started=started, lease_expires=time.time() + 60)
        status = STATUS.get(str(info.status).upper())
        if status is None:
            ctx.meta.set_status(key, Status.LOST, reason=f"imported from MLflow while it was {info.status}", time_finished=ended or time.time())
        else:
            code = 0 if status is Status.FINISHED else None
            ctx.meta.set_status(key, status, returncode=code, reason="imported from MLflow" if code is None else None,
                                time_finished=ended or started)
        if summaries:
            ctx.meta.put_metric_summaries(key, summaries)
    except BaseException:
        ctx.meta.delete_experiment(key)
        raise


def _write_series(mlflow: Any, run_id: str, keys: list[str], folder: Path) -> list[Any]:
    if not keys:
        return []
    import numpy as np

    from studio.tracking import series
    from studio.tracking.segments import SegmentNamer, write_segment_to

    columns = []
    for name in sorted(keys):
        history = mlflow.get_metric_history(run_id, name)
        if not history:
            continue
        steps = np.fromiter((m.step for m in history), np.int64, len(history))
        values = np.fromiter((m.value for m in history), np.float64, len(history))
        times = np.fromiter((m.timestamp / 1000 for m in history), np.float64, len(history))
        order = np.lexsort((times, steps))
        columns.append((name, steps[order], values[order], times[order]))
    if not columns:
        return []
    folder.mkdir(parents=True)
    write_segment_to(folder / SegmentNamer().next_name(".arrow"), columns, fsync=False)
    return list(series.summarize(folder, folder.parent / "summary-state.json"))


def _store(ctx: Context, key: str, tag: str, path: Path) -> ArtifactSpec:
    ignore = lambda rel, is_dir: rel.rpartition("/")[2].startswith(".")  # noqa: E731
    result = ctx.objects_for(key).put_tree(path, ignore=ignore)  # a studio server authorizes by experiment
    return ArtifactSpec(tag=tag, mutable=False, tree=result.tree, size=result.size, files=result.files, updated=time.time())
