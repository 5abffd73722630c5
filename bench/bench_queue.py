"""Queue and workers: pickup latency, throughput through 2 workers, cached --python-pkg env.

    python bench/bench_queue.py [--experiments 200] [--latency-runs 10]

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiments", type=int, default=200)
    ap.add_argument("--latency-runs", type=int, default=10)
    ap.add_argument("--loop", type=int, default=50, help="experiments of the sequential `studio run` loop")
    ap.add_argument("--only", choices=["latency", "throughput", "env"], help="run one part only")
    a = ap.parse_args()

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


def throughput(ctx, ws: Path, queue_one, rows, n: int, loop: int) -> None:  # type: ignore[no-untyped-def]
    """N queued experiments drained by 2 workers, against a sequential `studio run` loop."""
    direct = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, str(ws / "t.py")], check=True, capture_output=True)
        direct.append(time.perf_counter() - t)
    t_direct = statistics.median(direct)
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
