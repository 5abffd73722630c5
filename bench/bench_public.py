"""Studio through the doors its README shows users, with the peers in the same run.

Each workload calls the public API (what README.md and docs/ tell users to call), and the
peer's public API where it is installed (MLflow on SQLite, Sacred with a FileStorageObserver);
each row prints studio's figure, the peer's and the ratio.

W1  create + end a run with 10 params and 5 tags: ``workbook.new_experiment(params=...)`` ...
    ``close()`` in a loop, in a script folder that is a git repository (studio has no tags:
    the 5 go in as 5 more params). MLflow: ``start_run`` + ``log_params`` + ``set_tags`` +
    ``end_run``. Sacred: an ``Experiment`` with a FileStorageObserver, ``ex.run(config_updates=...)``.
W3  1,000,000 points over 10 keys: ``studio.log(step, k0=..., ..., k9=...)`` then the flush
    that makes them durable (closed, fsynced segments). MLflow: ``log_metrics`` of 10 per call
    (capped at 20,000 points: the ratio is per point). Sacred: ``run.log_scalar``.
W4  one 100,000-point series into pandas: ``ExperimentRepository()[key].metrics("loss")``
    (a fresh repository each time). MLflow: ``MlflowClient().get_metric_history``.
W5  2,000 runs, ``lr < 0.01`` sorted by ``val_loss``, top 10 into pandas from a *fresh*
    ``ExperimentRepository()``. MLflow: ``mlflow.search_runs`` (also fresh client state).
P1  the first ``studio.log`` in a new process: the longest gap between two steps of a
    training loop (1 ms of work a step) around it, against the same loop without studio.
W7  disk used by W3's run: the run folder plus the object store.

Load average (``/proc/loadavg``) is printed at the start and the end; run it a few times.

    python bench/bench_public.py [--w1-runs 200] [--points 1000000] [--no-peers] [--only W1,W4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT  # the studio source tree measured (--tree: e.g. an older commit, `git archive`)


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
    except OSError:
        return "?"


def version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as v

    try:
        return v(name)
    except PackageNotFoundError:
        return None


def median_of(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    vals = [fn() for _ in range(repeats)]
    return statistics.median(vals), min(vals)


def run_py(code: str, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run `code` in a fresh interpreter (the measured process); its last line is JSON."""
    script = cwd / f"bench_{abs(hash(code)) % 10**8}.py"  # a file: what users run (Sacred needs one)
    script.write_text(textwrap.dedent(code))
    out = subprocess.run(
        [sys.executable, script.name], env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def compile_bytecode(package_dir: Path) -> None:
    """As `bench_run.py`: an installed wheel has .pyc files (pip compiles them), but this
    environment sets PYTHONDONTWRITEBYTECODE=1, so a source tree without them would make every
    measured process compile studio's modules from source (0.08-0.17 s of a first call, where
    the peers, installed, compile nothing)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package_dir)], check=True)


def studio_env(home: Path) -> dict[str, str]:
    env = dict(os.environ, STUDIOML_HOME=str(home), PYTHONPATH=str(TREE))
    env.pop("STUDIOML_EXPERIMENT", None)
    return env


def git_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "train.py").write_text("print('train')\n")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "x"]):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return path


# -- W1 ----------------------------------------------------------------------------------------
W1_STUDIO = """
import json, sys, time
from studio import workbook
params = {f"p{i}": i * 0.1 for i in range(10)}
params.update({f"tag{i}": f"v{i}" for i in range(5)})
workbook.new_experiment(params=params, echo=False).close()  # first: imports, store created
n = %d
t, c = time.perf_counter(), time.process_time()
for _ in range(n):
    exp = workbook.new_experiment(params=params, echo=False)
    exp.close()
wall, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"rate": n / wall, "cpu_rate": n / cpu}))
"""

W1_MLFLOW = """
import json, time, logging, warnings
warnings.filterwarnings("ignore"); logging.disable(logging.WARNING)
import mlflow
mlflow.set_tracking_uri("sqlite:///%s/mlflow.db")
params = {f"p{i}": i * 0.1 for i in range(10)}
tags = {f"tag{i}": f"v{i}" for i in range(5)}
with mlflow.start_run(): mlflow.log_params(params)
n = %d
t, c = time.perf_counter(), time.process_time()
for _ in range(n):
    mlflow.start_run(); mlflow.log_params(params); mlflow.set_tags(tags); mlflow.end_run()
