"""End to end: a team's studio. A server in front of PostgreSQL and S3; a laptop and a worker
that hold only the server's URL and a token (the seed's `database: {type: http, serverUrl}`
and no storage section), and no AWS credentials or database URL anywhere in their
environment. Artifacts go to the bucket through presigned URLs the server issues.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_worker import write
from tests.fixtures.s3 import ACCESS_KEY, SECRET_KEY, S3Storage

TOKEN = "team-token-5c1e"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any credentials or studio settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STUDIOML_", "PG"))}
    return {**env, **extra}


def run(*args: str, env: dict[str, str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "studio", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.fixture
def team_server(tmp_path: Path, postgres_url: str, s3_storage: S3Storage) -> Iterator[str]:
    port = _free_port()
    env = clean_env(STUDIOML_HOME=str(tmp_path / "server-home"), STUDIOML_DATABASE_URL=postgres_url,
                    STUDIOML_STORAGE_URL=s3_storage.url, STUDIOML_SERVER_TOKEN=TOKEN, **s3_storage.env)  # fmt: skip
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "studio", "ui", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def client_machine(root: Path, url: str) -> dict[str, str]:
    home = root / "studiohome"
    write(home / "config.yaml", f"database:\n  type: http\n  serverUrl: {url}\nworker:\n  lease: 5\n  heartbeat: 1\n")
    (root / "home").mkdir(parents=True, exist_ok=True)
    return clean_env(STUDIOML_HOME=str(home), HOME=str(root / "home"), STUDIOML_API_TOKEN=TOKEN)


def test_clients_without_storage_or_database_secrets(
    team_server: str, tmp_path: Path, s3_storage: S3Storage
) -> None:
    laptop = client_machine(tmp_path / "laptop", team_server)
    worker = client_machine(tmp_path / "worker", team_server)
    proj = tmp_path / "laptop" / "proj"
    write(proj / "data.csv", "x,y\n1,2\n3,4\n")
    (proj / "weights.bin").write_bytes(os.urandom(9 << 20))  # more than one 8 MiB part
    write(proj / "train.py", """\
        import os, shutil, studio
        from studio import fs_tracker
        rows = open("data.csv").read().splitlines()
        out = fs_tracker.get_artifact("model")
        shutil.copy("weights.bin", os.path.join(out, "weights.bin"))
        for step in range(5):
            studio.log(step, loss=1.0 / (step + 1))
        print("rows", len(rows))
        """)
    write(proj / "reuse.py", """\
        import os, studio
        from studio import fs_tracker
        w = fs_tracker.get_artifact("w")
        print("reused", os.path.getsize(os.path.join(w, "weights.bin")))
        studio.log(0, acc=0.75)
        """)

    # The laptop runs one experiment here and submits one that reuses its artifact.
    first = run("run", "-e", "first", "--capture", "model:model", "train.py", env=laptop, cwd=proj)
    assert first.returncode == 0 and "rows 3" in first.stdout, first.stderr
    second = run("run", "-e", "second", "--queue", "team", "--reuse", "first/model:w", "reuse.py",
                 env=laptop, cwd=proj)  # fmt: skip
    assert second.returncode == 0, second.stderr

    # A worker elsewhere, with the same URL and token only, runs it.
    done = run("worker", "--queue", "team", "--single-run", env=worker, cwd=tmp_path / "worker")
    assert done.returncode == 0, done.stderr
    shown = json.loads(run("runs", "show", "second", "--json", env=laptop, cwd=proj).stdout)
    assert shown["status"] == "finished"
    logs = run("runs", "logs", "second", env=laptop, cwd=proj).stdout
    assert f"reused {9 << 20}" in logs

    # `artifacts get` on a third home, from the bucket through the server's URLs.
    reader = client_machine(tmp_path / "reader", team_server)
    got = tmp_path / "got"
    fetched = run("artifacts", "get", "first", "model", str(got), env=reader, cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert (got / "weights.bin").read_bytes() == (proj / "weights.bin").read_bytes()

    # The workbook reads a series written on the worker.
    script = ("from studio.workbook import ExperimentRepository\n"
              "wb = ExperimentRepository()\n"
              "print(wb['first'].metrics('loss')['value'].round(3).tolist())\n"
              "print(wb['second'].metrics('acc')['value'].tolist())\n")  # fmt: skip
    read = subprocess.run([sys.executable, "-c", script], env=reader, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert read.returncode == 0, read.stderr
    assert read.stdout.splitlines() == ["[1.0, 0.5, 0.333, 0.25, 0.2]", "[0.75]"]

    # Everything is in the bucket, as content-addressed objects; no client has a store.
    keys = s3_storage.keys()
    assert keys and all(k.startswith("studio/objects/") for k in keys), keys
    for machine in (laptop, worker, reader):
        home = Path(machine["STUDIOML_HOME"])
        assert not (home / "objects").exists() and not (home / "studio.db").exists()
        assert SECRET_KEY not in json.dumps(machine) and ACCESS_KEY not in json.dumps(machine)


def test_wrong_token_and_unreachable_server_are_one_line(team_server: str, tmp_path: Path) -> None:
    laptop = client_machine(tmp_path / "laptop", team_server)
    proj = tmp_path / "proj"
    write(proj / "train.py", "print('hi')\n")
    bad = run("run", "train.py", env={**laptop, "STUDIOML_API_TOKEN": "wrong"}, cwd=proj)
    assert bad.returncode != 0
    assert len(bad.stderr.strip().splitlines()) == 1 and "token" in bad.stderr, bad.stderr
    down = client_machine(tmp_path / "down", f"http://127.0.0.1:{_free_port()}")
    failed = run("run", "train.py", env=down, cwd=proj)
    assert failed.returncode != 0
    assert len(failed.stderr.strip().splitlines()) == 1 and "cannot reach" in failed.stderr, failed.stderr


SWEEP = """\
import studio
lr = 0.01
loss = 1.0
for epoch in range(5):
    loss = loss * (1 - 10 * lr)
    print("val_loss: {}".format(loss), flush=True)
