"""End to end: training scripts using the workbook, run as a plain `python train.py` and under
`studio run`, then analysed with ExperimentRepository from this process."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from studio.api.context import Context
from studio.exceptions import NotFoundError
from studio.workbook import ExperimentRepository
from tests.e2e.helpers import studio, studio_json

REPO = Path(__file__).resolve().parents[2]
TAG = re.compile(r"experiment (\S+) \(project")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")


def python(script: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), *args], cwd=script.parent, env=env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def tag_of(line: str) -> str:
    m = TAG.search(line)
    assert m, line
    return m.group(1)


def read_tag(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return tag_of(proc.stdout.readline())


@pytest.fixture
def fast_lease(studio_home: Path) -> Path:
    """Heartbeats every 0.3 s and a 5 s lease, so a killed script is `lost` quickly."""
    write(studio_home / "config.yaml", "worker:\n  lease: 5\n  heartbeat: 0.3\n")
    return studio_home


@pytest.fixture
def fast_heartbeat(studio_home: Path) -> Path:
    """Heartbeats every 0.3 s (a stop request is seen quickly), the default 30 s lease."""
    write(studio_home / "config.yaml", "worker:\n  lease: 30\n  heartbeat: 0.3\n")
    return studio_home


@pytest.fixture
def wb(studio_home: Path) -> Iterator[ExperimentRepository]:
    repo = ExperimentRepository()
    yield repo
    repo.close()


TRAIN = """
import sys
import numpy as np
import studio
from studio import workbook

exp = workbook.new_experiment(project="wb", params={"lr": 0.05}, metric="loss:min")
exp.save_json("options", {"lr": 0.05, "layers": [4, 1]})
exp.save_git_status()
exp.save_pickle("state", {"epoch": 3, "seen": {1, 2}})
exp.save_numpy("weights", np.arange(4.0))
exp.save_file("data.txt")
try:
    exp.save_json("bad", {"ok": 1, "opt": {"fn": print}})
except TypeError as e:
    print("TypeError:", e)
log = exp.time_series_log("Training loss", ["step", "loss", "acc"], save_every=7)
for i in range(50):
    log(step=i, loss=1 / (i + 1), acc=float("nan") if i == 3 else i / 50)
log(50, float("inf"), -float("inf"))
try:
    log(step=51, los=0.1)
except ValueError as e:
    print("ValueError:", e)
studio.log(extra=1.5)
print("owned", exp.owned)
"""


def test_plain_python_script(studio_home: Path, tmp_path: Path, wb: ExperimentRepository) -> None:
    work = tmp_path / "project"
    script = write(work / "train.py", TRAIN)
    write(work / "data.txt", "raw data\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    subprocess.run([*git, "add", "train.py"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "initial"], cwd=work, check=True)
    write(work / "untracked_helper.py", "HELP = 1\n")

    proc = python(script)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    tag = tag_of(out.splitlines()[0])
    assert re.fullmatch(r"\d{12}-[A-Z0-9]{10}", tag)
    assert "owned True" in out
    assert (
        "TypeError: save_json('bad'): value['opt']['fn'] is a builtins.builtin_function_or_method"
        in out
    )
    assert (
        "ValueError: Training loss.csv: field 'los' was not declared; declared fields: step, loss, acc"
        in out
    )

    e = wb[tag]
    shown = e.record
    assert shown.status.value == "finished" and shown.returncode == 0 and shown.project == "wb"
    assert shown.params == {"lr": 0.05} and shown.script == "train.py"
    assert shown.git["commit"] and shown.artifacts["workspace"].tree
    assert shown.metric_value == pytest.approx(1 / 50)  # --metric-style fold of the rows
    summaries = {s.key: s for s in wb.ctx.meta.metric_summaries([tag])[tag]}
    assert summaries["extra"].last == 1.5  # studio.log lands in the same series

    assert e.list_artifacts() == [
        "Source.git-current-commit", "Source.git-patch", "Training loss.csv", "data.txt", "options.json",
        "state.pkl", "weights.npy", "metrics", "workspace",
    ]  # fmt: skip
    assert e["options.json"] == {"lr": 0.05, "layers": [4, 1]}
    assert e["state.pkl"] == {"epoch": 3, "seen": {1, 2}}
    assert e["weights.npy"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert e["data.txt"] == "raw data\n"
    assert "initial" in e["Source.git-current-commit"]
    assert "untracked_helper.py" in e["source.git-patch"]
    df = e["Training loss.csv"]
    assert df.index.name == "step" and len(df) == 51 and df["Date"].dtype.kind == "M"
    assert (
        math.isnan(df.loc[3, "acc"])
        and df.loc[50, "loss"] == math.inf
        and df.loc[50, "acc"] == -math.inf
    )
    wide = e.metrics(wide=True)
    assert wide.loc[10, "loss"] == pytest.approx(1 / 11) and "step" not in wide.columns
    runs = wb.runs(project="wb")
    assert runs.loc[tag, "metrics.loss.min"] == pytest.approx(1 / 50)
    assert runs.loc[tag, "metrics.loss.last"] == math.inf and runs.loc[tag, "params.lr"] == 0.05


OUTCOMES = """
import os, signal, sys
from sys import exit
from studio import workbook
exp = workbook.new_experiment(project="outcomes", params={"mode": sys.argv[1]})
log = exp.time_series_log("log", ["step", "v"], save_every=1000)
for i in range(100):
    log(i, i * 0.5)