wall, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"rate": n / wall, "cpu_rate": n / cpu}))
"""

W1_SACRED = """
import json, time, logging
logging.disable(logging.WARNING)
from sacred import Experiment
from sacred.observers import FileStorageObserver
ex = Experiment("w1", save_git_info=False)
ex.observers.append(FileStorageObserver("%s/sacred"))
ex.logger = logging.getLogger("quiet"); ex.logger.disabled = True
@ex.config
def cfg():
    p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = p8 = p9 = 0.1
@ex.main
def main(): pass
params = {f"p{i}": i * 0.1 for i in range(10)}
ex.run(config_updates=params, meta_info={"tags": ["a"]})
n = %d
t, c = time.perf_counter(), time.process_time()
for _ in range(n):
    ex.run(config_updates=params, meta_info={"comment": "x"}, options={"--name": "w1"})
wall, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"rate": n / wall, "cpu_rate": n / cpu}))
"""


# Sacred 0.8.7 imports `pkg_resources`, which setuptools >= 81 no longer ships: the peer runs
# with this stand-in built on importlib.metadata (the same facts: distributions, versions,
# top-level module names), put first on its PYTHONPATH.
PKG_RESOURCES_SHIM = """
from importlib import metadata as _md

class _Dist:
    def __init__(self, d):
        self._d = d
        self.project_name = d.metadata["Name"] or ""
        self.key = self.project_name.lower()
        self.version = d.version

    def _get_metadata(self, name):
        text = self._d.read_text(name) or ""
        return [line.strip() for line in text.splitlines() if line.strip()]

class _WorkingSet(list):
    pass

working_set = _WorkingSet(_Dist(d) for d in _md.distributions())
working_set.by_key = {d.key: d for d in working_set}

def resource_filename(package, name):
    import importlib.resources
    return str(importlib.resources.files(package) / name)
"""


def sacred_env(tmp: Path) -> dict[str, str]:
    shim = tmp / "pkg-resources-shim"
    shim.mkdir(exist_ok=True)
    (shim / "pkg_resources.py").write_text(PKG_RESOURCES_SHIM)
    return dict(os.environ, PYTHONPATH=str(shim))


def w1(tmp: Path, runs: int, peers: bool) -> None:
    folder = git_folder(tmp / "w1-project")
    s = run_py(W1_STUDIO % runs, studio_env(tmp / "w1-home"), folder)
    print(f"| W1 create + end a run, 10 params + 5 tags: runs/s | {s['rate']:,.0f} ({s['cpu_rate']:,.0f} per CPU-s) | 300 |")
    if peers and version("mlflow"):
        m = run_py(W1_MLFLOW % (tmp, min(runs, 100)), dict(os.environ), folder)
        print(f"|   MLflow {version('mlflow')} (sqlite) | {m['rate']:,.1f} ({m['cpu_rate']:,.1f} per CPU-s) | studio {s['rate'] / m['rate']:,.1f}x |")
    if peers and version("sacred"):
        m = run_py(W1_SACRED % (tmp, runs), sacred_env(tmp), folder)
        print(f"|   Sacred {version('sacred')} (FileStorageObserver) | {m['rate']:,.1f} ({m['cpu_rate']:,.1f} per CPU-s) | studio {s['rate'] / m['rate']:,.1f}x |")


# -- W3, W7, W4 --------------------------------------------------------------------------------
W3_STUDIO = """
import json, sys, time
import studio
from studio import workbook
exp = workbook.new_experiment(name="w3", echo=False)
from studio.tracking import metrics
logger = metrics.default_logger()
keys = [f"k{i}" for i in range(10)]
n = %d // 10
t, c = time.perf_counter(), time.process_time()
log = studio.log
for step in range(n):
    log(step, k0=0.1, k1=0.2, k2=0.3, k3=0.4, k4=0.5, k5=0.6, k6=0.7, k7=0.8, k8=0.9, loss=step * 1e-3)
