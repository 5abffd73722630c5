"""End to end: runs end, whatever happens to them, and lose nothing (issue 13, items 7-14)."""

from __future__ import annotations

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


# -- item 7, 8: preparation is complete or leaves nothing; --capture of files and of data -------


def test_capture_of_a_file_runs_locally_and_on_a_worker_with_its_data(studio_home: Path, tmp_path: Path) -> None:
    data_file = write(tmp_path / "data" / "settings.txt", "lr=0.5\n")
    data_dir = tmp_path / "weights"
    write(data_dir / "w0.bin", "existing weights")
    script = write(
        tmp_path / "ws" / "read.py",
        """
        from studio import fs_tracker
        import os
        f = fs_tracker.get_artifact("cfg")
        print("file:", open(f).read().strip(), flush=True)
        d = fs_tracker.get_artifact("w")
        print("dir:", sorted(os.listdir(d)), open(os.path.join(d, "w0.bin")).read(), flush=True)
        """,
    )
    args = ("--capture", f"{data_file}:cfg", "--capture", f"{data_dir}:w", "read.py")
    proc = studio("run", "-e", "file1", *args, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr
    assert "file: lr=0.5" in proc.stdout and "existing weights" in proc.stdout
    shown = studio_json("runs", "show", "file1")
    assert shown["status"] == "finished" and shown["artifacts"]["cfg"]["files"] == 1
    # Queued: the data is stored with the experiment and arrives on the worker, a file as a file.
    studio("run", "--queue", "fq", "-e", "file2", *args, cwd=script.parent, check=True)
    studio("worker", "--queue", "fq", "--single-run", cwd=tmp_path, check=True, timeout=180)
    shown = studio_json("runs", "show", "file2")
    assert shown["status"] == "finished", shown
    output = studio("runs", "logs", "file2", check=True).stdout
    assert "file: lr=0.5" in output and "existing weights" in output


def test_a_capture_that_cannot_be_made_leaves_no_experiment(studio_home: Path, tmp_path: Path) -> None:
    script = write(tmp_path / "ws" / "ok.py", "print('ok')\n")
    blocker = write(tmp_path / "blocker", "a file where a folder would have to be")
    for extra in ((), ("--queue", "bq")):
        proc = studio("run", *extra, "--capture", f"{blocker}/sub:x", "ok.py", cwd=script.parent)
        assert proc.returncode != 0 and "--capture" in proc.stderr and "Traceback" not in proc.stderr
    assert studio_json("runs", "list", "all") == []


def test_a_supervisor_killed_while_starting_leaves_a_lost_run_not_a_queued_one(
    studio_home: Path, tmp_path: Path
) -> None:
    write(studio_home / "config.yaml", "worker:\n  lease: 1\n  heartbeat: 0.3\n")
    script = write(tmp_path / "ws" / "ok.py", "import time\ntime.sleep(5)\n")
    for i in range(3):
        proc = popen_studio("run", "-e", f"k{i}", "ok.py", cwd=script.parent)
        assert proc.stderr is not None and "studio: experiment" in proc.stderr.readline()
        proc.kill()
        proc.wait()
    time.sleep(1.5)
    statuses = {r["key"]: r["status"] for r in studio_json("runs", "list", "all")}
    assert statuses == {"k0": "lost", "k1": "lost", "k2": "lost"}


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGTERM, "killed"), (signal.SIGINT, "stopped"), (signal.SIGHUP, "killed")]
)
def test_a_signal_while_starting_records_what_it_asked_for(
    studio_home: Path, tmp_path: Path, sig: int, status: str
) -> None:
    script = write(tmp_path / "ws" / "ok.py", "import time\ntime.sleep(30)\n")
    proc = popen_studio("run", "-e", "sig1", "ok.py", cwd=script.parent)
    assert proc.stderr is not None and "studio: experiment" in proc.stderr.readline()
    proc.send_signal(sig)
    assert proc.wait(30) == 128 + sig
    data = studio_json("runs", "show", "sig1")
    assert data["status"] == status, data


