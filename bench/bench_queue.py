"""Queue and workers: pickup latency, throughput through 2 workers, cached --python-pkg env.

    python bench/bench_queue.py [--experiments 200] [--latency-runs 10]
    python bench/bench_queue.py --server [--experiments 50] [--workers 2]   # through a team server

All on the embedded defaults (SQLite + local object store) in a temp STUDIOML_HOME, with real
`studio worker` processes. Prints a Markdown table for docs/benchmarks.md.

1. Pickup latency: an idle worker is polling; an experiment is submitted (in-process API);
   measured from the moment the submit call returns to the claim (`time_started`) and to the
   script's first line of Python (it prints `time.time()`). Target: under 1 s.
2. Throughput: N trivial experiments queued, then 2 workers drain them; experiments/s over the
   whole drain (worker start-up included), and the per-experiment overhead: worker-seconds
   per experiment minus the time `python script.py` takes by itself.
   Compared, in the same run, with what a user would do without a queue: a sequential shell
   loop running `studio run t.py` N times in the same workspace (`--loop N` of them, scaled:
   the loop's experiments/s). The ratio printed is pool / loop experiments per second.
3. Cached environment: two experiments with the same `--python-pkg` (a local wheel, pip
   offline); time from claim to the script's start for the first (virtualenv built) and the
   second (cache hit).

`--server`: part 2 through a team server instead: `studio server` (SQLite + local object
store in its own home) on loopback, experiments submitted by a user holding only the URL and
a token (`database: {type: http, serverUrl}`), drained by `studio worker` processes holding
only the URL and a worker token. Besides the overhead per experiment, it counts the HTTP
requests the workers make per experiment, by route (httpx, patched in the worker processes
through a `sitecustomize` module), and the server's CPU seconds. `--tree PATH` runs the
server, the submitter and the workers on another checkout (a before/after comparison).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

SCRIPT = "import time\nprint('t0', repr(time.time()), flush=True)\n"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build_wheel(dest: Path, name: str = "benchtinypkg", version: str = "1.0") -> None:
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "X = 1\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(t.encode())}" for p, t in files.items()]
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest / f"{name}-{version}-py3-none-any.whl", "w") as zf:
        for p, t in files.items():
            zf.writestr(p, t)


def start_worker(queue: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "studio", "worker", "--queue", queue, *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def script_start(ctx, key: str) -> float:  # type: ignore[no-untyped-def]
    text = "".join(c.text for c in ctx.meta.read_output(key))
    for line in text.splitlines():
        if line.startswith("t0 "):
            return float(line.split()[1])
    raise RuntimeError(f"{key} printed no start time: {text!r}")


def wait_terminal(ctx, keys: list[str], timeout: float = 600, poll: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    """Poll only the unfinished keys (the bench must not load the machine it measures)."""
    deadline = time.monotonic() + timeout
    pending = list(keys)
    while time.monotonic() < deadline:
        pending = [e.key for e in ctx.meta.get_experiments(pending) if not e.status.terminal]
        if not pending:
            return
        time.sleep(poll)
    raise RuntimeError("experiments did not finish in time")


#: Loaded by every worker process (`sitecustomize`): count its HTTP requests by route and
#: write them to $BENCH_HTTP_LOG/<pid>.json at exit.
COUNTER = """
import atexit, collections, json, os, re, sys
httpx = None
if os.environ.get("BENCH_HTTP_LOG") and "worker" in sys.argv:  # not the scripts the workers run
    import httpx
if httpx is not None:
    counts = collections.Counter()
    _send = httpx.Client.send
    def send(self, request, **kw):
        counts[request.method + " " + re.sub(r"[0-9a-f]{64}", "{hash}", request.url.path)] += 1
        return _send(self, request, **kw)
    httpx.Client.send = send
    def dump():
        if counts:
            with open(os.path.join(os.environ["BENCH_HTTP_LOG"], f"{os.getpid()}.json"), "w") as f:
                json.dump(counts, f)
    atexit.register(dump)