mode = sys.argv[1]
if mode == "raise":
    raise RuntimeError("boom")
if mode == "exit3":
    sys.exit(3)
if mode == "raise_exit4":
    raise SystemExit(4)
if mode == "imported_exit5":
    exit(5)
if mode == "caught_exit":
    try:
        raise SystemExit(6)
    except SystemExit:
        pass
if mode == "interrupt":
    raise KeyboardInterrupt
if mode == "sigterm":
    os.kill(os.getpid(), signal.SIGTERM)
    import time
    time.sleep(30)
"""


def test_outcomes_are_recorded(studio_home: Path, tmp_path: Path, wb: ExperimentRepository) -> None:
    script = write(tmp_path / "outcomes.py", OUTCOMES)
    modes = {"ok": 0, "raise": 1, "exit3": 3, "raise_exit4": 4, "imported_exit5": 5, "caught_exit": 0,
             "interrupt": 1, "sigterm": -signal.SIGTERM}
    tags = {}
    names = list(modes)
    for batch in (names[:4], names[4:]):  # four at a time: a loaded machine's SQLite stays responsive
        procs = {mode: python(script, mode) for mode in batch}
        for mode, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == modes[mode], (mode, err)
            assert TAG.search(out), (mode, out, err)
            tags[mode] = tag_of(out)
    expected = {
        "ok": ("finished", None),
        "raise": ("failed", "uncaught RuntimeError: boom"),
        "exit3": ("failed", "exit code 3"),
        "raise_exit4": ("failed", "exit code 4"),
        "imported_exit5": ("failed", "exit code 5"),
        "caught_exit": ("finished", None),
        "interrupt": ("stopped", "interrupted (KeyboardInterrupt)"),
        "sigterm": ("killed", "received SIGTERM"),
    }
    for mode, (status, reason) in expected.items():
        record = wb[tags[mode]].record
        assert (record.status.value, record.status_reason) == (status, reason), mode
        # Rows still pending (save_every=1000) were flushed and captured on the way out.
        assert len(wb[tags[mode]]["log.csv"]) == 100, mode


ATTACHED = """
from studio import workbook, fs_tracker
exp = workbook.new_experiment(project="ignored", params={"extra": 1})
assert exp.tag == fs_tracker.get_experiment_key()
exp.save_json("options", {"a": 1})
log = exp.time_series_log("loss", ["step", "loss"])
for i in range(20):
    log(step=i, loss=(i - 12) ** 2)
print("owned", exp.owned)
"""


def test_under_studio_run(studio_home: Path, tmp_path: Path, wb: ExperimentRepository) -> None:
    write(tmp_path / "ws" / "train.py", ATTACHED)
    proc = studio(
        "run", "--metric", "loss:min", "-e", "attached-1", "train.py", cwd=tmp_path / "ws"
    )
    assert proc.returncode == 0, proc.stderr
    assert "attached to experiment attached-1" in proc.stdout and "owned False" in proc.stdout
    shown = studio_json("runs", "show", "attached-1")
    assert shown["status"] == "finished" and shown["metric_value"] == 0.0
    assert shown["params"] == {"extra": 1} and shown["project"] == "default"
    e = wb["attached-1"]
    assert e.list_artifacts()[:2] == ["loss.csv", "options.json"]
    assert {"output", "workspace", "metrics"} <= set(e.list_artifacts())
    assert e["loss.csv"]["loss"].tolist()[12] == 0
    assert "attached to experiment attached-1" in e["output"]


LIVE = """
import sys, time
from studio import workbook
exp = workbook.new_experiment(project="live", capture_interval=0.3)
log = exp.time_series_log("log", ["step", "loss", "note"])
i = 0
while True:
    log(i, 1.0 / (i + 1), "x" * (i % 7))
    i += 1
    time.sleep(0.01)