def test_stop_works_where_sigint_was_ignored_as_in_a_background_job(studio_home: Path, tmp_path: Path) -> None:
    """A shell's background job (`studio run ... &`, nohup) starts with SIGINT ignored; the
    script must still get studio's stop request (a SIGINT), not finish and exit 0."""
    write(studio_home / "config.yaml", "worker:\n  heartbeat: 0.3\n")
    script = write(
        tmp_path / "ws" / "loop.py",
        """
        import time
        print("up", flush=True)
        for _ in range(80):
            time.sleep(0.1)
        print("ran to the end", flush=True)
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "run", "-e", "bg1", "loop.py"], cwd=script.parent,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.stdout is not None and "up" in proc.stdout.readline()
    studio("runs", "stop", "bg1", check=True)
    out, _ = proc.communicate(timeout=60)
    assert "ran to the end" not in out
    data = studio_json("runs", "show", "bg1")
    assert data["status"] == "stopped" and data["returncode"] != 0, data


# -- item 9: a full disk --------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a filesystem needs root")
def test_a_full_disk_is_survived_and_recorded(studio_home: Path, tmp_path: Path, full_disk: Path) -> None:
    script = write(
        tmp_path / "ws" / "big.py",
        """
        for i in range(60000):
            print("x" * 100, i)
        print("the end", flush=True)
        """,
    )
    env = {"STUDIOML_HOME": str(full_disk / "home"),
           "STUDIOML_DATABASE_URL": f"sqlite:///{tmp_path / 'studio.db'}"}
    t0 = time.monotonic()
    proc = studio("run", "-e", "full1", "big.py", cwd=script.parent, env=env, timeout=120)
    assert time.monotonic() - t0 < 90  # the script was never left blocked on a full pipe
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    data = studio_json("runs", "show", "full1", env=env)
    assert data["status"] == "failed" and data["returncode"] == 0
    assert "No space left on device" in data["status_reason"] and "not all was saved" in data["status_reason"]
    assert "the end" in studio("runs", "logs", "full1", env=env, check=True).stdout  # the store has it all


# -- items 11, 14: a lost run keeps what it logged, and shows `lost` without anyone asking ---------

LOGS_THEN_HANGS = """
    import time
    import studio
    from studio.tracking import metrics
    for step, loss in enumerate([3.0, 0.5, 2.0]):
        studio.log(step=step, loss=loss)
    metrics.flush()
    print("logged", flush=True)
    time.sleep(300)
"""


def test_a_lost_local_run_keeps_its_metrics(studio_home: Path, tmp_path: Path) -> None:
    write(studio_home / "config.yaml", "worker:\n  lease: 1\n  heartbeat: 0.3\n")
    script = write(tmp_path / "ws" / "logs.py", LOGS_THEN_HANGS)
    proc = popen_studio("run", "-e", "lost1", "--metric", "loss:min", "logs.py", cwd=script.parent)
    assert proc.stdout is not None and "logged" in proc.stdout.readline()
    proc.kill()
    proc.wait()
    time.sleep(1.5)
    data = studio_json("runs", "show", "lost1")
    assert data["status"] == "lost"
    assert data["metrics"]["loss"]["count"] == 3 and data["metrics"]["loss"]["min"] == 0.5
    assert data["metric_value"] == 0.5
    assert data["artifacts"]["metrics"]["files"] >= 1  # and a stored copy
    rows = studio_json("runs", "list", "all")
    assert rows[0]["metric_value"] == 0.5
    dest = tmp_path / "got"
    studio("artifacts", "get", "lost1", "metrics", str(dest), check=True)
    assert any(dest.iterdir())


def test_a_dashboard_that_is_up_notices_a_lost_run_and_keeps_its_metrics(
    studio_home: Path, tmp_path: Path
) -> None:
    write(studio_home / "config.yaml", "worker:\n  lease: 1\n  heartbeat: 0.3\n")
    script = write(tmp_path / "ws" / "logs.py", LOGS_THEN_HANGS)
    db = studio_home / "studio.db"
    ui = popen_studio("ui", "--port", "0", cwd=tmp_path)
    try:
        proc = popen_studio("run", "-e", "lost2", "logs.py", cwd=script.parent)
        assert proc.stdout is not None and "logged" in proc.stdout.readline()
        proc.kill()
        proc.wait()

        def status() -> str:
            with sqlite3.connect(db) as conn:  # read the database itself: no studio command runs
                return str(conn.execute("select status from experiments where key='lost2'").fetchone()[0])

        def summarized() -> bool:
            with sqlite3.connect(db) as conn:
                return conn.execute("select name from metric_summaries where experiment_key='lost2'").fetchall() \
                    == [("loss",)]

        assert wait_until(lambda: status() == "lost", 20)
        assert wait_until(summarized, 10)
    finally:
        ui.terminate()
        ui.wait(30)


def test_a_busy_worker_notices_a_lost_run(studio_home: Path, tmp_path: Path) -> None:
    write(studio_home / "config.yaml", "worker:\n  lease: 1\n  heartbeat: 0.3\n")
    script = write(tmp_path / "ws" / "logs.py", LOGS_THEN_HANGS)
    db = studio_home / "studio.db"
    studio("run", "--queue", "busy", "-e", "longrun", "logs.py", cwd=script.parent, check=True)
    worker = popen_studio("worker", "--queue", "busy", "--single-run", cwd=tmp_path)
    try:
        def status(key: str) -> str | None:
            with sqlite3.connect(db) as conn:
                row = conn.execute("select status from experiments where key=?", (key,)).fetchone()
                return None if row is None else str(row[0])

        assert wait_until(lambda: status("longrun") == "running", 60)
        proc = popen_studio("run", "-e", "lost3", "logs.py", cwd=script.parent)
        assert proc.stdout is not None and "logged" in proc.stdout.readline()
        proc.kill()
        proc.wait()
        assert wait_until(lambda: status("lost3") == "lost", 20)
    finally:
        worker.terminate()
        worker.wait(60)


def test_a_hangup_while_running_is_recorded_killed(studio_home: Path, tmp_path: Path) -> None:
    """The terminal of `studio run ... &` closing (SIGHUP): recorded, not left to go `lost`."""
    script = write(tmp_path / "ws" / "loop.py", "import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    proc = popen_studio("run", "-e", "hup1", "loop.py", cwd=script.parent)
    assert proc.stdout is not None and "up" in proc.stdout.readline()
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(60) == 128 + signal.SIGTERM  # the script is asked to end as by SIGTERM
    data = studio_json("runs", "show", "hup1")
    assert data["status"] == "killed" and "SIGHUP" in data["status_reason"], data


def test_a_lost_worker_run_keeps_its_metrics(studio_home: Path, tmp_path: Path) -> None:
    write(studio_home / "config.yaml", "worker:\n  lease: 1\n  heartbeat: 0.3\n  max_attempts: 1\n")
    script = write(tmp_path / "ws" / "logs.py", LOGS_THEN_HANGS)
    studio("run", "--queue", "wq", "-e", "wlost", "--metric", "loss:min", "logs.py", cwd=script.parent,
           check=True)
    worker = popen_studio("worker", "--queue", "wq", "--single-run", cwd=tmp_path)
    try:
        assert wait_until(lambda: any((studio_home / "workers").glob("*/wlost/metrics/*")), 60)
        time.sleep(0.5)  # the script flushes, then prints: let it get there
    finally:
        worker.kill()
        worker.wait()
    time.sleep(1.5)
    data = studio_json("runs", "show", "wlost")
    assert data["status"] == "lost"
    assert data["metrics"]["loss"]["count"] == 3 and data["metric_value"] == 0.5
    assert data["artifacts"]["metrics"]["files"] >= 1
    assert not list((studio_home / "workers").glob("*/wlost"))  # stored, then removed