"""


def server_mode(a: argparse.Namespace) -> None:
    """Part 2 through a team server (see the module docstring)."""
    import json
    import socket

    import httpx

    tree = (a.tree or Path(__file__).resolve().parents[1]).resolve()
    root = Path(tempfile.mkdtemp(prefix="bench-queue-server-"))
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(COUNTER)
    logs = root / "http"
    logs.mkdir()
    ws = root / "ws"
    ws.mkdir()
    (ws / "t.py").write_text(SCRIPT)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STUDIOML_", "AWS_"))}
    base.update(PYTHONPATH=str(tree), PYTHONUNBUFFERED="1")
    server_env = dict(base, STUDIOML_HOME=str(root / "server"))

    def add_user(name: str, *flags: str) -> str:
        return subprocess.run([sys.executable, "-m", "studio", "users", "add", name, *flags], env=server_env, cwd=root,
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip

    user, worker_token = add_user("alice"), add_user("w1", "--worker")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    # cwd=root: `python -m` imports from the current directory first, which must not be a checkout
    server = subprocess.Popen([sys.executable, "-m", "studio", "server", "--port", str(port)], env=server_env, cwd=root,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{url}/api/health", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the studio server did not start") from None
                time.sleep(0.2)

        def home(name: str, token: str) -> dict[str, str]:
            h = root / name
            h.mkdir()
            (h / "config.yaml").write_text(f"database:\n  type: http\n  serverUrl: {url}\n")
            return dict(base, STUDIOML_HOME=str(h), STUDIOML_API_TOKEN=token)

        submitter, worker_env = home("alice", user), home("worker", worker_token)
        worker_env.update(PYTHONPATH=f"{hook}{os.pathsep}{tree}", BENCH_HTTP_LOG=str(logs))
        submit_code = (
            "import sys, time\n"
            "from pathlib import Path\n"
            "from studio.api.context import Context\n"
            "from studio.api.run import RunOptions\n"
            "from studio.api.submit import submit\n"
            "ctx = Context.from_env()\n"
            "t = time.perf_counter()\n"
            "keys = [submit(ctx, RunOptions(script='t.py', cwd=Path(sys.argv[1]), queue='throughput', echo=False)).key"
            " for _ in range(int(sys.argv[2]))]\n"
            "print((time.perf_counter() - t) / len(keys))\n"
            "print(' '.join(keys))\n"
        )
        out = subprocess.run([sys.executable, "-c", submit_code, str(ws), str(a.experiments)], env=submitter, cwd=root,
                             capture_output=True, text=True, check=True).stdout.split("\n")  # fmt: skip
        t_submit, keys = float(out[0]), out[1].split()
        t_direct = script_alone(ws)
        cpu0 = _cpu_seconds(server.pid)
        t = time.perf_counter()
        workers = [subprocess.Popen([sys.executable, "-m", "studio", "worker", "--queue", "throughput", "--timeout", "1"],
                                    env=worker_env, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(a.workers)]  # fmt: skip
        for w in workers:
            w.wait(timeout=1800)
        wall = time.perf_counter() - t - 1.0  # the workers' idle timeout after the last one
        server_cpu = _cpu_seconds(server.pid) - cpu0
        from studio.meta.http import HttpMetaStore

        store = HttpMetaStore(url, user)
        statuses = sorted({e.status.value for e in store.get_experiments(keys)})
        store.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    counts: dict[str, int] = {}
    for f in logs.glob("*.json"):
        for route, n in json.loads(f.read_text()).items():
            counts[route] = counts.get(route, 0) + n
    n = len(keys)
    per_exp = a.workers * wall / n
    print(f"studio tree: {tree}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}; "
          f"team server (SQLite + local store) on loopback; load {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| measure | result |\n|---|---|")
    print(f"| throughput, {n} trivial experiments, {a.workers} workers through the server | "
          f"{n / wall:.1f} experiments/s ({wall:.1f} s; statuses {statuses}) |")
    print(f"| worker time per experiment / `python t.py` alone | {per_exp * 1000:.0f} ms / {t_direct * 1000:.0f} ms "
          f"(overhead {(per_exp - t_direct) * 1000:.0f} ms) |")
    print(f"| HTTP requests by the workers per experiment | {sum(counts.values()) / n:.1f} |")
    print(f"| server CPU per experiment | {server_cpu / n * 1000:.0f} ms |")
    print(f"| submit through the server (capture + record), per experiment | {t_submit * 1000:.0f} ms |")
    print("\n| route | requests per experiment |\n|---|---|")
    for route, count in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"| {route} | {count / n:.2f} |")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiments", type=int, default=None, help="default: 200 (50 with --server)")
    ap.add_argument("--latency-runs", type=int, default=10)
    ap.add_argument("--loop", type=int, default=50, help="experiments of the sequential `studio run` loop")
    ap.add_argument("--only", choices=["latency", "throughput", "env"], help="run one part only")
    ap.add_argument("--server", action="store_true", help="through a team server on loopback (see above)")
    ap.add_argument("--workers", type=int, default=2, help="with --server: worker processes")
    ap.add_argument("--tree", type=Path, help="with --server: the studio checkout to run (default: this one)")
    a = ap.parse_args()
    if a.server:
        a.experiments = a.experiments or 50
        server_mode(a)
        return
    a.experiments = a.experiments or 200

    import studio

    # As bench_run.py: this environment sets PYTHONDONTWRITEBYTECODE=1, so without compiled
    # bytecode every worker and `studio run` would measure the compiler.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(studio.__file__).parent)], check=True)
    root = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    os.environ["STUDIOML_HOME"] = str(root / "home")
    os.environ["PYTHONUNBUFFERED"] = "1"
    wheels = root / "wheels"
    build_wheel(wheels)
    os.environ.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    ws = root / "ws"
    ws.mkdir()
    (ws / "t.py").write_text(SCRIPT)

    from studio.api.context import Context
    from studio.api.run import RunOptions
    from studio.api.submit import submit

    ctx = Context.from_env()

    def queue_one(queue: str, pkgs: list[str] | None = None) -> str:
        return submit(ctx, RunOptions(script="t.py", cwd=ws, queue=queue, echo=False,
                                      python_pkgs=pkgs or [])).key

    rows: list[tuple[str, str]] = []

    if a.only in (None, "latency"):
        pickup_latency(ctx, queue_one, rows, a.latency_runs)
    if a.only in (None, "throughput"):
        throughput(ctx, ws, queue_one, rows, a.experiments, a.loop)
    if a.only in (None, "env"):
        cached_env(ctx, queue_one, rows)
    ctx.close()

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}; SQLite; "
          f"load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| measure | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


def pickup_latency(ctx, queue_one, rows, runs: int) -> None:  # type: ignore[no-untyped-def]
    """An idle worker polls; submit returns -> claimed, and -> the script's first line."""
    w = start_worker("latency")
    queue_one("latency")  # warm-up: the worker is up and has run one
    time.sleep(1.0)
    claims, starts, prepared = [], [], []
    for _ in range(runs):
        key = queue_one("latency")
        submitted = time.time()
        wait_terminal(ctx, [key])
        exp = ctx.meta.get_experiment(key)
        claims.append(max(0.0, (exp.time_started or submitted) - submitted))
        starts.append(script_start(ctx, key) - submitted)
        prepared.append(script_start(ctx, key) - (exp.time_started or submitted))
        # A random pause: a fixed one would lock the submissions to one phase of the worker's
        # poll and measure that phase, not the latency.
        time.sleep(0.5 + random.random() * 0.4)
    w.terminate()
    w.wait()
    if os.environ.get("BENCH_VERBOSE"):
        print("claims ms:", [round(c * 1000) for c in claims], file=sys.stderr)
    rows.append((f"pickup latency, submit -> claim (median of {runs})",
                 f"{statistics.median(claims) * 1000:.0f} ms (max {max(claims) * 1000:.0f} ms)"))
    rows.append(("pickup latency, submit -> script running (median)",
                 f"{statistics.median(starts) * 1000:.0f} ms (max {max(starts) * 1000:.0f} ms)"))
    rows.append(("of which claim -> script running (median)",
                 f"{statistics.median(prepared) * 1000:.0f} ms (max {max(prepared) * 1000:.0f} ms)"))


