"""Leases are judged by the server's clock: clients whose clocks are an hour off (the client
processes run with a patched `time.time`, like libfaketime) neither requeue a healthy run nor
lose their own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from studio.meta import open_meta_store
from tests.e2e.helpers import studio, studio_env
from tests.e2e.test_team_server import add_user, start_server

FAKE_CLOCK = """
import os, time
_offset = float(os.environ.get("FAKE_CLOCK_OFFSET") or 0)
if _offset:
    _real_time, _real_time_ns = time.time, time.time_ns
    time.time = lambda: _real_time() + _offset
    time.time_ns = lambda: _real_time_ns() + int(_offset * 1e9)
"""


def test_skewed_client_clocks_cannot_requeue_or_lose_runs(tmp_path: Path) -> None:
    server_home = tmp_path / "server-home"
    server_home.mkdir()
    tokens = {"alice": add_user(server_home, "alice"), "gpu": add_user(server_home, "gpu", "--worker")}
    url, server, _ = start_server(server_home)
    try:
        skewed_clients(tmp_path, url, tokens, f"sqlite:///{server_home / 'studio.db'}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_skewed_clocks_sharing_a_postgresql_database_cannot_requeue_or_lose_runs(
    tmp_path: Path, postgres_url: str
) -> None:
    """No server in between: every machine talks to PostgreSQL, whose clock judges the leases."""
    skewed_clients(tmp_path, postgres_url, {}, postgres_url)


def skewed_clients(tmp_path: Path, url: str, tokens: dict[str, str], store_url: str) -> None:
    fake = tmp_path / "fakeclock"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text(FAKE_CLOCK)
    storage = str(tmp_path / "objects")

    def env(name: str, offset: float = 0.0) -> dict[str, str]:
        return {
            "STUDIOML_HOME": str(tmp_path / f"home-{name}-{offset:g}"), "STUDIOML_DATABASE_URL": url,
            **({"STUDIOML_API_TOKEN": tokens[name]} if tokens else {}), "STUDIOML_STORAGE_URL": storage,
            "FAKE_CLOCK_OFFSET": str(offset),
            "PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]),
        }

    check = subprocess.run([sys.executable, "-c", "import time; print(time.time())"], env=studio_env(env("alice", 3600)),
                           capture_output=True, text=True, check=True)
    assert float(check.stdout) > time.time() + 3000  # the fake clock works in child processes
    store = open_meta_store(store_url)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text("import time\ntime.sleep(6)\nprint('done')\n")
    worker = None
    try:
        assert studio("run", "-e", "healthy", "--queue", "q", "train.py", cwd=ws, env=env("alice")).returncode == 0
        worker = subprocess.Popen(
            [sys.executable, "-m", "studio", "worker", "--queue", "q", "--single-run"], cwd=tmp_path,
            env=studio_env(env("gpu")), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while store.get_experiment("healthy").status.value != "running":
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.2)
        # A machine whose clock runs an hour fast lists runs (which sweeps lapsed leases).
        for _ in range(2):
            proc = studio("runs", "list", "all", env=env("alice", 3600))
            assert proc.returncode == 0, proc.stderr
            assert store.get_experiment("healthy").status.value == "running"
        # A machine whose clock runs an hour slow runs a script directly, while another
        # machine sweeps leases all along.
        slow = subprocess.Popen(
            [sys.executable, "-m", "studio", "run", "-e", "slow", "train.py"], cwd=ws,
            env=studio_env(env("alice", -3600)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        while slow.poll() is None:
            assert studio("runs", "list", "all", env=env("alice", 3600)).returncode == 0
            time.sleep(0.5)
        out, err = slow.communicate()
        assert slow.returncode == 0 and "done" in out, err
        assert worker.wait(timeout=60) == 0
        # Queued by the slow machine with a lifetime of 10 minutes: judged by when the server
        # received it, not an hour before, so a sweep does not discard it.
        proc = studio("run", "-e", "waiting", "--queue", "later", "--lifetime", "10m", "train.py", cwd=ws,
                      env=env("alice", -3600))
        assert proc.returncode == 0, proc.stderr
        assert studio("runs", "list", "all", env=env("alice", 3600)).returncode == 0
        assert store.get_experiment("waiting").status.value == "queued"
        for key in ("healthy", "slow"):
            exp = store.get_experiment(key)
            assert (exp.status.value, exp.attempts) == ("finished", 1), (key, exp.status_reason)
        slow_exp = store.get_experiment("slow")
        # Its times were moved to the server's (the database's) clock.
        assert abs(slow_exp.time_added - time.time()) < 600
        assert slow_exp.time_started is not None and abs(slow_exp.time_started - time.time()) < 600
    finally:
        store.close()
        if worker is not None and worker.poll() is None:
            worker.kill()
