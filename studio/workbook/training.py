"""The training side: ``exp = workbook.new_experiment()`` in any script, then ``exp.save_*``.

    from studio import workbook
    exp = workbook.new_experiment(project="mnist", params={"lr": 0.01})
    exp.save_json("options", vars(args))
    exp.save_git_status()                       # Source.git-current-commit, Source.git-patch
    log = exp.time_series_log("Training loss", ["step", "loss"], save_every=100)
    for step in ...:
        log(step=step, loss=loss)
    exp.save_torch("model", model)

Every file goes to the experiment's workbook folder (``$STUDIOML_HOME/experiments/<tag>/workbook``)
and from there into the object store as the artifact tagged `workbook`, one file per saved
name, which is what `ExperimentRepository()[tag]` lists. Rows of time-series logs also go
into the experiment's metric series, so ``--metric`` and the dashboard see them.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from studio.entities import Status
from studio.exceptions import MissingDependencyError, UsageError
from studio.workbook import saving
from studio.workbook.session import HOOKS, Session
from studio.workbook.timeseries import TimeSeriesLog, check_fields, csv_name, metrics_sink


class WorkbookExperiment:
    """One experiment, as seen from the script that writes it. See `new_experiment`."""

    def __init__(self, session: Session) -> None:
        self._session = session

    # -- identity ----------------------------------------------------------------------------
    @property
    def tag(self) -> str:
        """The experiment's key, `YYYYMMDDHHMM-XXXXXXXXXX`: write it in your lab notes."""
        return self._session.key

    key = tag

    @property
    def directory(self) -> Path:
        """The local workbook folder (live copy of the `workbook` artifact)."""
        return self._session.directory

    @property
    def owned(self) -> bool:
        """True when this process created the experiment (False: attached under `studio run`)."""
        return self._session.owned

    @property
    def closed(self) -> bool:
        return self._session.closed

    def __repr__(self) -> str:
        mode = "owned" if self.owned else "attached"
        return f"<WorkbookExperiment {self.tag} ({mode}{', closed' if self.closed else ''})>"

    # -- saving ------------------------------------------------------------------------------
    def _path(self, name: str, suffix: str = "") -> Path:
        if self._session.closed:
            raise UsageError(
                f"experiment {self.tag} is closed; start a new one with workbook.new_experiment()"
            )
        return self.directory / saving.artifact_name(name, suffix)

    def _saved(self, path: Path) -> Path:
        self._session.changed(urgent=True)
        return path

    def save_json(self, name: str, value: Any) -> Path:
        """`value` as `name.json` (NaN and infinities kept as Python's json writes them).

        TypeError, naming the key path, if part of `value` cannot be encoded."""
        path = self._path(name, ".json")
        data = saving.encode_json(name, value)
        return self._saved(saving.atomic_write(path, lambda f: f.write(data)))

    def save_pickle(self, name: str, obj: Any) -> Path:
        """`obj` pickled as `name.pkl` (loading it back runs pickle: only load what you trust)."""
        path = self._path(name, ".pkl")
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        return self._saved(saving.atomic_write(path, lambda f: f.write(data)))

    def save_numpy(self, name: str, array: Any) -> Path:
        """`array` as `name.npy` (numpy's own format)."""
        import numpy as np

        path = self._path(name, ".npy")
        return self._saved(
            saving.atomic_write(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))
        )

    def save_torch(self, name: str, obj: Any) -> Path:
        """`obj` written with `torch.save` as `name.pt`. MissingDependencyError without torch."""
        try:
            import torch
        except ImportError:
            raise MissingDependencyError(
                "save_torch needs PyTorch, which is not installed: `pip install torch`, "
                "or use save_pickle / save_numpy"
            ) from None
        path = self._path(name, ".pt")
        return self._saved(saving.atomic_write(path, lambda f: torch.save(obj, f)))

    def save_file(self, path: str | os.PathLike[str], name: str | None = None) -> Path:
        """A copy of the file at `path`, named `name` (default: its own name)."""
        src = Path(path)
        if not src.is_file():
            raise FileNotFoundError(f"save_file: {src} is not a file")
        dest = self._path(name or src.name)
        return self._saved(saving.atomic_copy(src, dest))

    def save_text(self, name: str, text: str) -> Path:
        """`text` as the file `name` (UTF-8), e.g. ``save_text("notes.md", ...)``."""
        data = str(text).encode("utf-8")
        return self._saved(saving.atomic_write(self._path(name), lambda f: f.write(data)))

    def save_git_status(
        self, name: str = "Source", path: str | os.PathLike[str] | None = None
    ) -> list[Path]:
        """`name.git-current-commit` (`git log -n 1`) and `name.git-patch` (every uncommitted
        change against HEAD, untracked files included), for the repository around `path`
        (default: the script's folder). Outside a repository nothing is saved ([])."""
        where = Path(path) if path is not None else _script_dir()
        files = saving.git_status_files(where)
        if files is None:
            import logging

            logging.getLogger(__name__).warning(
                "save_git_status: %s is not in a git repository; nothing saved", where
            )
            return []
        written = []
        for suffix, text in files.items():
            data = text.encode("utf-8")
            target = self._path(f"{name}.{suffix}")
            written.append(saving.atomic_write(target, lambda f, d=data: f.write(d)))  # type: ignore[misc]
        self._session.changed(urgent=True)
        return written

    # -- time series -------------------------------------------------------------------------
    def time_series_log(
        self,
        name: str,
        fields: list[str] | tuple[str, ...],
        save_every: int = 1,
        *,
        metrics: bool = True,
        metric_prefix: str = "",
    ) -> TimeSeriesLog:
        """A callable appending rows to `name.csv` (fields + a UTC `Date` column).

        Rows are appended every `save_every` rows (and when they have waited a couple of
        seconds, on `flush()` and at exit). With `metrics` (default), numeric values also go
        to the experiment's metric series under their field names (prefixed with
        `metric_prefix`): an integer first field is their step.
        """
        path = self._path(csv_name(name))
        session = self._session
        existing = session.logs.get(path.name)
        if existing is not None:
            if existing.fields != tuple(fields):
                raise ValueError(
                    f"time series {path.name} already logs {', '.join(existing.fields)}; "
                    "use those fields or another name"
                )
            return existing
        logger = session.metrics_logger
        checked = check_fields(path.name, fields)
        sink = (
            metrics_sink(checked, logger.log, metric_prefix)
            if metrics and logger is not None
            else None
        )
        ts = TimeSeriesLog(
            path, checked, save_every, metrics=sink, on_flush=session.changed, guard=HOOKS.critical
        )
        session.logs[path.name] = ts
        return ts

    # -- lifecycle ---------------------------------------------------------------------------
    def flush(self) -> None:
        """Append pending rows, flush metrics and capture the workbook folder now."""
        self._session.flush()

    def close(self, status: Status | str = Status.FINISHED, reason: str | None = None) -> None:
        """End the experiment now (it ends by itself at interpreter exit). An owned experiment
        is recorded with `status` (default finished); an attached one is only flushed."""
        status = Status(status)
        code = 0 if status == Status.FINISHED else None
        self._session.finish(status, reason, code)

    def __enter__(self) -> WorkbookExperiment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close(Status.STOPPED, "interrupted (KeyboardInterrupt)")
        else:
            self.close(Status.FAILED, f"{exc_type.__name__}: {exc}"[:500])


