"""End to end: a `studio ui` server as the metadata store of other machines (`http://`)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from studio.entities import Status
from studio.meta import open_meta_store
from tests.e2e.helpers import studio, studio_env

TOKEN = "e2e-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    home = tmp_path / "server-home"
    port = free_port()
    env = studio_env({"STUDIOML_HOME": str(home), "STUDIOML_SERVER_TOKEN": TOKEN})
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "ui", "--port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/api/status", timeout=1).status_code < 500:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"studio ui did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.1)
    yield url, home
    proc.terminate()
    proc.wait(timeout=30)


def test_runs_and_workers_record_through_the_server(server: tuple[str, Path], tmp_path: Path) -> None:
    url, server_home = server
    # Another machine: its own home, the server for metadata, a shared object store.
    machine = {
        "STUDIOML_HOME": str(tmp_path / "laptop"),
        "STUDIOML_DATABASE_URL": url,
        "STUDIOML_API_TOKEN": TOKEN,
        "STUDIOML_STORAGE_URL": str(tmp_path / "shared-objects"),
    }
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text("import studio\nstudio.log(loss=0.5)\nprint('trained')\n")
    proc = studio("run", "-e", "direct", "--metric", "loss:min", "train.py", cwd=ws, env=machine)
    assert proc.returncode == 0 and "trained" in proc.stdout, proc.stderr
    proc = studio("run", "-e", "queued", "--queue", "gpu", "train.py", cwd=ws, env=machine)
    assert proc.returncode == 0, proc.stderr
    worker = dict(machine, STUDIOML_HOME=str(tmp_path / "gpu-box"))
    proc = studio("worker", "--queue", "gpu", "--single-run", cwd=tmp_path, env=worker, timeout=120)
    assert proc.returncode == 0, proc.stderr

    # What the server's own database says.
    store = open_meta_store(f"sqlite:///{server_home / 'studio.db'}")
    for key in ("direct", "queued"):
        exp = store.get_experiment(key)
        assert exp.status == Status.FINISHED and exp.returncode == 0
        assert exp.artifacts["output"].tree and exp.artifacts["workspace"].tree
    assert store.get_experiment("direct").metric_value == 0.5
    store.close()
    shown = studio("runs", "show", "queued", "--json", env=machine)
    assert shown.returncode == 0 and '"finished"' in shown.stdout
    bad = studio("runs", "list", "all", env=dict(machine, STUDIOML_API_TOKEN="wrong"))
    assert bad.returncode != 0 and "wrong, expired or revoked token" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