logger.flush()
wall, cpu = time.perf_counter() - t, time.process_time() - c
exp.close()
print(json.dumps({"rate": 10 * n / wall, "cpu_rate": 10 * n / cpu}))
"""

W3_MLFLOW = """
import json, time, logging, warnings
warnings.filterwarnings("ignore"); logging.disable(logging.WARNING)
import mlflow
mlflow.set_tracking_uri("sqlite:///%s/mlflow3.db")
n = %d // 10
with mlflow.start_run() as run:
    t = time.perf_counter()
    for step in range(n):
        mlflow.log_metrics({f"k{i}": 0.1 * i for i in range(10)}, step=step)
    wall = time.perf_counter() - t
print(json.dumps({"rate": 10 * n / wall, "run": run.info.run_id}))
"""

W3_SACRED = """
import json, time, logging
logging.disable(logging.WARNING)
from sacred import Experiment
from sacred.observers import FileStorageObserver
ex = Experiment("w3", save_git_info=False)
ex.observers.append(FileStorageObserver("%s/sacred3"))
n = %d // 10
out = {}
@ex.main
def main(_run):
    t = time.perf_counter()
    for step in range(n):
        for i in range(10):
            _run.log_scalar(f"k{i}", 0.1 * i, step)
    out["wall"] = time.perf_counter() - t
ex.run()
print(json.dumps({"rate": 10 * n / out["wall"]}))
"""

W4_STUDIO = """
import json, time
from studio.workbook import ExperimentRepository
def once():
    t = time.perf_counter()
    repo = ExperimentRepository()
    df = repo["w3"].metrics("loss")
    dt = time.perf_counter() - t
    assert len(df) == %d, len(df)
    repo.close()
    return dt