def _script_dir() -> Path:
    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    return Path(file).resolve().parent if file else Path.cwd()


def new_experiment(
    project: str | None = None,
    name: str | None = None,
    *,
    params: dict[str, Any] | None = None,
    metric: str | None = None,
    config: str | os.PathLike[str] | None = None,
    capture_interval: float = 10.0,
    flush_after: float = 2.0,
    echo: bool = True,
) -> WorkbookExperiment:
    """Start recording this script as an experiment, or join the one it runs in.

    Under `studio run` or a worker (``STUDIOML_EXPERIMENT`` set) this attaches to that
    experiment: `project` and `name` are ignored, `params` are merged into its params.
    Otherwise it creates one in the configured stores (``config``: a config file, else
    ``$STUDIOML_HOME/config.yaml``), exactly as `studio run` would record it: key `name` or a
    new tag `YYYYMMDDHHMM-XXXXXXXXXX`, `project` (default "default"), `params`, `metric`
    (``name[:min|:max]``), git/env/host and the script's folder as `workspace`. It is
    `running` until the interpreter exits (see `studio.workbook.session` for the statuses).

    The tag is printed to stdout (``echo=False`` silences it).
    """
    from studio.workbook import starting

    session = starting.open_session(
        project=project, name=name, params=params, metric=metric, config=config,
        capture_interval=capture_interval, flush_after=flush_after,
    )  # fmt: skip
    session.start()
    if echo:
        how = "recording" if session.owned else "attached to"
        print(
            f"studio workbook: {how} experiment {session.key} (project {session.record.project})",
            flush=True,
        )
    return WorkbookExperiment(session)
