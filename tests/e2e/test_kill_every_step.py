"""`kill -9` of `studio run` at every step of its life, and what must hold afterwards.

A run with a data input (`--capture-once`), a results output (`--capture`), metrics and a
workspace is first timed whole; then the same command is started again and again, its
supervisor SIGKILLed (as the OOM killer or a closed laptop lid would) after a delay that sweeps
the whole run: interpreter start, capture, record, script start, metrics, final checkpoint,
finishing. Afterwards, once the short leases have lapsed:

- no experiment is left `running`, `queued` or half-made: each ended in a recorded state
  (killed before its row was written means no row at all);
- every object in the store is whole (its SHA-256 is its name); a finished run's artifacts
  can be fetched;
- nothing the scripts started is still alive;
- the next `studio run` and `studio gc` work, and gc keeps every finished run's artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.helpers import studio, studio_env
from tests.e2e.test_worker import write

TERMINAL = {"finished", "failed", "killed", "stopped", "lost"}


def start(ws: Path, key: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "studio", "run", "-e", key, "--capture-once", "data:data",
         "--capture", "out:out", "train.py"],
        cwd=ws, env=studio_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of an exited process is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_kill_9_at_every_step_leaves_nothing_half_made(studio_home: Path, tmp_path: Path) -> None:
    write(studio_home / "config.yaml", "worker:\n  lease: 3\n  heartbeat: 0.5\n")
    ws = tmp_path / "ws"
    for i in range(200):
        write(ws / "src" / f"m{i}.py", f"X = {i}\n" * 20)
    for i in range(20):
        write(ws / "data" / f"part{i}.csv", "x,y\n" + "1,2\n" * 2000)
    pids = tmp_path / "pids"
    pids.mkdir()
    write(ws / "train.py", f"""\
        import os, time
        import studio
        from studio import fs_tracker
        open(os.path.join({str(pids)!r}, str(os.getpid())), "w").close()
        data = fs_tracker.get_artifact("data")
        rows = sum(1 for name in os.listdir(data) for _ in open(os.path.join(data, name)))
        for step in range(50):
            studio.log(step, loss=1.0 / (step + 1))
            time.sleep(0.004)
        out = fs_tracker.get_artifact("out")
        for i in range(5):
            with open(os.path.join(out, f"r{{i}}.txt"), "w") as f:
                f.write(str(rows) * 1000)
        time.sleep(0.3)
        print("trained", rows)
        """)

    t0 = time.monotonic()
    whole = start(ws, "whole")
    assert whole.wait(timeout=120) == 0
    full = time.monotonic() - t0
    delays = [0.02 + i * full * 1.2 / 13 for i in range(14)] + [full * 3]
    completed = set()
    for i, delay in enumerate(delays):
        proc = start(ws, f"k{i}")
        try:
            proc.wait(timeout=delay)
            completed.add(f"k{i}")  # it ended before the kill came
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)  # the supervisor only: what it started must follow
        proc.wait(timeout=60)

    time.sleep(3 + 1.5)  # the leases lapse
    listed = json.loads(studio("runs", "list", "all", "--json", check=True).stdout)
    deadline = time.monotonic() + 30
    while any(r["status"] not in TERMINAL for r in listed) and time.monotonic() < deadline:
        time.sleep(1)  # anyone reading marks lapsed runs lost; give a slow machine a moment
        listed = json.loads(studio("runs", "list", "all", "--json", check=True).stdout)
    statuses = {r["key"]: r["status"] for r in listed}
    assert statuses["whole"] == "finished"
    assert all(s in TERMINAL for s in statuses.values()), statuses
    assert set(statuses) <= {"whole", *(f"k{i}" for i in range(len(delays)))}
    # The sweep reached both ends: some were killed before their row existed or while running;
    # what ended before its kill finished.
    assert completed and all(statuses[k] == "finished" for k in completed), (completed, statuses)
    assert len(completed) < len(delays) - 3, completed

    # Nothing the scripts started is alive.
    deadline = time.monotonic() + 10
    while any(alive(int(p.name)) for p in pids.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p.name for p in pids.iterdir() if alive(int(p.name))]

    # Every stored object is whole.
    objects = list((studio_home / "objects" / "objects").rglob("*"))
    files = [p for p in objects if p.is_file()]
    assert files
    for path in files:
        name = path.parent.name + path.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == name, path

    # The next run and gc work; gc keeps what finished runs reference.
    proc = studio("run", "-e", "after", "--capture-once", "data:data", "--capture", "out:out", "train.py", cwd=ws)
    assert proc.returncode == 0 and "trained 40020" in proc.stdout, proc.stderr
    studio("gc", "--grace", "0s", check=True)
    (tmp_path / "got").mkdir()
    (tmp_path / "gotdata").mkdir()
    for key, status in statuses.items():
        if status == "finished":
            got = tmp_path / "got" / key
            studio("artifacts", "get", key, "out", str(got), check=True)
            assert len(list(got.iterdir())) == 5, key
            studio("artifacts", "get", key, "data", str(tmp_path / "gotdata" / key), check=True)
