"""What accounts cost a studio server: store calls per second and their latency through
`HttpMetaStore`, on a single-user server with one shared token versus a team server
(`studio server`: a token looked up per request, the rules, an owner check per write).

    python bench/bench_auth.py [--calls 2000] [--threads 4]

Both servers are real (uvicorn on 127.0.0.1, in-process threads) over a fresh SQLite
database each; each runs the same mix of a supervisor's calls (heartbeat, append_output,
put_metric_summaries on an owned running experiment) and reads (get_experiment).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studio.api.context import Context  # noqa: E402
from studio.config import load_settings  # noqa: E402
from studio.entities import Experiment, MetricSummary, Status  # noqa: E402
from studio.meta.http import HttpMetaStore  # noqa: E402
from studio.server.accounts import Accounts  # noqa: E402
from studio.server.app import create_app  # noqa: E402
from studio.server.auth import Auth  # noqa: E402


def serve(app: Any) -> tuple[Any, str]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def workload(store: HttpMetaStore, calls: int, threads: int) -> dict[str, float]:
    key = f"bench-{time.monotonic_ns()}"
    store.create_experiment(Experiment(key=key, project="bench"))
    store.set_status(key, Status.RUNNING, worker="w", lease_expires=time.time() + 600)
    summary = [MetricSummary(key="loss", last=0.1, min=0.1, max=0.5, count=10, last_step=9)]
    ops = [
        lambda i: store.heartbeat(key, "w", 600.0),
        lambda i: store.append_output(key, 1, i, "line\n"),
        lambda i: store.put_metric_summaries(key, summary),
        lambda i: store.get_experiment(key),
    ]
    latencies: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        t0 = time.perf_counter()
        ops[i % len(ops)](i)
        dt = time.perf_counter() - t0
        with lock:
            latencies.append(dt)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(calls)))
    wall = time.perf_counter() - t0
    latencies.sort()
    return {
        "calls_per_s": calls / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, {args.calls} calls, {args.threads} threads")
    for mode in ("shared token (studio ui)", "accounts (studio server)"):
        with tempfile.TemporaryDirectory() as tmp:
            ctx = Context(load_settings(environ={"STUDIOML_HOME": tmp, "STUDIOML_SERVER_TOKEN": "shared"}))
            if mode.startswith("accounts"):
                accounts = Accounts.for_store(ctx.meta)
                token = accounts.add_user("alice", "user")
                app = create_app(ctx, auth=Auth.team(accounts))
            else:
                token, app = "shared", create_app(ctx)
            server, url = serve(app)
            store = HttpMetaStore(url, token)
            workload(store, 200, args.threads)  # warm up
            result = workload(store, args.calls, args.threads)
            store.close()
            server.should_exit = True
            ctx.close()
            print(f"{mode:28s} {result['calls_per_s']:8.0f} calls/s  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms")


if __name__ == "__main__":
    main()
