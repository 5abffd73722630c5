"""A team's server under load: clients logging metrics and workers claiming, through HTTP.

    python bench/bench_server.py                       # 50 clients + 4 workers for 60 s, then MLflow
    python bench/bench_server.py --duration 20 --clients 20 --no-mlflow

studio: a `studio ui` server (SQLite + local object store in a temp home, or --postgres URL)
with a token. Each client is its own process with only the server URL and the token
(`database: {type: http, serverUrl}`): `studio.workbook.new_experiment(...)` then
`studio.log(step, loss=...)` in a loop; its series reaches the server as content-addressed
segments in checkpoints (every --capture-interval s and at close). A point counts once the
server has it: the sum of the per-key `count` summaries the server holds after the clients
closed. Every HTTP request the clients make is timed (httpx, client side: queueing on the
server included). Meanwhile 4 worker processes claim queued experiments through the
server's store API (`HttpMetaStore.claim`), finish them and queue a new one each time.

MLflow: `mlflow server` on loopback (SQLite backend) and the same number of client processes
calling `mlflow.log_metric(...)` per point, each call timed. MLflow has no queue to claim.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"

STUDIO_CLIENT = r"""
import json, os, sys, time
import httpx
lat = []
_send = httpx.Client.send
def send(self, request, **kw):
    t = time.perf_counter()
    try:
        return _send(self, request, **kw)
    finally:
        lat.append(time.perf_counter() - t)
httpx.Client.send = send
import studio
from studio.workbook import new_experiment
out, go, duration, interval, rate = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
exp = new_experiment("bench", params={"pid": os.getpid()}, capture_interval=interval, echo=False)
open(out + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.01)
start = float(open(go).read())
end = start + duration
lat.clear()  # setup (record, workspace capture) is not the workload
n = 0
while time.time() < end:
    for _ in range(100):
        studio.log(n, loss=1.0 / (n + 1))
        n += 1
    if rate:  # a training loop's pace: `rate` points a second
        time.sleep(max(0.0, start + n / rate - time.time()))
    else:
        time.sleep(0.001)
exp.close()
json.dump({"key": exp.tag, "logged": n, "latencies": lat}, open(out, "w"))
"""

MLFLOW_CLIENT = r"""
import json, os, sys, time, logging
logging.getLogger("mlflow").setLevel(logging.ERROR)
import mlflow
out, go, duration, url, rate = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
mlflow.set_tracking_uri(url)
mlflow.set_experiment("bench")
run = mlflow.start_run()
open(out + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.01)
start = float(open(go).read())
end = start + duration
lat, n = [], 0
while time.time() < end:
    t = time.perf_counter()
    mlflow.log_metric("loss", 1.0 / (n + 1), step=n)
    lat.append(time.perf_counter() - t)
    n += 1
    if rate:
        time.sleep(max(0.0, start + n / rate - time.time()))
mlflow.end_run()
json.dump({"logged": n, "latencies": lat}, open(out, "w"))
"""

WORKER = r"""
import json, os, sys, time
from studio.entities import Experiment, Status
from studio.keys import new_key
from studio.meta.http import HttpMetaStore
out, go, duration, url, token = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
store = HttpMetaStore(url, token)
name = f"bench-worker-{os.getpid()}"
def queued():
    store.create_experiment(Experiment(key=new_key(), project="bench-queue", owner="bench", script="t.py",
                                       status=Status.QUEUED, queue="bench", time_added=time.time()))
for _ in range(20):
    queued()
open(out + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.01)
end = float(open(go).read()) + duration
claims, claimed = [], 0
while time.time() < end:
    t = time.perf_counter()
    exp = store.claim("bench", name, 30.0)
    claims.append(time.perf_counter() - t)
    if exp is None:
        time.sleep(0.05)
        continue
    claimed += 1
    store.set_status(exp.key, Status.FINISHED, expect=[Status.RUNNING], worker=name, returncode=0)
    queued()
json.dump({"claimed": claimed, "claims": claims}, open(out, "w"))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop a server and the processes it started (its own session)."""
    import signal

    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_clients(code: str, n: int, argv: list[str], env: dict[str, str], work: Path, duration: float,
                workers: tuple[str, int, list[str]] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Start `n` processes of `code` (and the workers), start them together, collect outputs."""
    go = work / "go"
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    for i in range(n):
        d = work / f"c{i}"
        d.mkdir()
        out = d / "out.json"
        procs.append((subprocess.Popen([sys.executable, "-c", code, str(out), str(go), str(duration), *argv],
                                       cwd=d, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL), out))  # fmt: skip
    wprocs: list[tuple[subprocess.Popen[bytes], Path]] = []
    if workers:
        wcode, count, wargv = workers
        for i in range(count):
            out = work / f"w{i}.json"
            wprocs.append((subprocess.Popen([sys.executable, "-c", wcode, str(out), str(go), str(duration), *wargv],
                                            cwd=work, env=env, stdin=subprocess.DEVNULL), out))  # fmt: skip
    everyone = procs + wprocs
    deadline = time.monotonic() + 600
    while not all(Path(str(out) + ".ready").exists() for _, out in everyone):
        if any(p.poll() not in (None, 0) for p, _ in everyone) or time.monotonic() > deadline:
            raise RuntimeError("a client failed to start")
        time.sleep(0.1)
    ready = go.with_suffix(".tmp")
    ready.write_text(str(time.time() + 0.5))
    ready.rename(go)  # atomically: a client must never read it half-written
    for p, _ in everyone:
        p.wait(timeout=duration + 600)
    return ([json.loads(out.read_text()) for _, out in procs], [json.loads(out.read_text()) for _, out in wprocs])


