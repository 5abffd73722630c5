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

#: Every HTTP request a process makes, timed client side, with the server's own time from its
#: `Server-Timing` header: a client starved of CPU shows a long client time, a slow server both.
TIMING = r"""
import json, os, re, sys, time
import httpx
lat, timed = [], []  # client-side seconds; (route, client ms, server ms) per request
_send = httpx.Client.send
def send(self, request, **kw):
    t = time.perf_counter()
    response = _send(self, request, **kw)
    took = time.perf_counter() - t
    lat.append(took)
    server = response.headers.get("server-timing", "")
    route = request.method + " " + re.sub(r"[0-9a-f]{64}", "{hash}", request.url.path)
    timed.append((route, took * 1e3, float(server.split("dur=", 1)[1]) if "dur=" in server else None))
    return response
httpx.Client.send = send
"""

STUDIO_CLIENT = TIMING + r"""
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
timed.clear()
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
json.dump({"key": exp.tag, "logged": n, "latencies": lat, "timed": timed}, open(out, "w"))
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

WORKER = TIMING + r"""
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
timed.clear()
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
json.dump({"claimed": claimed, "claims": claims, "timed": timed}, open(out, "w"))
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


def by_route(timed: list[list[Any]]) -> dict[str, dict[str, Any]]:
    """(route, client ms, server ms) rows -> per route: count, client and server p50/p99."""
    routes: dict[str, tuple[list[float], list[float]]] = {}
    for route, client, server in timed:
        c, s = routes.setdefault(route, ([], []))
        c.append(client)
        if server is not None:
            s.append(server)
    return {
        route: {"requests": len(c), "client_p50_ms": pct(c, 0.5), "client_p99_ms": pct(c, 0.99),
                "server_p50_ms": pct(s, 0.5), "server_p99_ms": pct(s, 0.99)}
        for route, (c, s) in sorted(routes.items(), key=lambda kv: -len(kv[1][0]))
    }  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def add_user(env: dict[str, str], name: str, *flags: str) -> str:
    """A team server's account (`studio users add`); its token."""
    proc = subprocess.run([sys.executable, "-m", "studio", "users", "add", name, *flags], env=env, cwd=env["STUDIOML_HOME"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return proc.stdout.strip()


def bench_studio(args: argparse.Namespace, tmp: Path, tree: Path = ROOT) -> dict[str, Any]:
    """One run of the studio side, with the server, clients and workers importing `tree`."""
    tmp = Path(tempfile.mkdtemp(dir=tmp))
    server_home = tmp / "server"
    server_home.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, STUDIOML_HOME=str(server_home), PYTHONPATH=str(tree))
    if args.postgres:
        env["STUDIOML_DATABASE_URL"] = args.postgres
    if args.team:  # `studio server`: accounts in the database, a user's token, an admin's for the workers
        client_token, worker_token = add_user(env, f"bench-{port}"), add_user(env, f"admin-{port}", "--admin")
        command = "server"
    else:  # `studio ui` with a shared token
        env["STUDIOML_SERVER_TOKEN"] = client_token = worker_token = TOKEN
        command = "ui"
    # cwd: `python -m` imports from the current directory first, which must not be a checkout
    server = subprocess.Popen([sys.executable, "-m", "studio", command, "--port", str(port)], env=env, cwd=server_home,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    try:
        wait_http(f"{url}/api/health", server)
        client_home = tmp / "client"
        client_home.mkdir()
        (client_home / "config.yaml").write_text(f"database:\n  type: http\n  serverUrl: {url}\n")
        cenv = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STUDIOML_"))}
        cenv.update(STUDIOML_HOME=str(client_home), STUDIOML_API_TOKEN=client_token, PYTHONPATH=str(tree))
        work = tmp / "studio-clients"
        work.mkdir()
        started = time.time()
        clients, workers = run_clients(STUDIO_CLIENT, args.clients, [str(args.capture_interval), str(args.rate)], cenv, work,
                                       args.duration, (WORKER, args.workers, [url, worker_token]))  # fmt: skip
        wall = time.time() - started
        server_cpu = cpu_seconds(server.pid)

        from studio.meta.http import HttpMetaStore

        store = HttpMetaStore(url, worker_token)
        summaries = store.metric_summaries([c["key"] for c in clients])
        store.close()
        durable = sum(s.count for rows in summaries.values() for s in rows if s.key == "loss")
        lat = [x for c in clients for x in c["latencies"]]
        claims = [x for w in workers for x in w["claims"]]
        timed = [row for p in clients + workers for row in p["timed"]]
        server_side = [row[2] for row in timed if row[2] is not None]
        return {
            "tree": str(tree), "server": f"studio {command}", "clients": args.clients, "workers": args.workers, "duration_s": args.duration, "wall_s": round(wall, 1),
            "rate_per_client": args.rate,
            "points_logged": sum(c["logged"] for c in clients), "points_on_server": durable,
            "points_per_s": durable / args.duration, "requests": len(lat),
            "request_p50_ms": pct(lat, 0.5) * 1e3, "request_p99_ms": pct(lat, 0.99) * 1e3,
            "claims": len(claims), "claimed": sum(w["claimed"] for w in workers),
            "claim_p50_ms": pct(claims, 0.5) * 1e3, "claim_p99_ms": pct(claims, 0.99) * 1e3,
            # the server's own time (Server-Timing), every request of clients and workers
            "server_requests": len(server_side), "server_p50_ms": pct(server_side, 0.5),
            "server_p99_ms": pct(server_side, 0.99), "server_cpu_s": round(server_cpu, 1),
            "routes": by_route(timed),
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


def route_table(figures: dict[str, Any]) -> str:
    lines = [f"{figures['tree']} ({figures['server']}): server p50 {figures['server_p50_ms']:.1f} ms, "
             f"p99 {figures['server_p99_ms']:.1f} ms; client p50 {figures['request_p50_ms']:.1f} ms, "
             f"p99 {figures['request_p99_ms']:.1f} ms; server CPU {figures['server_cpu_s']} s",
             f"  {'route':42} {'requests':>8} {'client p50':>10} {'p99':>8} {'server p50':>10} {'p99':>8}"]  # fmt: skip
    for route, r in figures["routes"].items():
        lines.append(f"  {route:42} {r['requests']:8d} {r['client_p50_ms']:10.1f} {r['client_p99_ms']:8.1f} "
                     f"{r['server_p50_ms']:10.1f} {r['server_p99_ms']:8.1f}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="points a second each client logs at most (0: as fast as it can)")
    parser.add_argument("--capture-interval", type=float, default=10.0, help="checkpoint interval of each client")
    parser.add_argument("--postgres", help="the studio server's database URL (default: SQLite in a temp home)")
    parser.add_argument("--team", action="store_true",
                        help="`studio server` with accounts (tokens checked in its database) instead of `studio ui`")
    parser.add_argument("--compare", metavar="TREE", type=Path,
                        help="also run the studio side on another checkout of studio, alternating with this one")
    parser.add_argument("--rounds", type=int, default=1, help="with --compare: rounds of the two, alternating")
    parser.add_argument("--no-mlflow", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-server-") as t:
        tmp = Path(t)
        load = os.getloadavg()
        compared: list[dict[str, Any]] = []
        trees = [args.compare.resolve(), ROOT] if args.compare else [ROOT]
        for i in range(args.rounds if args.compare else 1):
            for tree in trees if i % 2 == 0 else trees[::-1]:
                figures = bench_studio(args, tmp, tree)
                print(route_table(figures), file=sys.stderr, flush=True)
                compared.append(figures)
        studio_figures = compared[-1] if compared[-1]["tree"] == str(ROOT) else compared[-2]
        mlflow_figures = None if args.no_mlflow else bench_mlflow(args, tmp)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
              "load_before": [round(x, 1) for x in load], "load_after": [round(x, 1) for x in os.getloadavg()],
              "studio": studio_figures, "mlflow": mlflow_figures}  # fmt: skip
    if args.compare:
        result["rounds"] = compared
    if mlflow_figures and mlflow_figures["points_per_s"]:
        result["speedup_points_per_s"] = studio_figures["points_per_s"] / mlflow_figures["points_per_s"]
    print(json.dumps(result, indent=2, default=lambda x: round(x, 2)))


if __name__ == "__main__":
    main()