"""


def test_live_monitoring_then_killed_midwrite(
    fast_lease: Path, tmp_path: Path, wb: ExperimentRepository
) -> None:
    proc = python(write(tmp_path / "live.py", LIVE))
    try:
        tag = read_tag(proc)
        e = wb[tag]
        seen = []
        deadline = time.monotonic() + 60
        while len(seen) < 3 and time.monotonic() < deadline:
            try:
                n = len(e["log.csv"])
            except NotFoundError:  # its first rows are not flushed yet
                n = 0
            if n and (not seen or n > seen[-1]):
                seen.append(n)
            time.sleep(0.15)
        assert len(seen) == 3 and seen[0] < seen[1] < seen[2]  # re-reading shows the newest rows
        assert e.status == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    live = Path(wb[tag].record.artifacts["workbook"].local_path or "") / "log.csv"
    text = live.read_text()
    complete = text[: text.rfind("\n") + 1].splitlines()
    assert all(len(line.split(",")) == 4 for line in complete)  # nothing torn mid-row
    deadline = time.monotonic() + 30
    while wb[tag].status != "lost" and time.monotonic() < deadline:
        time.sleep(0.3)
    record = wb[tag].record
    assert record.status.value == "lost" and "heartbeat" in (record.status_reason or "")
    stored = wb[tag]["log.csv"]  # now from the last stored capture
    assert 0 < len(stored) <= len(complete) - 1
    assert list(stored.index) == list(range(len(stored)))


PARENT = """
import subprocess, sys
from studio import workbook
exp = workbook.new_experiment(project="two")
log = exp.time_series_log("shared", ["writer", "i"], save_every=3)
child = subprocess.Popen([sys.executable, "child.py"])
for i in range(1500):
    log("parent", i)
assert child.wait() == 0
"""
CHILD = """
from studio import workbook
exp = workbook.new_experiment()
print("child owned", exp.owned, flush=True)
log = exp.time_series_log("shared", ["writer", "i"], save_every=5)
for i in range(1500):
    log("child", i)
exp.save_json("child", {"done": True})
"""


def test_two_processes_one_series_and_stop(
    fast_heartbeat: Path, tmp_path: Path, wb: ExperimentRepository
) -> None:
    write(tmp_path / "child.py", CHILD)
    parent = python(write(tmp_path / "parent.py", PARENT))
    sleeper = python(write(tmp_path / "sleeper.py", LIVE))
    try:
        stop_tag = read_tag(sleeper)
        out, err = parent.communicate(timeout=120)
        assert parent.returncode == 0, err
        assert "child owned False" in out
        tag = tag_of(out)
        assert wb[tag].status == "finished" and wb[tag]["child.json"] == {"done": True}
        df = wb[tag]["shared.csv"].reset_index()
        assert len(df) == 3000
        for who in ("parent", "child"):
            assert df.loc[df["writer"] == who, "i"].tolist() == list(range(1500))
        with Context.from_env() as ctx:  # `studio runs stop` on a plain script
            ctx.meta.request_stop(stop_tag)
        _, err = sleeper.communicate(timeout=60)
        assert "stop requested" in err
        record = wb[stop_tag].record
        assert (record.status.value, record.status_reason) == ("stopped", "stop requested")
    finally:
        for p in (parent, sleeper):
            if p.poll() is None:
                p.kill()
                p.communicate()


def test_interactive_session_without_script(
    studio_home: Path, tmp_path: Path, wb: ExperimentRepository
) -> None:
    code = "from studio import workbook; e = workbook.new_experiment(name='inter-1'); e.save_json('x', 1)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env(), capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    e = wb["inter-1"]
    assert e.record.script == "-c" and e["x.json"] == 1 and "workspace" not in e.list_artifacts()
    assert isinstance(wb.runs(), pd.DataFrame)
