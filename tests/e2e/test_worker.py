"""End to end: `studio run --queue`, `studio worker`, `studio run --num-workers`, `studio queue`.

The real `studio` command in subprocesses, on the embedded defaults (SQLite + local store) in
a temporary STUDIOML_HOME.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from studio.entities import Experiment, Status
from studio.meta import MetaStore, open_meta_store
from tests.e2e.helpers import studio, studio_env, studio_json

FAST = "worker:\n  lease: 3\n  heartbeat: 0.5\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


class Workers:
    """Real `studio worker` processes, each in its own process group, all killed at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "studio", "worker", *args], env=studio_env(env), cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.communicate()


@pytest.fixture
def workers() -> Iterator[Workers]:
    w = Workers()
    yield w
    w.close()


@pytest.fixture
def meta(studio_home: Path) -> Iterator[MetaStore]:
    store = open_meta_store(f"sqlite:///{studio_home / 'studio.db'}")
    yield store
    store.close()


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def submit(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = studio("run", "--queue", "q", *args, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def status(meta: MetaStore, key: str) -> Experiment:
    return meta.get_experiment(key)


def test_worker_runs_a_submitted_experiment_in_its_own_directory(
    studio_home: Path, tmp_path: Path, workers: Workers, meta: MetaStore
) -> None:
    proj = tmp_path / "proj"
    write(proj / "data.txt", "input data\n")
    write(proj / "train.py", """\
        import os, sys
        from studio import fs_tracker
        print("cwd", os.getcwd())
        print("data", open("data.txt").read().strip())
        out = fs_tracker.get_artifact("weights")
        open(os.path.join(out, "w.bin"), "w").write("weights!")
        open("scratch.txt", "w").write("written in the worker's copy")
        print("args", sys.argv[1:])
        """)
    weights = tmp_path / "weights"
    key = submit(proj, "--capture", f"{weights}:weights", "train.py", "--lr", "0.1")
    assert status(meta, key).status == Status.QUEUED
    w = workers.start("--queue", "q", "--single-run")
    assert w.wait(timeout=60) == 0, w.stderr.read() if w.stderr else ""
    exp = status(meta, key)
    assert exp.status == Status.FINISHED and exp.returncode == 0 and exp.attempts == 1
    out = studio("runs", "logs", key, check=True).stdout
    assert "data input data" in out and "args ['--lr', '0.1']" in out
    run_dir = out.split("cwd ", 1)[1].splitlines()[0]
    assert run_dir.startswith(str(studio_home / "workers")) and run_dir.endswith(f"{key}/workspace")
    assert not (proj / "scratch.txt").exists()  # the submitter's folder is never touched
    assert not weights.exists() or not any(weights.iterdir())
    assert exp.artifacts["weights"].tree and exp.artifacts["weights"].files == 1
    got = tmp_path / "got"
    studio("artifacts", "get", key, "weights", str(got), check=True)
    assert (got / "w.bin").read_text() == "weights!"
    assert not Path(run_dir).exists()  # the run directory is cleaned up


def test_num_workers_drains_and_exits_with_the_scripts_code(studio_home: Path, tmp_path: Path) -> None:
    write(tmp_path / "ok.py", "print('fine')\n")
    write(tmp_path / "bad.py", "import sys\nprint('about to fail')\nsys.exit(3)\n")
    proc = studio("run", "--num-workers", "2", "ok.py", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "fine" in proc.stdout  # a single experiment's output is shown live
    proc = studio("run", "--num-workers", "1", "bad.py", cwd=tmp_path, timeout=120)
    assert proc.returncode == 3, proc.stderr
    runs = studio_json("runs", "list", "all")
    assert sorted(r["status"] for r in runs) == ["failed", "finished"]


def test_stop_max_duration_and_lifetime_on_a_worker(
    studio_home: Path, tmp_path: Path, workers: Workers, meta: MetaStore
) -> None:
    write(studio_home / "config.yaml", FAST)
    write(tmp_path / "slow.py", "import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    stop_me = submit(tmp_path, "slow.py")
    too_long = submit(tmp_path, "--max-duration", "1s", "slow.py")
    workers.start("--queue", "q")
    wait_for(lambda: status(meta, stop_me).status == Status.RUNNING, what="the first experiment to start")
    asked = time.monotonic()
    assert "stop requested" in studio("runs", "stop", stop_me, check=True).stdout
    wait_for(lambda: status(meta, stop_me).status.terminal, timeout=10, what="stop")
    assert time.monotonic() - asked < 5
    assert status(meta, stop_me).status == Status.STOPPED
    wait_for(lambda: status(meta, too_long).status.terminal, timeout=20, what="max-duration")
    exp = status(meta, too_long)
    assert exp.status == Status.KILLED and "max duration" in (exp.status_reason or "")
    # On a queue no worker serves (a worker on `q` could claim it within its 10 ms, and then
    # rightly run it): every worker retires any queue's experiments past their lifetime.
    proc = studio("run", "--queue", "unserved", "--lifetime", "0.01", "slow.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expired = proc.stdout.strip().splitlines()[-1]
    wait_for(lambda: status(meta, expired).status.terminal, timeout=10, what="lifetime")
    assert status(meta, expired).status == Status.LOST and "lifetime" in (status(meta, expired).status_reason or "")


def test_sigterm_hands_the_experiment_back(studio_home: Path, tmp_path: Path, workers: Workers, meta: MetaStore) -> None:
    write(studio_home / "config.yaml", FAST)
    write(tmp_path / "job.py", """\
        import os, time
        print("attempt", os.environ["STUDIOML_EXPERIMENT"], flush=True)
        time.sleep(float(os.environ.get("SLEEP", "30")))
        """)
    key = submit(tmp_path, "job.py")
    first = workers.start("--queue", "q")
    wait_for(lambda: "attempt" in "".join(c.text for c in meta.read_output(key, attempt=1)), what="output")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    exp = status(meta, key)
    assert exp.status == Status.QUEUED and exp.worker is None and exp.lease_expires is None
    assert "handed back" in (exp.status_reason or "")
    second = workers.start("--queue", "q", "--single-run", env={"SLEEP": "0"})
    assert second.wait(timeout=60) == 0
    exp = status(meta, key)
    assert exp.status == Status.FINISHED and exp.attempts == 2
    assert "attempt" in "".join(c.text for c in meta.read_output(key, attempt=1))


def test_python_pkg_install_failure_fails_the_experiment_with_pips_message(
    studio_home: Path, tmp_path: Path, workers: Workers, meta: MetaStore
) -> None:
    write(tmp_path / "t.py", "print('never runs')\n")
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)}
    key = submit(tmp_path, "--python-pkg", "no-such-package-studio==1.0", "t.py")
    w = workers.start("--queue", "q", "--single-run", env=offline)
    assert w.wait(timeout=120) == 0
    exp = status(meta, key)
    assert exp.status == Status.FAILED and "Python environment" in (exp.status_reason or "")
    out = studio("runs", "logs", key, check=True).stdout
    assert "no-such-package-studio" in out and "never runs" not in out


def test_gpus_are_assigned_and_unfit_experiments_wait(
    studio_home: Path, tmp_path: Path, workers: Workers, meta: MetaStore
) -> None:
    write(tmp_path / "gpu.py", "import os\nprint('devices=' + os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))\n")
    big = submit(tmp_path, "--gpus", "3", "gpu.py")
    one = submit(tmp_path, "--gpus", "1", "--ram", "1m", "gpu.py")
    w = workers.start("--queue", "q", "--gpus", "2", "--ram", "2g", "--timeout", "2")
    assert w.wait(timeout=60) == 0
    assert status(meta, one).status == Status.FINISHED
    assert "devices=0" in studio("runs", "logs", one, check=True).stdout
    assert status(meta, big).status == Status.QUEUED  # needs more GPUs than any worker offers


def test_queue_list_show_purge(studio_home: Path, tmp_path: Path, meta: MetaStore) -> None:
    write(tmp_path / "t.py", "print(1)\n")
    keys = [submit(tmp_path, "t.py") for _ in range(3)]
    running = meta.claim("q", "someone", 300.0)
    assert running is not None
    listed = studio_json("queue", "list")
    assert listed == [{"name": "q", "total": 3, "counts": {"queued": 2, "running": 1}, "workers": []}]
    assert "q" in studio("queue", "list", check=True).stdout
    shown = studio_json("queue", "show", "q")
    assert [r["key"] for r in shown] == keys and shown[0]["status"] == "running"
    proc = studio("queue", "purge", "q")  # not on a terminal: it asks for --yes, deletes nothing
    assert proc.returncode == 194 and "--yes" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert len(meta.get_experiments(keys)) == 3
    proc = studio("queue", "purge", "--yes", "q")
    assert proc.returncode == 0
    assert "deleted 2" in proc.stdout and "left 1 running" in proc.stderr
    assert [e.key for e in meta.get_experiments(keys)] == [running.key]
    assert studio("queue", "show", "nope").returncode == 195


@pytest.mark.parametrize(
    "flags",
    [
        ["--ram", "10x"],
        ["--hdd", "-5g"],
        ["--cpus", "-1"],
        ["--gpus", "two"],
        ["--num-workers", "-2"],
        ["--max-duration", "48x"],
        ["--lifetime", "soon"],
        ["--python-pkg", "numpy=="],
        ["--python-pkg", "not a requirement!"],
    ],
)
def test_bad_input_is_rejected_before_anything_is_queued(
    studio_home: Path, tmp_path: Path, flags: list[str]
) -> None:
    write(tmp_path / "t.py", "print(1)\n")
    proc = studio("run", "--queue", "q", *flags, "t.py", cwd=tmp_path)
    assert proc.returncode == 194, (proc.stdout, proc.stderr)
    assert "error" in proc.stderr.lower() and "Traceback" not in proc.stderr
    store = open_meta_store(f"sqlite:///{studio_home / 'studio.db'}")
    try:
        assert store.queue_counts() == {}
        assert store.query(__import__("studio.entities", fromlist=["x"]).ExperimentQuery()).total == 0
    finally:
        store.close()


def test_worker_flags_are_validated(studio_home: Path) -> None:
    for flags in (["--ram", "lots"], ["--cpus", "-3"], ["--timeout", "48x"]):
        proc = studio("worker", "--queue", "q", *flags, timeout=30)
        assert proc.returncode == 194 and "Traceback" not in proc.stderr, proc.stderr
    proc = studio("remote", "worker", "--queue", "nothing-here", "--timeout", "0.5", timeout=30)
    assert proc.returncode == 0, proc.stderr  # an unknown queue is fine: the worker waits


def test_drain_returns_every_keys_exit_code(studio_home: Path, tmp_path: Path) -> None:
    from studio.api.context import Context
    from studio.api.run import RunOptions
    from studio.api.submit import submit as submit_api
    from studio.runner.pool import drain

    write(tmp_path / "code.py", "import sys\nsys.exit(int(sys.argv[1]))\n")
    with Context.from_env() as ctx:
        keys = [submit_api(ctx, RunOptions(script="code.py", args=[str(c)], cwd=tmp_path, queue="sweep",
                                           echo=False)).key for c in (0, 4, 0)]
        codes = drain(ctx, "sweep", 2, [*keys, "no-such-key"])
        assert codes == {keys[0]: 0, keys[1]: 4, keys[2]: 0, "no-such-key": 1}
        assert {e.worker for e in ctx.meta.get_experiments(keys)} - {None}


def test_queue_list_shows_which_workers_serve_which_queue(studio_home: Path, tmp_path: Path, workers: Workers) -> None:
    write(tmp_path / "slow.py", "import time\ntime.sleep(60)\n")
    submit(tmp_path, "--queue", "nobody", "slow.py")  # a queue no worker serves
    w = workers.start("--queue", "q")
    deadline = time.monotonic() + 60
    listed: list[dict] = []
    while time.monotonic() < deadline:
        listed = studio_json("queue", "list")
        if any(q["name"] == "q" for q in listed):
            break
        time.sleep(0.5)
    by_name = {q["name"]: q for q in listed}
    assert [wk["state"] for wk in by_name["q"]["workers"]] == ["idle"] and by_name["q"]["total"] == 0
    assert by_name["nobody"]["workers"] == [] and by_name["nobody"]["counts"] == {"queued": 1}
    table = studio("queue", "list", check=True).stdout
    assert "studio worker --queue nobody" in table and "1 (0 busy)" in table
    busy = submit(tmp_path, "--queue", "q", "slow.py")
    while time.monotonic() < deadline:
        (q,) = [x for x in studio_json("queue", "list") if x["name"] == "q"]
        if q["workers"] and q["workers"][0]["state"] == "busy":
            break
        time.sleep(0.5)
    assert q["workers"][0]["experiment"] == busy
    w.send_signal(signal.SIGTERM)
    w.wait(60)
    assert all(x["workers"] == [] for x in studio_json("queue", "list"))  # an exiting worker leaves the list