def bench_studio(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    server_home = tmp / "server"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, STUDIOML_HOME=str(server_home), STUDIOML_SERVER_TOKEN=TOKEN, PYTHONPATH=str(ROOT))
    if args.postgres:
        env["STUDIOML_DATABASE_URL"] = args.postgres
    server = subprocess.Popen([sys.executable, "-m", "studio", "ui", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    try:
        wait_http(f"{url}/api/health", server)
        client_home = tmp / "client"
        client_home.mkdir()
        (client_home / "config.yaml").write_text(f"database:\n  type: http\n  serverUrl: {url}\n")
        cenv = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STUDIOML_"))}
        cenv.update(STUDIOML_HOME=str(client_home), STUDIOML_API_TOKEN=TOKEN, PYTHONPATH=str(ROOT))
        work = tmp / "studio-clients"
        work.mkdir()
        started = time.time()
        clients, workers = run_clients(STUDIO_CLIENT, args.clients, [str(args.capture_interval), str(args.rate)], cenv, work,
                                       args.duration, (WORKER, args.workers, [url, TOKEN]))  # fmt: skip
        wall = time.time() - started

        from studio.meta.http import HttpMetaStore

        store = HttpMetaStore(url, TOKEN)
        summaries = store.metric_summaries([c["key"] for c in clients])
        store.close()
        durable = sum(s.count for rows in summaries.values() for s in rows if s.key == "loss")
        lat = [x for c in clients for x in c["latencies"]]
        claims = [x for w in workers for x in w["claims"]]
        return {
            "clients": args.clients, "workers": args.workers, "duration_s": args.duration, "wall_s": round(wall, 1),
            "rate_per_client": args.rate,
            "points_logged": sum(c["logged"] for c in clients), "points_on_server": durable,
            "points_per_s": durable / args.duration, "requests": len(lat),
            "request_p50_ms": pct(lat, 0.5) * 1e3, "request_p99_ms": pct(lat, 0.99) * 1e3,
            "claims": len(claims), "claimed": sum(w["claimed"] for w in workers),
            "claim_p50_ms": pct(claims, 0.5) * 1e3, "claim_p99_ms": pct(claims, 0.99) * 1e3,
        }  # fmt: skip
    finally:
        stop(server)


def bench_mlflow(args: argparse.Namespace, tmp: Path) -> dict[str, Any] | None:
    exe = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    if not os.path.exists(exe):
        print("mlflow is not installed: skipping the MLflow side (pip install mlflow)", file=sys.stderr)
        return None
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [exe, "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}", "--default-artifact-root", str(tmp / "mlruns")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_http(f"{url}/health", server, timeout=600)  # slow to start on a loaded machine
        work = tmp / "mlflow-clients"
        work.mkdir()
        clients, _ = run_clients(MLFLOW_CLIENT, args.clients, [url, str(args.rate)], dict(os.environ), work, args.duration)
        lat = [x for c in clients for x in c["latencies"]]
        points = sum(c["logged"] for c in clients)
        return {"points_on_server": points, "points_per_s": points / args.duration, "requests": len(lat),
                "request_p50_ms": pct(lat, 0.5) * 1e3, "request_p99_ms": pct(lat, 0.99) * 1e3}  # fmt: skip
    finally:
        stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="points a second each client logs at most (0: as fast as it can)")
    parser.add_argument("--capture-interval", type=float, default=10.0, help="checkpoint interval of each client")
    parser.add_argument("--postgres", help="the studio server's database URL (default: SQLite in a temp home)")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-server-") as t:
        tmp = Path(t)
        load = os.getloadavg()
        studio_figures = bench_studio(args, tmp)
        print(json.dumps({"studio": studio_figures}), file=sys.stderr, flush=True)
        mlflow_figures = None if args.no_mlflow else bench_mlflow(args, tmp)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
              "load_before": [round(x, 1) for x in load], "load_after": [round(x, 1) for x in os.getloadavg()],
              "studio": studio_figures, "mlflow": mlflow_figures}  # fmt: skip
    if mlflow_figures and mlflow_figures["points_per_s"]:
        result["speedup_points_per_s"] = studio_figures["points_per_s"] / mlflow_figures["points_per_s"]
    print(json.dumps(result, indent=2, default=lambda x: round(x, 2)))


if __name__ == "__main__":
    main()
