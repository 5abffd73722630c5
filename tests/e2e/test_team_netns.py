"""A worker on another host: a network namespace that reaches the team server only over a veth
link, and sees none of the other machines' files (each hidden under an empty tmpfs).

alice, on this machine, queues a run that reads a data file from her workspace and writes a
`--capture` artifact. The worker, on the other host, holds only the server's URL and a worker
token: its workspace, its data and its results must all travel through the server's HTTP API.
Midway through the script, the cable is cut for longer than a heartbeat interval and plugged
back: the run must still finish, once, with its output and artifact, and alice gets the
artifact back on her machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.helpers import studio, studio_env
from tests.e2e.test_team_server import add_user, start_server
from tests.e2e.test_worker import write
from tests.fixtures.netns import NetnsHost


def test_a_worker_on_another_host_runs_a_users_work_over_http_only(tmp_path: Path, netns_host: NetnsHost) -> None:
    """A 4 s outage, shorter than the 6 s lease: heartbeats fail (each gives up after 2 s), then
    get through again; the run carries on and finishes in one attempt."""
    log = worker_on_another_host(tmp_path, netns_host, cut=4.0)
    assert "failed; will retry" in log and "is back after" in log and "Traceback" not in log, log


def test_an_outage_longer_than_the_lease_requeues_the_run_once(tmp_path: Path, netns_host: NetnsHost) -> None:
    """A 12 s outage: the server gives the run back to the queue; the worker, back online, learns
    it lost the lease and stops its copy without recording an outcome; the next pass finishes it."""
    log = worker_on_another_host(tmp_path, netns_host, cut=12.0)
    assert "lost the lease on netns-run" in log and "Traceback" not in log, log


def test_a_script_that_ends_while_the_network_is_down_is_recorded_once_it_is_back(
    tmp_path: Path, netns_host: NetnsHost
) -> None:
    """The script finishes 1 s into a 4 s outage: the final checkpoint waits for the network
    (within the lease) instead of giving the finished run up."""
    log = worker_on_another_host(tmp_path, netns_host, cut=4.0, train_seconds=1.0)
    assert "Traceback" not in log, log


def worker_on_another_host(tmp_path: Path, netns_host: NetnsHost, cut: float, train_seconds: float = 8.0) -> str:
    server_home = tmp_path / "server" / "home"
    server_home.mkdir(parents=True)
    alice_token = add_user(server_home, "alice")
    gpu_token = add_user(server_home, "gpu-box", "--worker")
    url, server, _ = start_server(server_home, host=netns_host.peer_ip)
    try:
        # alice's machine: this one.
        alice = {"STUDIOML_HOME": str(tmp_path / "alice" / "home"), "HOME": str(tmp_path / "alice")}
        proc = subprocess.run(
            [sys.executable, "-m", "studio", "login", url, "--token-stdin"], input=alice_token + "\n",
            env=studio_env(alice), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        proj = tmp_path / "alice" / "proj"
        write(proj / "data.csv", "x,y\n1,2\n3,4\n")
        write(proj / "train.py", """\
            import os, time
            from studio import fs_tracker
            rows = open("data.csv").read().splitlines()
            print("rows", len(rows), flush=True)
            time.sleep(float(os.environ.get("TRAIN_SECONDS", "8")))
            out = fs_tracker.get_artifact("results")
            with open(os.path.join(out, "summary.json"), "w") as f:
                f.write('{"rows": %d}' % len(rows))
            print("done on", os.uname().nodename, flush=True)
            """)
        proc = studio(
            "run", "-e", "netns-run", "--queue", "gpu", "--capture", "results:results", "train.py",
            cwd=proj, env=alice,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr

        # The worker's machine: the namespace, with alice's and the server's files hidden.
        worker_root = tmp_path / "gpu"
        worker_home = worker_root / "home"
        write(worker_home / "config.yaml", "worker:\n  lease: 6\n  heartbeat: 1\n")
        worker_env = studio_env({
            "STUDIOML_HOME": str(worker_home), "HOME": str(worker_root), "TRAIN_SECONDS": str(train_seconds),
            "PYTHONUNBUFFERED": "1",
        })  # fmt: skip
        hide = [tmp_path / "alice", tmp_path / "server"]
        login = netns_host.run(
            [sys.executable, "-m", "studio", "login", url, "--token-stdin"], hide=hide, input=gpu_token + "\n",
            env=worker_env, capture_output=True, timeout=60,
        )  # fmt: skip
        assert login.returncode == 0, login.stderr
        # The namespace really is another host: it cannot see alice's files nor reach this loopback.
        probe = netns_host.run(
            [sys.executable, "-c", f"import os, sys; sys.exit(os.path.exists({str(proj)!r}))"],
            hide=hide, env=worker_env,
        )  # fmt: skip
        assert probe.returncode == 0, "alice's workspace is visible from the worker's host"
        worker_log = worker_root / "worker.log"
        with open(worker_log, "w") as out:
            worker = netns_host.popen(
                [sys.executable, "-m", "studio", "worker", "--queue", "gpu", "--single-run"], hide=hide,
                env=worker_env, cwd=str(worker_root), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            # Wait for the script to start, then cut the cable for longer than two heartbeats.
            deadline = time.monotonic() + 90
            while "rows 3" not in studio("runs", "logs", "netns-run", env=alice).stdout:
                assert worker.poll() is None, worker_log.read_text()
                assert time.monotonic() < deadline, worker_log.read_text()
                time.sleep(0.5)
            netns_host.link(False)
            time.sleep(cut)
            netns_host.link(True)
            assert worker.wait(timeout=120) == 0, worker_log.read_text()
        shown = json.loads(studio("runs", "show", "netns-run", "--json", env=alice, check=True).stdout)
        if cut < 6:
            assert shown["status"] == "finished" and shown["attempts"] == 1, shown
        else:  # back in the queue; one more pass of the worker (the cable stays in) finishes it
            assert shown["status"] == "queued", shown
            again = netns_host.run(
                [sys.executable, "-m", "studio", "worker", "--queue", "gpu", "--single-run"], hide=hide,
                env=dict(worker_env, TRAIN_SECONDS="0"), cwd=str(worker_root), capture_output=True, timeout=120,
            )  # fmt: skip
            assert again.returncode == 0, again.stderr
            shown = json.loads(studio("runs", "show", "netns-run", "--json", env=alice, check=True).stdout)
            assert shown["attempts"] == 2, shown
        assert shown["status"] == "finished" and shown["owner"] == "alice", shown
        output = studio("runs", "logs", "netns-run", env=alice, check=True).stdout
        assert "rows 3" in output and output.count("done on") == 1, output
        got = tmp_path / "alice" / "got"
        studio("artifacts", "get", "netns-run", "results", str(got), env=alice, check=True)
        assert json.loads((got / "summary.json").read_text()) == {"rows": 3}
        # The worker had no database of its own (only caches) and keeps its token private.
        assert not (worker_home / "studio.db").exists() and not (worker_home / "objects").exists()
        assert os.stat(worker_home / "credentials.json").st_mode & 0o077 == 0
        return worker_log.read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
