"""End to end: runs end, whatever happens to them, and lose nothing (issue 13, items 7-14)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import popen_studio, studio, studio_json


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(check, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


SPAWNER = """
    import os, subprocess, sys, time
    pids = sys.argv[1]
    def put(path, text):  # whole or not at all: the test reads these as they appear
        with open(path + ".tmp", "w") as fh:
            fh.write(text)
        os.replace(path + ".tmp", path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    if os.fork() == 0:  # a double-forked daemon in a session of its own
        os.setsid()
        if os.fork() == 0:
            put(pids + ".daemon", str(os.getpid()))
            time.sleep(300)
        os._exit(0)
    put(pids, f"{os.getpid()} {child.pid}")
    print("spawned", flush=True)
    time.sleep(300)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper is Linux-only")
@pytest.mark.parametrize("victim", ["supervisor", "worker"])
def test_nothing_the_script_started_survives_a_sigkilled_supervisor(
    studio_home: Path, tmp_path: Path, victim: str
) -> None:
    script = write(tmp_path / "ws" / "spawn.py", SPAWNER)
    pids = tmp_path / "pids"
    if victim == "supervisor":
        proc = popen_studio("run", "-e", "orphans", "spawn.py", str(pids), cwd=script.parent)
    else:
        studio("run", "--queue", "q", "-e", "orphans", "spawn.py", str(pids), cwd=script.parent, check=True)
        proc = popen_studio("worker", "--queue", "q", "--single-run", cwd=tmp_path)
    try:
        assert wait_until(lambda: pids.exists() and Path(str(pids) + ".daemon").exists())
        script_pid, child_pid = (int(p) for p in pids.read_text().split())
        daemon_pid = int(Path(str(pids) + ".daemon").read_text())
        assert alive(script_pid) and alive(child_pid) and alive(daemon_pid)
    finally:
        proc.kill()
        proc.wait()
    for pid in (script_pid, child_pid, daemon_pid):
        assert wait_until(lambda pid=pid: not alive(pid), 10), f"process {pid} outlived the run"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper is Linux-only")
def test_leftovers_of_a_finished_script_are_ended_and_the_exit_status_passes_through(
    studio_home: Path, tmp_path: Path
) -> None:
    script = write(
        tmp_path / "ws" / "leave.py",
        """
        import os, signal, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
        open(sys.argv[1], "w").write(str(child.pid))
        if sys.argv[2] == "signal":
            os.kill(os.getpid(), signal.SIGKILL)
        sys.exit(5)
        """,
    )
    pid_file = tmp_path / "pid"
    t0 = time.monotonic()
    proc = studio("run", "-e", "leave1", "leave.py", str(pid_file), "code", cwd=script.parent)
    assert proc.returncode == 5, proc.stderr
    assert time.monotonic() - t0 < 30
    assert wait_until(lambda: not alive(int(pid_file.read_text())), 10)
    proc = studio("run", "-e", "leave2", "leave.py", str(pid_file), "signal", cwd=script.parent)
    assert proc.returncode == 128 + 9
    data = studio_json("runs", "show", "leave2")
    assert data["status"] == "killed" and data["returncode"] == -9 and "SIGKILL" in data["status_reason"]