def script_alone(ws: Path) -> float:
    """Median seconds of `python t.py` by itself (5 runs)."""
    direct = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, str(ws / "t.py")], check=True, capture_output=True)
        direct.append(time.perf_counter() - t)
    return statistics.median(direct)


def throughput(ctx, ws: Path, queue_one, rows, n: int, loop: int) -> None:  # type: ignore[no-untyped-def]
    """N queued experiments drained by 2 workers, against a sequential `studio run` loop."""
    t_direct = script_alone(ws)
    # The loop a user would write instead of a queue: `for i in ...; do studio run t.py; done`.
    t = time.perf_counter()
    loop_cpu0 = os.times()
    for _ in range(loop):
        subprocess.run([sys.executable, "-m", "studio", "run", "--quiet", "t.py"], cwd=ws, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    loop_wall = time.perf_counter() - t
    loop_cpu = _child_cpu(loop_cpu0)
    t = time.perf_counter()
    keys = [queue_one("throughput") for _ in range(n)]
    t_submit = (time.perf_counter() - t) / n
    t = time.perf_counter()
    pool_cpu0 = os.times()
    workers = [start_worker("throughput", "--timeout", "1") for _ in range(2)]
    wait_terminal(ctx, keys, poll=0.5)
    wall = time.perf_counter() - t
    for p in workers:
        p.wait()
    pool_cpu = _child_cpu(pool_cpu0)
    statuses = {e.status.value for e in ctx.meta.get_experiments(keys)}
    per_exp = 2 * wall / n
    pool_rate, loop_rate = n / wall, loop / loop_wall
    rows.append((f"throughput, {n} trivial experiments, 2 workers (start-up included)",
                 f"{pool_rate:.1f} experiments/s ({wall:.1f} s, {pool_cpu / n * 1000:.0f} CPU-ms each; "
                 f"statuses {sorted(statuses)})"))
    rows.append((f"sequential shell loop of `studio run t.py`, {loop} experiments",
                 f"{loop_rate:.1f} experiments/s ({loop_wall:.1f} s, {loop_cpu / loop * 1000:.0f} CPU-ms each)"))
    rows.append(("pool of 2 workers / sequential loop", f"**{pool_rate / loop_rate:.2f}x**"))
    rows.append(("worker time per experiment / `python t.py` alone",
                 f"{per_exp * 1000:.0f} ms / {t_direct * 1000:.0f} ms (overhead {(per_exp - t_direct) * 1000:.0f} ms)"))
    rows.append(("submit (in-process API, capture + record) per experiment", f"{t_submit * 1000:.0f} ms"))


def _child_cpu(before: os.times_result) -> float:
    """CPU seconds (user + system) of the child processes waited for since `before`.
    Workers' own children (supervised scripts) count once their worker is waited for."""
    now = os.times()
    return (now.children_user - before.children_user) + (now.children_system - before.children_system)


def cached_env(ctx, queue_one, rows) -> None:  # type: ignore[no-untyped-def]
    """Two experiments with the same --python-pkg: claim -> script start, first and second."""
    first = queue_one("env", ["benchtinypkg==1.0"])
    second = queue_one("env", ["benchtinypkg==1.0"])
    start_worker("env", "--timeout", "1").wait()
    wait_terminal(ctx, [first, second])
    prep = []
    for key in (first, second):
        exp = ctx.meta.get_experiment(key)
        prep.append(script_start(ctx, key) - (exp.time_started or 0))
    rows.append(("--python-pkg env, claim -> script running: first (venv built)", f"{prep[0]:.2f} s"))
    rows.append(("--python-pkg env, claim -> script running: second (cached)", f"{prep[1]:.2f} s"))


if __name__ == "__main__":
    main()
