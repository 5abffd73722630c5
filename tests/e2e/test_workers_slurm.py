"""End to end: `studio workers launch --slurm` against a real slurmctld/slurmd on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path

from studio.exceptions import StudioError, UsageError
from tests.e2e.helpers import popen_studio, studio, studio_json
from tests.fixtures.slurm import SlurmCluster

TRAIN = """\
import time
x = 0
loss = (x - 7) ** 2
time.sleep(0.2)
print("loss: {}".format(loss), flush=True)
"""


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_array_of_workers_drains_a_20_experiment_sweep(studio_home: Path, tmp_path: Path,
                                                        slurm_cluster: SlurmCluster) -> None:
    env = slurm_cluster.env
    work = tmp_path / "w"
    work.mkdir()
    (work / "train.py").write_text(TRAIN)
    sweep = popen_studio("run", "--queue", "slurmq", "-hp", "x=1:20", "--metric", "loss:min", "train.py",
                         cwd=work, env=env)
    try:
        _wait(lambda: len(studio_json("queue", "show", "slurmq", env=env)) == 20
              if studio("queue", "show", "slurmq", env=env).returncode == 0 else False, 120, "20 queued")
        launched = studio_json("workers", "launch", "--slurm", "--queue", "slurmq", "--count", "4",
                               "--partition", "debug", "--time", "10:00", "--timeout", "5s", env=env)
        assert launched["backend"] == "slurm" and launched["desired"] == 4
        listed = _wait(lambda: studio_json("workers", "list", "--queue", "slurmq", env=env), 30, "job listed")
        assert listed[0]["name"] == launched["name"] and listed[0]["queue"] == "slurmq"
        out, err = sweep.communicate(timeout=240)
        assert sweep.returncode == 0, err
    finally:
        if sweep.poll() is None:
            sweep.kill()
    rows = studio_json("queue", "show", "slurmq", env=env)
    assert [r["status"] for r in rows] == ["finished"] * 20
    workers = {r["worker"] for r in rows}
    assert len(workers) >= 2, workers  # the array's tasks shared the sweep
    # Each task ran `studio worker`, whose log Slurm wrote where the launcher asked.
    logs = sorted((studio_home / "workers" / "logs").glob(f"slurm-{launched['name']}_*.log"))
    assert len(logs) == 4
    # Idle workers exit after --timeout: the array leaves Slurm's queue on its own.
    _wait(lambda: studio_json("workers", "list", "--queue", "slurmq", env=env) == [], 60, "idle workers to exit")
    assert not [line for line in slurm_cluster.squeue() if "studio-worker.slurmq" in line]
    text = "".join(p.read_text() for p in logs)
    assert "exiting after" in text


def test_stop_cancels_and_hands_back(studio_home: Path, tmp_path: Path, slurm_cluster: SlurmCluster) -> None:
    env = slurm_cluster.env
    work = tmp_path / "w"
    work.mkdir()
    (work / "slow.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(600)\n")
    key = studio("run", "--queue", "stopq", "slow.py", cwd=work, env=env, check=True).stdout.strip()
    launched = studio_json("workers", "launch", "--slurm", "--queue", "stopq", "--single-run", env=env)
    assert launched["desired"] == 1
    _wait(lambda: studio_json("runs", "show", key, env=env)["status"] == "running", 120, "running")
    proc = studio("workers", "stop", "--queue", "stopq", env=env, check=True)
    assert launched["name"] in proc.stderr
    # scancel sends SIGTERM: the worker stops the script and hands the experiment back.
    _wait(lambda: studio_json("runs", "show", key, env=env)["status"] == "queued", 120, "handed back")
    _wait(lambda: studio_json("workers", "list", env=env) == [], 60, "job gone")
    assert studio("workers", "stop", "--queue", "stopq", env=env, check=True).stderr.startswith(
        "studio: no studio workers")


def test_bad_input(studio_home: Path, slurm_cluster: SlurmCluster) -> None:
    env = slurm_cluster.env
    proc = studio("workers", "stop", env=env)
    assert proc.returncode == UsageError.exit_code and "--queue Q, or --all" in proc.stderr
    proc = studio("workers", "launch", "--slurm", "--queue", "q", "--partition", "nosuch", env=env)
    assert proc.returncode == StudioError.exit_code
    assert proc.stderr.count("\n") == 1 and "sbatch failed" in proc.stderr
    assert studio_json("workers", "list", env=env) == []
    proc = studio("workers", "list", env={"PATH": "/nonexistent"})
    assert proc.returncode == UsageError.exit_code and "squeue not found" in proc.stderr
    assert json.loads(studio("queue", "list", "--json", env=env).stdout) == []


def test_another_users_worker_jobs_are_neither_listed_nor_cancelled(studio_home: Path, tmp_path: Path,
                                                                    slurm_cluster: SlurmCluster) -> None:
    import os
    import subprocess

    env = slurm_cluster.env
    other = subprocess.run(["sbatch", "--parsable", "--uid=nobody", "--gid=nogroup", "--job-name=studio-worker.theirs",
                            "--output=/dev/null", "--chdir=/tmp", "--wrap=sleep 120"],
                           env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout.strip()
    try:
        _wait(lambda: any(line.startswith(other) for line in slurm_cluster.squeue()), 30, "the other job")
        assert studio_json("workers", "list", env=env) == []
        proc = studio("workers", "stop", "--all", env=env, check=True)
        assert "no studio workers to stop" in proc.stderr
        state = subprocess.run(["scontrol", "show", "job", other], env={**os.environ, **env}, capture_output=True,
                               text=True).stdout
        assert "JobState=CANCELLED" not in state, state
    finally:
        subprocess.run(["scancel", other], env={**os.environ, **env}, check=False)
