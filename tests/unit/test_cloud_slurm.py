"""The sbatch command line a Slurm launch builds (no cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.cloud import provisioner
from studio.cloud.base import WorkerRequest
from studio.config import load_settings
from studio.exceptions import UsageError


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "squeue", "scancel"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return provisioner("slurm", load_settings(environ={"STUDIOML_HOME": str(tmp_path / "home")}))


def test_sbatch_line(backend) -> None:  # type: ignore[no-untyped-def]
    req = WorkerRequest(queue="gpu", count=6, resources={"cpus": 4, "gpus": 1, "ram": 3 * 2**30 + 1},
                        idle_timeout=120, options={"partition": "p100", "time": "2:00:00", "max_running": 2,
                                                   "token_from": "file:/run/secrets/studio"})
    argv = backend.sbatch_argv(req)
    assert argv[0].endswith("/sbatch")
    assert "--array=0-5%2" in argv and "--job-name=studio-worker.gpu" in argv
    assert "--partition=p100" in argv and "--time=2:00:00" in argv
    assert "--cpus-per-task=4" in argv and "--mem=3073M" in argv and "--gres=gpu:1" in argv
    wrap = argv[-1]
    assert wrap.startswith("--wrap=exec ") and "-m studio worker --queue gpu" in wrap
    assert "--timeout 120s" in wrap and "--token-from file:/run/secrets/studio" in wrap
    assert "--cpus 4 --gpus 1" in wrap


def test_explicit_gres_and_single_run(backend) -> None:  # type: ignore[no-untyped-def]
    argv = backend.sbatch_argv(WorkerRequest(queue="q", count=1, resources={"gpus": 2}, single_run=True,
                                             idle_timeout=None, options={"gres": "gpu:a100:2"}))
    assert "--gres=gpu:a100:2" in argv and "--gres=gpu:2" not in argv
    assert "--single-run" in argv[-1] and "--timeout" not in argv[-1]


def test_count_must_be_positive(backend) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError):
        backend.sbatch_argv(WorkerRequest(queue="q", count=0))