first = once()
times = sorted(once() for _ in range(9))
print(json.dumps({"first": first, "median": times[4], "best": times[0]}))
"""

W4_MLFLOW = """
import json, time, logging, warnings
warnings.filterwarnings("ignore"); logging.disable(logging.WARNING)
import pandas as pd
from mlflow.tracking import MlflowClient
c = MlflowClient("sqlite:///%s/mlflow3.db")
t = time.perf_counter()
h = c.get_metric_history("%s", "k0")
df = pd.DataFrame({"step": [m.step for m in h], "value": [m.value for m in h]})
print(json.dumps({"median": time.perf_counter() - t, "points": len(df)}))
"""


def du(*paths: Path) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()
    for p in paths:
        if p.is_file():
            st = p.stat()
            total += st.st_blocks * 512
            continue
        for dirpath, _, files in os.walk(p):
            for f in files:
                st = os.lstat(os.path.join(dirpath, f))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def w3_w4_w7(tmp: Path, points: int, peers: bool) -> None:
    home = tmp / "w3-home"
    folder = git_folder(tmp / "w3-project")
    s = run_py(W3_STUDIO % points, studio_env(home), folder)
    print(f"| W3 {points:,} points over 10 keys, `studio.log`, durable: points/s | {s['rate']:,.0f} ({s['cpu_rate']:,.0f} per CPU-s) | 1,000,000 |")
    mlflow_run = None
    if peers and version("mlflow"):
        mp = min(points, 20_000)
        m = run_py(W3_MLFLOW % (tmp, mp), dict(os.environ), folder)
        mlflow_run = (m["run"], mp // 10)
        print(f"|   MLflow `log_metrics` ({mp:,} points) | {m['rate']:,.0f} | studio {s['rate'] / m['rate']:,.0f}x |")
    if peers and version("sacred"):
        m = run_py(W3_SACRED % (tmp, min(points, 200_000)), sacred_env(tmp), folder)
        print(f"|   Sacred `log_scalar` ({min(points, 200_000):,} points) | {m['rate']:,.0f} | studio {s['rate'] / m['rate']:,.1f}x |")
    exp_dir = home / "experiments" / "w3"
    disk = du(exp_dir, home / "objects")
    print(f"| W7 disk of W3's run (run folder + object store, each file once): MB | {disk / 1e6:,.1f} "
          f"(folder {du(exp_dir) / 1e6:,.1f}, store {du(home / 'objects') / 1e6:,.1f}) | each point stored once |")
    if peers and version("mlflow"):
        print(f"|   MLflow sqlite file ({min(points, 20_000):,} points) | {du(tmp / 'mlflow3.db') / 1e6:,.1f} MB | |")
    r = run_py(W4_STUDIO % (points // 10), studio_env(home), folder)
    print(f"| W4 `ExperimentRepository()[key].metrics(\"loss\")`, {points // 10:,} points, fresh repository: s | "
          f"{r['median']:.4f} (best {r['best']:.4f}; first in the process {r['first']:.3f}) | 0.02 |")
    if mlflow_run is not None:
        m = run_py(W4_MLFLOW % (tmp, mlflow_run[0]), dict(os.environ), folder)
        scaled = m["median"] * (points // 10) / max(1, m["points"])
        print(f"|   MLflow `get_metric_history` -> DataFrame ({m['points']:,} points, scaled to {points // 10:,}) | {scaled:.3f} | studio {scaled / r['median']:,.0f}x |")


# -- W5 ----------------------------------------------------------------------------------------
W5_FILL = """
import json, random
from studio.api.context import Context
from studio.entities import Experiment, MetricSummary, Status
ctx = Context.from_env()
rng = random.Random(1)
for i in range(%d):
    key = f"c-{i:05d}"
    ctx.meta.create_experiment(Experiment(key=key, project="c", status=Status.RUNNING, time_added=1.7e9 + i,
        params={"lr": 10 ** rng.uniform(-4, 0), "batch": rng.choice([16, 32, 64])}))
    ctx.meta.put_metric_summaries(key, [MetricSummary("val_loss", rng.random(), 0.0, 1.0, 100, 99)])
    ctx.meta.set_status(key, Status.FINISHED, returncode=0)
print(json.dumps({}))
"""

W5_STUDIO = """
import json, time
from studio.workbook import ExperimentRepository
def once():
    t = time.perf_counter()
    repo = ExperimentRepository()
    df = repo.runs(where="lr < 0.01", order_by="metrics.val_loss", limit=10)
    dt = time.perf_counter() - t
    assert len(df) == 10
    repo.close()
    return dt
first = once()
times = sorted(once() for _ in range(11))
print(json.dumps({"first": first, "median": times[5], "best": times[0]}))
"""

W5_MLFLOW = """
import json, time, random, logging, warnings
warnings.filterwarnings("ignore"); logging.disable(logging.WARNING)
import mlflow
from mlflow.entities import Metric, Param
mlflow.set_tracking_uri("sqlite:///%s/mlflow5.db")
c = mlflow.MlflowClient()
eid = c.create_experiment("w5")
rng = random.Random(1)
for i in range(%d):
    r = c.create_run(eid)
    lr = 10 ** rng.uniform(-4, 0)
    c.log_batch(r.info.run_id, metrics=[Metric("lr", lr, 0, 0), Metric("val_loss", rng.random(), 0, 0)],
                params=[Param("lr", str(lr)), Param("batch", "32")])
    c.set_terminated(r.info.run_id)
