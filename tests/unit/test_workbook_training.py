"""The training side in this process: new_experiment, save_*, time-series logs, close/attach.

Exit statuses (excepthook, sys.exit, signals, SIGKILL) need a real interpreter exit and are
covered in tests/e2e/test_workbook.py.
"""

from __future__ import annotations

import builtins
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.api.context import Context
from studio.entities import Experiment, Status
from studio.exceptions import ConflictError, MissingDependencyError, NotFoundError, UsageError
from studio.tracking import metrics
from studio.workbook import ExperimentRepository, new_experiment, starting
from studio.workbook.session import HOOKS


@pytest.fixture
def here(studio_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    """A clean process state around in-process experiments (env, hooks, metrics logger)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["-c"])  # no script: nothing to capture as workspace
    saved_env = dict(os.environ)
    saved = (sys.excepthook, sys.exit, signal.getsignal(signal.SIGTERM), builtins.SystemExit)
    ctx = Context.from_env()
    yield ctx
    ctx.close()
    for session in list(HOOKS.sessions):
        session.finish(Status.FINISHED)
    sys.excepthook, sys.exit = saved[0], saved[1]
    signal.signal(signal.SIGTERM, saved[2])
    builtins.SystemExit = saved[3]  # type: ignore[misc]  # an owned session replaced it
    HOOKS.installed = False
    starting._created_here.clear()
    os.environ.clear()
    os.environ.update(saved_env)
    metrics.configure(None)


def test_create_save_close(
    here: Context, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = new_experiment(project="p", name="run-1", params={"lr": 0.1}, capture_interval=60)
    assert "studio workbook: recording experiment run-1 (project p)" in capsys.readouterr().out
    assert exp.tag == "run-1" and exp.owned and os.environ["STUDIOML_EXPERIMENT"] == "run-1"
    record = here.meta.get_experiment("run-1")
    assert (
        record.status == Status.RUNNING and record.worker and record.worker.startswith("workbook:")
    )
    assert record.params == {"lr": 0.1} and record.host and record.python_version
    (tmp_path / "notes.txt").write_text("hi")
    exp.save_file(tmp_path / "notes.txt")
    exp.save_file(tmp_path / "notes.txt", name="copy.md")
    exp.save_text("readme", "text")
    exp.save_json("cfg.json", {"a": 1})
    log = exp.time_series_log("loss", ["step", "loss"], save_every=100)
    assert exp.time_series_log("loss.csv", ["step", "loss"]) is log
    with pytest.raises(ValueError, match="already logs step, loss"):
        exp.time_series_log("loss", ["epoch"])
    for i in range(5):
        log(step=i, loss=i * 0.5)
    with pytest.raises(FileNotFoundError):
        exp.save_file(tmp_path / "missing")
    with pytest.raises(ValueError, match="artifact name"):
        exp.save_json("a/b", 1)
    exp.flush()  # rows appended and captured now
    stored = here.meta.get_experiment("run-1").artifacts["workbook"]
    assert stored.tree and stored.files == 5
    exp.close()
    record = here.meta.get_experiment("run-1")
    assert record.status == Status.FINISHED and record.returncode == 0 and record.time_finished
    with pytest.raises(UsageError, match="is closed"):
        exp.save_json("late", 1)
    wb = ExperimentRepository(context=here)
    e = wb["run-1"]
    assert e.list_artifacts()[:5] == ["cfg.json", "copy.md", "loss.csv", "notes.txt", "readme"]
    assert e["loss.csv"]["loss"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert e.metrics(wide=True)["loss"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    with pytest.raises(ConflictError):
        new_experiment(name="run-1")


def test_context_manager_records_failure(here: Context) -> None:
    with pytest.raises(RuntimeError), new_experiment(name="cm-1", echo=False):
        raise RuntimeError("bad batch")
    record = here.meta.get_experiment("cm-1")
    assert record.status == Status.FAILED and record.status_reason == "RuntimeError: bad batch"
    with new_experiment(name="cm-2", echo=False) as exp:  # the second one in one process
        assert exp.tag == "cm-2" and exp.owned
    assert here.meta.get_experiment("cm-2").status == Status.FINISHED


def test_save_torch(here: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    exp = new_experiment(name="t-1", echo=False)
    exp.save_torch("model", {"w": torch.arange(3)})
    exp.close()
    loaded = ExperimentRepository(context=here)["t-1"]["model.pt"]
    assert loaded["w"].tolist() == [0, 1, 2]
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    exp2 = new_experiment(name="t-2", echo=False)
    with pytest.raises(MissingDependencyError, match="pip install torch"):
        exp2.save_torch("model", {})
    exp2.close()


def test_attach_to_the_current_experiment(here: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    here.meta.create_experiment(Experiment(key="outer", params={"lr": 1}))
    here.meta.set_status("outer", Status.RUNNING, worker="w")
    monkeypatch.setenv("STUDIOML_EXPERIMENT", "outer")
    exp = new_experiment(project="ignored", params={"seed": 3}, echo=False)
    assert exp.tag == "outer" and not exp.owned
    exp.save_json("x", [1])
    exp.close()
    record = here.meta.get_experiment("outer")
    assert record.status == Status.RUNNING  # the supervisor decides
    assert record.params == {"lr": 1, "seed": 3} and record.artifacts["workbook"].tree
    monkeypatch.setenv("STUDIOML_EXPERIMENT", "nobody")
    with pytest.raises(NotFoundError, match="STUDIOML_EXPERIMENT=nobody names no experiment"):
        new_experiment(echo=False)


def test_git_status_outside_a_repository(
    here: Context, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exp = new_experiment(echo=False)
    with caplog.at_level(logging.WARNING):
        assert exp.save_git_status(path=tmp_path) == []
    assert "not in a git repository" in caplog.text
    with pytest.raises(ValueError, match="capture_interval"):
        new_experiment(capture_interval=0)
    exp.close()
