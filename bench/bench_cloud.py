"""Cloud workers in the simulated cloud: submit -> first experiment running, scale-out to
max_workers, scale-in after the drain, idle time per worker, per-experiment overhead.

    python bench/bench_cloud.py [--experiments 12] [--max-workers 3] [--idle 5]

Everything real except the machines: moto_server on loopback is EC2, Auto Scaling and SSM; a
`studio ui` server (SQLite behind its store API) is the team's database; objects go to S3 on
the same moto server. `studio run --cloud=ec2spot -hp x=1:N` submits a sweep; every instance
moto reports running executes its user data in its own sandbox (tests/fixtures/simcloud.py):
the agent reads the token from SSM, runs `studio worker`, grows the group while work waits,
leaves it when idle, and the last one deletes the group. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.simcloud import SimCloud  # noqa: E402

SCRIPT = "import time\nx = 0\ntime.sleep({sleep})\nprint('loss: {{}}'.format(x * x))\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def studio(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "studio", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiments", type=int, default=12)
    ap.add_argument("--max-workers", type=int, default=3)
    ap.add_argument("--idle", type=float, default=5.0)
    ap.add_argument("--sleep", type=float, default=2.0, help="seconds each experiment's script sleeps")
    ap.add_argument("--limit", type=float, default=600.0, help="give up after this many seconds")
    args = ap.parse_args()
    import json

    import boto3

    root = Path(tempfile.mkdtemp(prefix="bench-cloud-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        aws_port, ui_port = free_port(), free_port()
        aws_env = {"AWS_ACCESS_KEY_ID": "AKIABENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret",
                   "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{aws_port}"}
        moto = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
        procs.append(subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(aws_port)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        token = uuid.uuid4().hex
        base = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIOML_", "AWS_"))}
        procs.append(subprocess.Popen([sys.executable, "-m", "studio", "ui", "--port", str(ui_port)],
                                      env={**base, "STUDIOML_HOME": str(root / "server"),
                                           "STUDIOML_SERVER_TOKEN": token},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http(aws_env["AWS_ENDPOINT_URL"] + "/")
        wait_http(f"http://127.0.0.1:{ui_port}/")
        kw = {"endpoint_url": aws_env["AWS_ENDPOINT_URL"], "region_name": "us-east-1",
              "aws_access_key_id": "AKIABENCH", "aws_secret_access_key": "bench-secret"}
        boto3.client("s3", **kw).create_bucket(Bucket="bench")
        boto3.client("ssm", **kw).put_parameter(Name="/studio/worker-token", Value=token, Type="SecureString")
        home = root / "laptop"
        home.mkdir()
        (home / "config.yaml").write_text(
            f"database:\n  url: http://127.0.0.1:{ui_port}\nstorage:\n  url: s3://bench/studio\n"
            f"cloud:\n  max_workers: {args.max_workers}\n  idleTimeout: {args.idle:g}s\n  scaleInterval: 1s\n")
        env = {**base, **aws_env, "STUDIOML_HOME": str(home), "HOME": str(root), "STUDIOML_API_TOKEN": token}
        work = root / "w"
        work.mkdir()
        (work / "train.py").write_text(SCRIPT.format(sleep=args.sleep))
        t = time.perf_counter()
        subprocess.run([sys.executable, str(work / "train.py")], check=True, capture_output=True)
        bare = time.perf_counter() - t

        queue = "bench"
        sim = SimCloud(aws_env, root / "cloud", {}, queue)
        asg = boto3.client("autoscaling", **kw)
        t0 = time.time()
        sweep = subprocess.Popen([sys.executable, "-m", "studio", "run", "--cloud=ec2spot", "--queue", queue,
                                  "-hp", f"x=1:{args.experiments}", "--metric", "loss:min", "train.py"],
                                 env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        marks: dict[str, float] = {}
        ended: dict[str, float] = {}
        born: dict[str, float] = {}
        while True:
            for i in sim.poll():
                born[i] = time.time()
            alive = sim.alive()
            for i, p in sim.procs.items():
                if p.poll() is not None and i not in ended:
                    ended[i] = time.time()
            if alive:
                marks.setdefault("first instance up", time.time() - t0)
            if len(alive) >= args.max_workers:
                marks.setdefault(f"{args.max_workers} instances up", time.time() - t0)
            groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"studio-{queue}"])["AutoScalingGroups"]
            if sweep.poll() is not None:
                marks.setdefault("sweep done", time.time() - t0)
                if not groups and not alive:
                    break
            if time.time() - t0 > args.limit:
                consoles = "\n".join(f"--- {i}\n{sim.console(i)[-1500:]}" for i in sim.procs)
                raise RuntimeError(f"the simulated cloud did not drain in {args.limit:g} s: sweep "
                                   f"{sweep.poll()}, groups {len(groups)}, alive {alive}\n{consoles}")
            time.sleep(0.1)
        marks["group deleted"] = time.time() - t0
        for i in sim.procs:
            ended.setdefault(i, time.time())
        sim.stop()
        if sweep.returncode != 0:
            raise RuntimeError(sweep.stderr.read().decode() if sweep.stderr else "sweep failed")
        rows = json.loads(studio("queue", "show", queue, "--json", env=env).stdout)
        keys = [r["key"] for r in rows]
        exps = [json.loads(studio("runs", "show", k, "--json", env=env).stdout) for k in keys]
        started = sorted(e["time_started"] for e in exps)
        finished = sorted(e["time_finished"] for e in exps)
        busy = [e["time_finished"] - e["time_started"] for e in exps]
        lifetimes = [ended[i] - born[i] for i in sim.procs]
        idle = (sum(lifetimes) - sum(busy)) / len(sim.procs)
        load = os.getloadavg()
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; Python "
              f"{platform.python_version()}; load average {load[0]:.1f}; {time.strftime('%Y-%m-%d')}\n")
        print("| measure | result |\n|---|---|")
        for name, value in [
            ("submit -> first experiment running", f"{started[0] - t0:.1f} s"),
            ("submit -> first instance running its user data", f"{marks['first instance up']:.1f} s"),
            (f"submit -> {args.max_workers} instances (scale-out from 1)",
             f"{marks.get(f'{args.max_workers} instances up', float('nan')):.1f} s"),
            (f"{args.experiments} experiments done (sweep returns)", f"{marks['sweep done']:.1f} s"),
            ("last experiment finished -> group and template deleted (scale-in)",
             f"{marks['group deleted'] - (finished[-1] - t0):.1f} s (idle timeout {args.idle:g} s)"),
            ("instances started / idle time per instance", f"{len(sim.procs)} / {idle:.1f} s"),
            ("worker time per experiment vs the script alone",
             f"{statistics.mean(busy) * 1000:.0f} ms vs {bare * 1000:.0f} ms: overhead "
             f"{(statistics.mean(busy) - bare) * 1000:.0f} ms"),
        ]:
            print(f"| {name} | {value} |")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