"""


def test_a_sweep_through_the_server(team_server: str, tmp_path: Path, s3_storage: S3Storage) -> None:
    laptop = client_machine(tmp_path / "laptop", team_server)
    proj = tmp_path / "laptop" / "sweep"
    write(proj / "train.py", SWEEP)
    proc = run("run", "--hyperparam=lr=0.01:0.01:0.02", "--metric=val_loss:min", "--num-workers", "2", "train.py",
               env=laptop, cwd=proj, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "sweep train: 2/2 done" in proc.stderr, proc.stderr
    show = json.loads(run("sweep", "show", "train", "--json", env=laptop, cwd=proj).stdout)
    assert show["finished"] and [t["status"] for t in show["trials"]] == ["finished"] * 2
    rows = json.loads(run("runs", "list", "project", "train", "--json", env=laptop, cwd=proj).stdout)
    assert sorted(r["params"]["lr"] for r in rows) == [0.01, 0.02]
    assert all(k.startswith("studio/objects/") for k in s3_storage.keys())


def test_rich_results_and_saved_artifacts_through_the_server(team_server: str, tmp_path: Path) -> None:
    """`studio.log_image` and `studio.save` from a machine that holds only the URL and a token:
    the bytes go to the bucket with the experiment named, as the server's rules want."""
    env = client_machine(tmp_path / "laptop", team_server)
    ws = tmp_path / "laptop" / "ws"
    write(ws / "media_run.py", "import numpy as np, studio\n"
                          "studio.log_image('samples', np.full((4, 4), 0.5), step=3)\n"
                          "open('w.bin', 'wb').write(b'weights')\n"
                          "studio.save('w.bin', 'weights')\n")
    proc = run("run", "-e", "rich", "media_run.py", env=env, cwd=ws)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dest = tmp_path / "out.bin"
    got = run("artifacts", "get", "rich", "weights", str(dest), env=env, cwd=ws)
    assert got.returncode == 0, got.stderr
    assert dest.read_bytes() == b"weights"
    media = httpx.get(f"{team_server}/api/experiments/rich/media", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [i["step"] for i in media["images"]["samples"]] == [3]