def once():
    t = time.perf_counter()
    df = mlflow.search_runs(experiment_ids=[eid], filter_string="metrics.lr < 0.01",
                            order_by=["metrics.val_loss ASC"], max_results=10)
    assert len(df) == 10
    return time.perf_counter() - t
once()
times = sorted(once() for _ in range(5))
print(json.dumps({"median": times[2]}))
"""


def w5(tmp: Path, runs: int, peers: bool) -> None:
    home = tmp / "w5-home"
    run_py(W5_FILL % runs, studio_env(home), tmp)
    s = run_py(W5_STUDIO, studio_env(home), tmp)
    print(f"| W5 {runs:,} runs, lr < 0.01 by val_loss, top 10 into pandas, fresh `ExperimentRepository()`: s | "
          f"{s['median']:.4f} (best {s['best']:.4f}; first in the process {s['first']:.3f}) | 0.02 |")
    if peers and version("mlflow"):
        m = run_py(W5_MLFLOW % (tmp, runs), dict(os.environ), tmp)
        print(f"|   MLflow `search_runs` | {m['median']:.4f} | studio {m['median'] / s['median']:,.1f}x |")


# -- P1: the first studio.log -------------------------------------------------------------------
P1 = """
import json, sys, time
with_studio = %r
if with_studio:
    import studio
    from studio import workbook
    exp = workbook.new_experiment(name="p1-%%d" %% time.time_ns(), echo=False)
gaps = []
last = time.perf_counter()
end = last + 2.0
step = 0
while last < end:
    if with_studio:
        studio.log(step, loss=step * 1e-3)
    x = 0
    for _ in range(20000):  # about 1 ms of work
        x += 1
    now = time.perf_counter()
    gaps.append(now - last)
    last = now
    step += 1
gaps.sort()
print(json.dumps({"max": gaps[-1], "p99": gaps[int(len(gaps) * 0.99)], "median": gaps[len(gaps) // 2]}))
"""


def p1(tmp: Path) -> None:
    folder = git_folder(tmp / "p1-project")
    rows = []
    for _ in range(3):
        base = run_py(P1 % False, dict(os.environ), folder)
        s = run_py(P1 % True, studio_env(tmp / "p1-home"), folder)
        rows.append((s["max"], base["max"], s["median"], base["median"]))
    smax = statistics.median(r[0] for r in rows)
    bmax = statistics.median(r[1] for r in rows)
    print(f"| P1 longest step of a 1 ms training loop, first 2 s after `new_experiment` (first `studio.log` inside): ms | "
          f"{smax * 1000:.1f} (same loop without studio: {bmax * 1000:.1f}; median step {statistics.median(r[2] for r in rows) * 1000:.2f} vs "
          f"{statistics.median(r[3] for r in rows) * 1000:.2f}) | no pause |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--w1-runs", type=int, default=200)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--w5-runs", type=int, default=2000)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--only", default="W1,W3,W5,P1")
    ap.add_argument("--tree", type=Path, default=ROOT, help="studio source tree to measure")
    args = ap.parse_args()
    global TREE
    TREE = args.tree.resolve()
    compile_bytecode(TREE / "studio")
    peers = not args.no_peers
    only = set(args.only.upper().split(","))
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; Python {platform.python_version()}; "
          f"{os.cpu_count()} CPUs; mlflow {version('mlflow')}; sacred {version('sacred')}; aim {version('aim')}; "
          f"pyarrow {version('pyarrow')}; pandas {version('pandas')}; studio tree {TREE} (byte-compiled first); "
          f"load {loadavg()}")
    print("| workload | result | target / ratio |\n|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-public-") as t:
        tmp = Path(t)
        if "W1" in only:
            w1(tmp, args.w1_runs, peers)
        if "W3" in only or "W4" in only or "W7" in only:
            w3_w4_w7(tmp, args.points, peers)
        if "W5" in only:
            w5(tmp, args.w5_runs, peers)
        if "P1" in only:
            p1(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load at the end {loadavg()}")


if __name__ == "__main__":
    main()
