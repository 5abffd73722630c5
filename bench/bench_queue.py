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
    a = ap.parse_args()

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

    # 1. pickup latency
    w = start_worker("latency")
    queue_one("latency")  # warm-up: the worker is up and has run one
    time.sleep(1.0)
    claims, starts = [], []
    for _ in range(a.latency_runs):
        key = queue_one("latency")
        submitted = time.time()
        wait_terminal(ctx, [key])
        exp = ctx.meta.get_experiment(key)
        claims.append(max(0.0, (exp.time_started or submitted) - submitted))
        starts.append(script_start(ctx, key) - submitted)
        time.sleep(0.5)
    w.terminate()
    w.wait()
    rows.append((f"pickup latency, submit -> claim (median of {a.latency_runs})",
                 f"{statistics.median(claims) * 1000:.0f} ms (max {max(claims) * 1000:.0f} ms)"))
    rows.append(("pickup latency, submit -> script running (median)",
                 f"{statistics.median(starts) * 1000:.0f} ms (max {max(starts) * 1000:.0f} ms)"))

    # 2. throughput
    direct = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, str(ws / "t.py")], check=True, capture_output=True)
        direct.append(time.perf_counter() - t)
    t_direct = statistics.median(direct)
    t = time.perf_counter()
    keys = [queue_one("throughput") for _ in range(a.experiments)]
    t_submit = (time.perf_counter() - t) / a.experiments
    t = time.perf_counter()
    workers = [start_worker("throughput", "--timeout", "1") for _ in range(2)]
    wait_terminal(ctx, keys, poll=0.5)
    wall = time.perf_counter() - t
    for p in workers:
        p.wait()
    statuses = {e.status.value for e in ctx.meta.get_experiments(keys)}
    per_exp = 2 * wall / a.experiments
    rows.append((f"throughput, {a.experiments} trivial experiments, 2 workers",
                 f"{a.experiments / wall:.1f} experiments/s ({wall:.1f} s; statuses {sorted(statuses)})"))
    rows.append(("worker time per experiment / `python t.py` alone",
                 f"{per_exp * 1000:.0f} ms / {t_direct * 1000:.0f} ms (overhead {(per_exp - t_direct) * 1000:.0f} ms)"))
    rows.append(("submit (in-process API, capture + record) per experiment", f"{t_submit * 1000:.0f} ms"))

    # 3. cached --python-pkg environment
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
    ctx.close()

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}; SQLite\n")
    print("| measure | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
