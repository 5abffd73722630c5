"""A team server whose object store fills up while a client uploads to it.

The server keeps its objects on a real 2 MiB file system (tmpfs); alice's run captures a 6 MB
data folder through it. The run must fail before anything is recorded, with one line saying
what happened and exit code 197 (a store error); the server must stay up and keep no partial
object and no staging leftovers; after `studio gc` on the server, the next, small run goes
through.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import studio
from tests.e2e.test_team_server import Server, add_user, login, start_server


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a filesystem needs root (CI runs as root)")
def test_a_full_object_store_on_the_server_fails_the_upload_cleanly(tmp_path: Path, full_disk: Path) -> None:
    home = tmp_path / "server-home"
    home.mkdir()
    token = add_user(home, "alice")
    objects = full_disk / "objects"
    url, proc, log = start_server(home, env={"STUDIOML_STORAGE_URL": str(objects)})
    team = Server(url, home, proc, {"alice": token}, log)
    try:
        laptop = tmp_path / "laptop"
        assert login(team, laptop, token).returncode == 0
        env = {"STUDIOML_HOME": str(laptop), "HOME": str(tmp_path)}
        ws, data = tmp_path / "ws", tmp_path / "data"
        ws.mkdir()
        data.mkdir()
        for i in range(6):
            (data / f"part{i}.bin").write_bytes(os.urandom(1 << 20))
        (ws / "train.py").write_text("print('trained')\n")
        run = studio("run", "-e", "too-big", "--capture-once", f"{data}:data", "train.py", cwd=ws, env=env, timeout=180)
        assert run.returncode == 197, (run.stdout, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "space" in lines[0].lower(), run.stderr
        assert "trained" not in run.stdout
        # Nothing half-made: no experiment, no partial object, no staging leftovers.
        shown = studio("runs", "show", "too-big", env=env)
        assert shown.returncode == 195, shown.stdout
        for path in objects.rglob("*"):
            if path.is_file():
                assert not path.is_relative_to(objects / "tmp"), f"staging leftover {path}"
                assert hashlib.sha256(path.read_bytes()).hexdigest() == path.parent.name + path.name, path
        # The server is up; as the message says, gc on the server gives the space back (the
        # whole files that did arrive are unreferenced), and the next, small run goes through.
        assert httpx.get(f"{url}/api/health", timeout=5).status_code == 200
        studio("gc", "--grace", "0s", env={"STUDIOML_HOME": str(home), "STUDIOML_STORAGE_URL": str(objects)},
               check=True)
        (ws / "small").mkdir()
        (ws / "small" / "a.txt").write_text("a\n")
        ok = studio("run", "-e", "small", "--capture-once", "small:data", "train.py", cwd=ws, env=env, timeout=120)
        assert ok.returncode == 0 and "trained" in ok.stdout, ok.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)
