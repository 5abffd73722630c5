"""Reliability of real worker processes: kill -9 in a loop, many workers on one queue."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections import Counter
from pathlib import Path

import psutil
import pytest

from studio.api.context import Context
from studio.api.run import RunOptions
from studio.api.submit import submit
from studio.entities import Status
from studio.meta import MetaStore, open_meta_store
from tests.e2e.test_worker import Workers, meta, wait_for, workers, write  # noqa: F401 - fixtures

KILLS = 20


def submit_many(cwd: Path, script: str, n: int, *args: str) -> list[str]:
    with Context.from_env() as ctx:
        return [submit(ctx, RunOptions(script=script, args=list(args), cwd=cwd, queue="q", echo=False)).key
                for _ in range(n)]


def output(meta: MetaStore, key: str, attempt: int) -> str:  # noqa: F811
    return "".join(c.text for c in meta.read_output(key, attempt=attempt))


def test_kill_9_workers_in_a_loop_loses_nothing(
    studio_home: Path, tmp_path: Path, workers: Workers, meta: MetaStore  # noqa: F811
) -> None:
    write(studio_home / "config.yaml", "worker:\n  lease: 2\n  heartbeat: 0.5\n  max_attempts: 40\n")
    release = tmp_path / "release"
    # Every attempt blocks until the test has done its killing, then finishes.
    write(tmp_path / "job.py", f"""\
        import os, time
        print("start", os.environ["STUDIOML_EXPERIMENT"], flush=True)
        deadline = time.time() + 90
        while not os.path.exists({str(release)!r}) and time.time() < deadline:
            time.sleep(0.05)
        print("end", flush=True)
        """)
    keys = submit_many(tmp_path, "job.py", 5)
    live = [workers.start("--queue", "q") for _ in range(2)]
    kills: Counter[str] = Counter()
    killed_attempts: list[tuple[str, int]] = []
    while sum(kills.values()) < KILLS:
        by_pid = {p.pid: p for p in live}
        victim = None

        def running_with_output(by_pid: dict[int, object] = by_pid) -> bool:
            nonlocal victim
            for exp in meta.get_experiments(keys):
                pid = int(exp.worker.split(":")[1]) if exp.status == Status.RUNNING and exp.worker else None
                if pid in by_pid and "start" in output(meta, exp.key, exp.attempts):
                    victim = (exp.key, exp.attempts, by_pid[pid])
                    return True
            return False

        wait_for(running_with_output, timeout=30, what="a running experiment to kill")
        assert victim is not None
        key, attempt, proc = victim
        assert isinstance(proc, subprocess.Popen)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills[key] += 1
        killed_attempts.append((key, attempt))
        live = [p for p in live if p is not proc] + [workers.start("--queue", "q")]
    release.touch()
    wait_for(lambda: all(e.status.terminal for e in meta.get_experiments(keys)), timeout=60,
             what="every experiment to end")
    for exp in meta.get_experiments(keys):
        assert exp.status == Status.FINISHED, (exp.key, exp.status, exp.status_reason)
        assert exp.attempts == kills[exp.key] + 1
        finished = [e for e in meta.status_history(exp.key) if e.status == Status.FINISHED]
        assert len(finished) == 1  # never run twice to completion
        assert "end" in output(meta, exp.key, exp.attempts)
    for key, attempt in killed_attempts:  # every killed attempt's output is kept
        assert f"start {key}" in output(meta, key, attempt)
    assert sum(kills.values()) >= KILLS
    # Run directories of the killed workers were removed by the workers started after them.
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) + "_"
    for d in (studio_home / "workers").iterdir():
        if d.name.startswith(prefix):
            assert psutil.pid_exists(int(d.name[len(prefix):].split("_")[0])), d


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_three_worker_processes_share_a_queue_exactly_once(
    backend: str, request: pytest.FixtureRequest, studio_home: Path, tmp_path: Path, workers: Workers  # noqa: F811
) -> None:
    url = f"sqlite:///{studio_home / 'studio.db'}"
    if backend == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
        write(studio_home / "config.yaml", f"database:\n  url: {url}\n")
    write(tmp_path / "t.py", "import os\nprint('ran', os.environ['STUDIOML_EXPERIMENT'])\n")
    keys = submit_many(tmp_path, "t.py", 24)
    procs = [workers.start("--queue", "q", "--timeout", "2") for _ in range(3)]
    for p in procs:
        assert p.wait(timeout=180) == 0
    errors = "".join(p.stderr.read() if p.stderr else "" for p in procs)
    assert "database is locked" not in errors and "Traceback" not in errors, errors
    store = open_meta_store(url)
    started_by: Counter[str] = Counter()
    try:
        for exp in store.get_experiments(keys):
            assert exp.status == Status.FINISHED and exp.attempts == 1, (exp.key, exp.status, exp.status_reason)
            history = [e.status for e in store.status_history(exp.key)]
            assert history == [Status.QUEUED, Status.RUNNING, Status.FINISHED]
            assert f"ran {exp.key}" in output(store, exp.key, 1)
            started_by[exp.worker or ""] += 1
    finally:
        store.close()
    assert len(started_by) >= 2  # the work was actually shared
