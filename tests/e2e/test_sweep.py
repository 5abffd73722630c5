"""End to end: hyperparameter sweeps through the real `studio` command (SQLite + local store)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import studio, studio_json

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sweep"

TRAIN = """\
import sys
import time
import studio
lr = 0.01
epochs = int(sys.argv[1])
print("params", studio.params())
loss = 1.0
for epoch in range(epochs):
    loss = loss * (1 - 10 * lr)
    print("val_loss: {}".format(loss), flush=True)
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def config(home: Path, text: str) -> None:
    write(home / "config.yaml", text)


def project_rows(project: str, *extra: str) -> list[dict]:
    return studio_json("runs", "list", "project", project, *extra)


def output(key: str) -> str:
    return studio("runs", "logs", key, check=True).stdout


def test_seed_grid_command(studio_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    write(work / "train.py", TRAIN)
    proc = studio(
        "run",
        "--hyperparam=lr=0.01:0.01:0.03",
        "--metric=val_loss:min",
        "--num-workers",
        "2",
        "train.py",
        "30",
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sweep train: 3/3 done" in proc.stderr and "best val_loss" in proc.stderr
    assert "ranked by val_loss:min" in proc.stdout
    rows = project_rows("train", "--sort", "metric_value")
    assert len(rows) == 3 and {r["status"] for r in rows} == {"finished"}
    assert [r["params"]["lr"] for r in rows] == [0.03, 0.02, 0.01]  # best (lowest) first
    for r in rows:
        expected = (1 - 10 * r["params"]["lr"]) ** 30
        assert r["metric"] == "val_loss:min"
        assert r["metric_value"] == pytest.approx(expected, rel=1e-6)
        text = output(r["key"])
        assert f"params {{'lr': {r['params']['lr']}}}" in text  # studio.params()
    values = [r["metric_value"] for r in rows]
    assert values == sorted(values)
    show = studio_json("sweep", "show", "train")
    assert show["finished"] and [t["status"] for t in show["trials"]] == ["finished"] * 3
    # The submitter's script is untouched: substitution happened in the workers' copies.
    assert (work / "train.py").read_text() == TRAIN


def test_upstream_substitution(studio_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    write(work / "script.py", "learning_rate = 0.3\nprint(learning_rate)\n")
    proc = studio("run", "-hp", "learning_rate=0.4", "script.py", cwd=work)
    assert proc.returncode == 0, proc.stderr
    (row,) = project_rows("script")
    assert row["params"] == {"learning_rate": 0.4}
    assert output(row["key"]).strip().splitlines()[-1] == "0.4"


def test_example_and_second_sweep_gets_its_own_project(studio_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "sweep"
    work.mkdir()
    (work / "train.py").write_text((EXAMPLES / "train.py").read_text())
    for _ in range(2):
        proc = studio(
            "run",
            "-hp",
            "lr=0.05,0.1",
            "--metric=val_loss:min",
            "--num-workers",
            "2",
            "train.py",
            "5",
            cwd=work,
        )
        assert proc.returncode == 0, proc.stderr
    names = {p["name"] for p in studio_json("runs", "list", "projects")}
    assert {"train", "train-2"} <= names
    rows = project_rows("train", "--sort", "metric_value")
    assert [r["params"]["lr"] for r in rows] == [0.1, 0.05]
    assert "learning rate = 0.1, l2 = 0.0" in output(rows[0]["key"])
    show = studio_json("runs", "show", rows[0]["key"])
    assert "val_loss" in show["metrics"] and "train_loss" in show["metrics"]  # TensorBoard scalars


@pytest.mark.parametrize("optimizer", ["random", "tpe", "plugin"])
def test_optimizer_sweeps_with_array_params(
    studio_home: Path, tmp_path: Path, optimizer: str
) -> None:
    work = tmp_path / "w"
    write(work / "rosen.py", (EXAMPLES / "rosenbrock.py").read_text())
    config(studio_home, "optimizer:\n  popsize: 2\n  generations: 2\n  seed: 3\n")
    name = str(EXAMPLES / "random_plugin.py") if optimizer == "plugin" else optimizer
    proc = studio(
        "run", "--optimizer", name, "-hp", "x=-2:2:3:a", "--num-workers", "2", "rosen.py", cwd=work
    )
    assert proc.returncode == 0, proc.stderr
    assert "ranked by fitness (higher is better)" in proc.stdout
    rows = project_rows("rosen")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"finished"}
    for r in rows:
        x = r["params"]["x"]
        assert len(x) == 3 and all(-2 <= v <= 2 for v in x)
        rosen = sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(2))
        assert r["metric"] == "fitness" and r["metric_value"] == pytest.approx(-rosen, rel=1e-6)
    show = studio_json("sweep", "show", "rosen")
    assert show["generation"] == 2 and show["finished"]
    fitness = [t["value"] for t in show["trials"]]
    assert fitness == sorted(fitness, reverse=True)


def test_pruned_trial(studio_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    write(
        work / "slow.py",
        """\
        import time
        lr = 0.5
        loss = 1.0
        for step in range(40):
            loss = loss * (1 - lr)
            print(f"val_loss: {loss}", flush=True)
            time.sleep(0.1 if lr > 0.1 else 0.2)
        """,
    )
    config(studio_home, "worker:\n  heartbeat: 0.3\noptimizer:\n  pruner_startup_trials: 1\n")
    proc = studio(
        "run",
        "-hp",
        "lr=0.5,0.01",
        "--metric=val_loss:min",
        "--pruner",
        "median",
        "slow.py",
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["params"]["lr"]: r for r in project_rows("slow")}
    assert rows[0.5]["status"] == "finished"
    assert rows[0.01]["status"] == "pruned"
    show = studio_json("runs", "show", rows[0.01]["key"])
    assert show["status_reason"].startswith("pruned by the median pruner at step")
    assert show["duration"] < 6  # 40 steps would take 8 s
    assert "pruned" in proc.stderr


def test_resume_after_interrupt(studio_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    write(
        work / "slow.py",
        """\
        import time
        lr = 0.1
        for step in range(8):
            value = 1 - lr
            print(f"val_loss: {value}", flush=True)
            time.sleep(0.25)
        """,
    )
    config(studio_home, "worker:\n  heartbeat: 0.3\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "studio",
            "run",
            "-hp",
            "lr=0.1,0.2,0.3",
            "--metric=val_loss:min",
            "slow.py",
        ],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = project_rows("slow") if (studio_home / "studio.db").exists() else []
        if any(r["status"] == "finished" for r in rows):
            break
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C on the terminal: driver, workers and scripts
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "studio sweep resume slow" in err
    state = studio_json("sweep", "show", "slow")
    assert not state["finished"]
    assert [t["status"] for t in state["trials"]].count("finished") >= 1

    # Resumed on "another machine": its own home, the same database and object store.
    assert not (studio_home / "sweeps").exists()  # the checkpoint is in the database
    other = {
        "STUDIOML_HOME": str(tmp_path / "machine2"),
        "STUDIOML_DATABASE_URL": f"sqlite:///{studio_home / 'studio.db'}",
        "STUDIOML_STORAGE_URL": str(studio_home / "objects"),
    }
    (tmp_path / "machine2").mkdir()
    (tmp_path / "machine2" / "config.yaml").write_text((studio_home / "config.yaml").read_text())
    resumed = studio("sweep", "resume", "slow", "--num-workers", "2", cwd=tmp_path, env=other)
    assert resumed.returncode == 0, resumed.stderr
    state = studio_json("sweep", "show", "slow")
    assert state["finished"] and len(state["trials"]) == 3
    assert {t["status"] for t in state["trials"]} == {"finished"}
    assert [t["value"] for t in state["trials"]] == pytest.approx([0.7, 0.8, 0.9])
    all_rows = project_rows("slow")
    assert len(all_rows) >= 3 and {"stopped", "finished"} >= {r["status"] for r in all_rows}
    again = studio("sweep", "resume", "slow", cwd=work)
    assert again.returncode == 0 and "nothing to resume" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-hp", "lr="], "no values after 'lr='"),
        (["-hp", "lr=1:0:2"], "step is 0"),
        (["-hp", "lr=a:b"], "is not a number"),
        (["-hp", "lr=0:4l:1"], "log range needs both ends greater than 0"),
        (["-hp", "n=0:200000"], "more than the limit of 100000"),
        (["-hp", "a=0:999", "-hp", "b=0:999"], "more than the limit of 100000"),
        (["-hp", "lr=0:1", "--optimizer", "nosuch"], "unknown optimizer 'nosuch'"),
        (["-hp", "lr=0:1", "--optimizer", "plugin.py"], "defines no optimizer"),
        (
            ["-hp", "lr=0:1:l", "--optimizer", "tpe"],
            "log range ('l' flag) needs min and max greater than 0",
        ),
        (["-hp", "lr=0.1", "--metric", "val_loss:median"], "unknown fold 'median'"),
        (
            ["-hp", "lr=0.1", "--optimizer", "tpe", "--config", "bad.yaml"],
            "unknown key `optimizer.popsiz`",
        ),
    ],
)
def test_bad_input_queues_nothing(
    studio_home: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    work = tmp_path / "w"
    write(work / "train.py", TRAIN)
    write(work / "plugin.py", "class Helper:\n    pass\n")
    write(work / "bad.yaml", "optimizer:\n  popsiz: 4\n")
    proc = studio("run", *args, "train.py", "3", cwd=work)
    assert proc.returncode == 194, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # one clear line, no traceback
    assert studio_json("runs", "list", "all") == []
    assert not (studio_home / "sweeps").exists() or not list((studio_home / "sweeps").iterdir())


def test_metric_that_never_appears_warns(studio_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    write(work / "train.py", TRAIN)
    proc = studio(
        "run",
        "-hp",
        "lr=0.01,0.02",
        "--metric=val_los:min",
        "--num-workers",
        "2",
        "train.py",
        "3",
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if "never appeared" in line]
    assert warning and "metric 'val_los'" in warning[0] and "val_loss" in warning[0]


def test_params_outside_a_sweep(studio_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    write(work / "p.py", "import json, studio\nprint(json.dumps(studio.params()))\n")
    proc = studio("run", "p.py", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}
