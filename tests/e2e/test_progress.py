"""Progress on a terminal, and none of it when piped: a worker's environment build and artifact
transfers, a sweep's trials. The real `studio` command on a pseudo-terminal (python's pty)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from studio.api.context import Context
from studio.config import load_settings
from tests.e2e.helpers import on_terminal, studio, studio_env
from tests.integration.test_queue_env import build_wheel

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ELAPSED = re.compile(r"\d:\d\d:\d\d")  # rich's elapsed/remaining columns
BIG = 2 << 20  # bars and lines are for transfers of 1 MiB and more

SCRIPT = """\
import os
with open("result.bin", "wb") as f:  # the workspace is captured back: a 2 MiB upload
    f.write(os.urandom(2 << 20))
print("done")
"""


def _submit(work: Path, env: dict[str, str]) -> str:
    work.mkdir(parents=True, exist_ok=True)
    (work / "train.py").write_text(SCRIPT)
    (work / "data.bin").write_bytes(os.urandom(BIG))  # a 2 MiB download for the worker
    proc = studio("run", "--queue", "q", "--python-pkg", "studiotinypkg", "train.py", cwd=work, env=env, check=True)
    return proc.stdout.strip().splitlines()[-1]


def _offline(tmp_path: Path) -> dict[str, str]:
    wheels = tmp_path / "wheels"
    build_wheel(wheels)
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}


def _status(key: str) -> str:
    ctx = Context(load_settings())
    try:
        return ctx.meta.get_experiment(key).status.value
    finally:
        ctx.close()


def test_worker_on_a_terminal_shows_its_environment_build_and_transfers(studio_home: Path, tmp_path: Path) -> None:
    env = _offline(tmp_path)
    key = _submit(tmp_path / "w", env)
    code, out = on_terminal(["worker", "--queue", "q", "--single-run"], env={**env, "TERM": "xterm"}, timeout=180)
    assert code == 0, out
    assert _status(key) == "finished"
    text = ANSI.sub("", out)
    assert "building Python environment: studiotinypkg" in text
    assert f"download {key}/workspace" in text
    assert f"upload {key}/workspace" in text
    assert ELAPSED.search(text)
    # On a terminal the bars replace the lines a worker in the background writes.
    assert "downloaded " not in text and "uploaded " not in text
    # `artifacts get` draws on the same display: a bar on a terminal, the path alone when piped.
    code, out = on_terminal(["artifacts", "get", key, "workspace", str(tmp_path / "got")], env={"TERM": "xterm"})
    assert code == 0, out
    assert f"{key}/workspace ━" in ANSI.sub("", out)
    assert (tmp_path / "got" / "data.bin").stat().st_size == BIG
    piped = studio("artifacts", "get", key, "workspace", str(tmp_path / "again"), check=True)
    assert piped.stdout.strip() == str(tmp_path / "again") and piped.stderr == ""


def test_worker_in_the_background_logs_one_line_per_transfer(studio_home: Path, tmp_path: Path) -> None:
    env = _offline(tmp_path)
    key = _submit(tmp_path / "w", env)
    proc = subprocess.run([sys.executable, "-m", "studio", "worker", "--queue", "q", "--single-run"],
                          env=studio_env(env), capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert _status(key) == "finished"
    err = proc.stderr
    assert "\x1b[" not in err and "\r" not in err and not ELAPSED.search(err)
    assert re.search(rf"studio: {key}: created Python environment \w+ in [\d.]+s with studiotinypkg", err), err
    assert re.search(rf"studio: downloaded {key}/workspace: \d+ file\(s\), 2\.\d MiB in [\d.]+s", err), err
    (uploaded,) = [line for line in err.splitlines() if f"uploaded {key}/workspace" in line]
    assert "1 new file(s)" in uploaded  # result.bin; data.bin was stored at submit
    assert "building Python environment" not in err


def test_quiet_worker_on_a_terminal_draws_nothing(studio_home: Path, tmp_path: Path) -> None:
    env = _offline(tmp_path)
    key = _submit(tmp_path / "w", env)
    code, out = on_terminal(["worker", "--queue", "q", "--single-run", "--quiet"], env={**env, "TERM": "xterm"},
                            timeout=180)
    assert code == 0, out
    assert _status(key) == "finished"
    assert "building Python environment" not in out and "download" not in out and not ELAPSED.search(out)


SWEEP = """\
x = 0.0
print("loss: {}".format((x - 1) ** 2))
"""


def test_sweep_shows_trials_done_and_the_best_on_a_terminal_only(studio_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    (work / "f.py").write_text(SWEEP)
    args = ["run", "-hp", "x=0:1:2", "--metric", "loss:min", "f.py"]
    code, out = on_terminal(args, cwd=work, env={"TERM": "xterm"}, timeout=240)
    assert code == 0, out
    text = ANSI.sub("", out)
    # The bar: trials done of 3 and the time elapsed, then the best so far in its description.
    assert re.search(r"sweep f\b.*\d/3 \d:\d\d:\d\d", text), text
    assert re.search(r"sweep f\b.*best loss 0 \(x=1\)", text), text
    assert "sweep f: 3/3 done, best loss 0 (x=1)" in text  # the closing line stays

    proc = studio(*args[:-1], "f.py", cwd=work, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stderr and not ELAPSED.search(proc.stderr)
    assert "sweep f-2: 3/3 done, best loss 0 (x=1)" in proc.stderr
