"""Workbook benchmark: (c) a table of experiments into pandas, (d) meld one CSV column.

(c) 2,000 finished experiments with params `lr` (log-uniform in [1e-4, 1]) and `batch`, and a
    final `val_loss` metric summary (what the checkpointer records from the series). Measured:
    ``wb.runs(where="lr < 0.01", order_by="metrics.val_loss", limit=10)``, a DataFrame with
    params, status, times and metric summaries. Peer, in the same run: MLflow on SQLite,
    ``mlflow.search_runs(filter_string="metrics.lr < 0.01", order_by=["metrics.val_loss ASC"],
    max_results=10)``, also a DataFrame (MLflow compares params as strings, so `lr` is also
    logged as a metric there to filter numerically). Target: < 0.05 s and >= 10x MLflow.
(d) 100 experiments whose workbook holds `loss.csv`: 100,000 rows of (step, loss, Date)
    written by the training side's `TimeSeriesLog`, captured into the object store.
    Measured: ``wb.meld_csv(tags, "loss.csv", "loss")`` into one 100,000 x 100 DataFrame,
    cold (each CSV parsed; the files are in the OS page cache, having just been written) and
    warm (parsed copies cached by blob hash). Target: < 1 s.

Timings are the median (best) of repeats, wall clock; CPU time of this process alongside.

    python bench/bench_workbook.py [--experiments 2000] [--meld 100] [--rows 100000] [--no-peers]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.api.context import Context  # noqa: E402
from studio.entities import ArtifactSpec, Experiment, MetricSummary, Status  # noqa: E402


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def timings(fn: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """(median wall, best wall, median CPU) seconds of `fn`."""
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), min(walls), statistics.median(cpus)


# -- (c) -------------------------------------------------------------------------------------
def fill_runs(ctx: Context, n: int) -> None:
    rng = random.Random(1)
    meta = ctx.meta
    for i in range(n):
        key = f"c-{i:05d}"
        meta.create_experiment(
            Experiment(
                key=key, project="c", status=Status.RUNNING, time_added=1.7e9 + i,
                params={"lr": 10 ** rng.uniform(-4, 0), "batch": rng.choice([16, 32, 64])},
            )
        )  # fmt: skip
        meta.put_metric_summaries(key, [MetricSummary("val_loss", rng.random(), 0.0, 1.0, 100, 99)])
        meta.set_status(key, Status.FINISHED, returncode=0)


def mlflow_fill(tmp: Path, n: int) -> str:
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    rng = random.Random(1)
    exp_id = client.create_experiment("c")
    for _ in range(n):
        lr = 10 ** rng.uniform(-4, 0)
        run = client.create_run(exp_id)
        client.log_batch(
            run.info.run_id,
            params=[Param("lr", repr(lr)), Param("batch", str(rng.choice([16, 32, 64])))],
            metrics=[Metric("val_loss", rng.random(), 0, 99), Metric("lr", lr, 0, 0)],
        )
        client.set_terminated(run.info.run_id)
    return str(exp_id)


def mlflow_query(exp_id: str) -> Any:
    import mlflow

    return mlflow.search_runs(
        experiment_ids=[exp_id],
        filter_string="metrics.lr < 0.01",
        order_by=["metrics.val_loss ASC"],
        max_results=10,
    )


# -- (d) -------------------------------------------------------------------------------------
def write_experiment(args: tuple[str, int, int]) -> str:
    """One experiment with a `loss.csv` of `rows` rows, recorded and captured (in a worker)."""
    key, rows, seed = args
    import numpy as np

    from studio.workbook.timeseries import TimeSeriesLog

    ctx = Context.from_env()
    folder = ctx.settings.experiment_dir(key) / "workbook"
    folder.mkdir(parents=True)
    log = TimeSeriesLog(folder / "loss.csv", ["step", "loss"], save_every=10_000)
    rng = np.random.default_rng(seed)
    curve = (1 / np.sqrt(np.arange(rows) + 1) + 0.05 * rng.random(rows)).tolist()
    for step, loss in enumerate(curve):
        log(step, loss)
    log.close()
    put = ctx.objects.put_tree(folder)
    spec = ArtifactSpec(
        tag="workbook", local_path=str(folder), tree=put.tree, size=put.size, files=put.files
    )
    ctx.meta.create_experiment(
        Experiment(
            key=key,
            project="d",
            status=Status.FINISHED,
            time_added=time.time(),
            artifacts={"workbook": spec},
        )
    )
    ctx.close()
    return key


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--experiments", type=int, default=2000, help="(c) table size")
    ap.add_argument("--meld", type=int, default=100, help="(d) experiments melded")
    ap.add_argument("--rows", type=int, default=100_000, help="(d) rows per experiment")
    ap.add_argument("--no-peers", action="store_true", help="skip MLflow")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="studio-bench-wb-"))
    os.environ["STUDIOML_HOME"] = str(tmp / "home")
    for var in (
        "STUDIOML_DATABASE_URL",
        "STUDIOML_STORAGE_URL",
        "STUDIOML_EXPERIMENT",
        "STUDIOML_CONFIG",
    ):
        os.environ.pop(var, None)
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> None:
    import pandas as pd
    import pyarrow

    from studio.workbook import ExperimentRepository

    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores; python {platform.python_version()}, "
        f"pandas {pd.__version__}, pyarrow {pyarrow.__version__}; "
        f"load average at start {os.getloadavg()[0]:.1f}\n"
    )
    ctx = Context.from_env()
    wb = ExperimentRepository(context=ctx)

    # (c)
    t = time.perf_counter()
    fill_runs(ctx, args.experiments)
    fill_c = time.perf_counter() - t
    top = wb.runs(where="lr < 0.01", order_by="metrics.val_loss", limit=10)
    assert (
        len(top) == 10
        and (top["params.lr"] < 0.01).all()
        and top["metrics.val_loss.last"].is_monotonic_increasing
    )
    c_med, c_best, c_cpu = timings(
        lambda: wb.runs(where="lr < 0.01", order_by="metrics.val_loss", limit=10), 21
    )
    d_med, d_best, _ = timings(
        lambda: wb.runs(where={"lr": ("<", 0.01)}, order_by="metrics.val_loss", limit=10), 21
    )
    full = wb.runs(where="lr < 0.01", order_by="metrics.val_loss")
    f_med, f_best, _ = timings(lambda: wb.runs(where="lr < 0.01", order_by="metrics.val_loss"), 5)
    t = time.perf_counter()
    wb._refresh_lost(force=True)
    refresh = time.perf_counter() - t

    # (d)
    jobs = [(f"d-{i:03d}", args.rows, i) for i in range(args.meld)]
    t = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        tags = pool.map(write_experiment, jobs, chunksize=1)
    fill_d = time.perf_counter() - t
    cache = ctx.settings.blob_cache / "tables"
    shutil.rmtree(cache, ignore_errors=True)
    t, c = time.perf_counter(), time.process_time()
    melded = wb.meld_csv(tags, "loss.csv", "loss")
    cold, cold_cpu = time.perf_counter() - t, time.process_time() - c
    assert melded.shape == (args.rows, args.meld) and melded.index.name == "step"
    m_med, m_best, m_cpu = timings(lambda: wb.meld_csv(tags, "loss.csv", "loss"), 5)
    shutil.rmtree(cache, ignore_errors=True)
    one_cold = timings(lambda: wb[tags[0]]["loss.csv"], 1)[0]
    one_med, one_best, _ = timings(lambda: wb[tags[0]]["loss.csv"], 11)

    print("| workload | studio: median (best) | CPU | target |")
    print("|---|---|---|---|")
    print(
        f'| (c) {args.experiments:,} experiments, `wb.runs(where="lr < 0.01", order_by="metrics.val_loss", '
        f"limit=10)` -> DataFrame | {c_med * 1e3:.1f} ms ({c_best * 1e3:.1f} ms) | {c_cpu * 1e3:.1f} ms | < 50 ms |"
    )
    print(f"| (c) same, `where` as a dict | {d_med * 1e3:.1f} ms ({d_best * 1e3:.1f} ms) | | |")
    print(
        f"| (c) same, whole filtered list ({len(full)} rows) | {f_med * 1e3:.1f} ms ({f_best * 1e3:.1f} ms) | | |"
    )
    print(
        f"| (c) marking lapsed experiments lost (at most every 5 s per repository) | {refresh * 1e3:.1f} ms | | |"
    )
    print(
        f"| (d) meld `loss` of {args.meld} x {args.rows:,}-row `loss.csv`, cold (CSV parsed) | {cold:.2f} s | "
        f"{cold_cpu:.2f} s | < 1 s |"
    )
    print(
        f"| (d) same, warm (parsed copies cached) | {m_med:.3f} s ({m_best:.3f} s) | {m_cpu:.3f} s | < 1 s |"
    )
    print(
        f'| one {args.rows:,}-row `loss.csv` into pandas (`wb[tag]["loss.csv"]`), cold / warm | '
        f"{one_cold * 1e3:.0f} ms / {one_med * 1e3:.1f} ms ({one_best * 1e3:.1f} ms) | | 20 ms (W4) |"
    )
    print(
        f"\n(filling (c) took {fill_c:.1f} s; writing and capturing (d) with 2 processes {fill_d:.1f} s)"
    )

    if not args.no_peers:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            print("\nMLflow is not installed (`pip install mlflow`): no peer figures")
            return
        t = time.perf_counter()
        exp_id = mlflow_fill(tmp, args.experiments)
        fill_m = time.perf_counter() - t
        got = mlflow_query(exp_id)
        assert len(got) == 10 and isinstance(got, pd.DataFrame)
        m_med, m_best, m_cpu = timings(lambda: mlflow_query(exp_id), 5)
        print("\n| workload | MLflow 3 (sqlite), same run: median (best) | CPU | studio is |")
        print("|---|---|---|---|")
        print(
            f'| (c) `mlflow.search_runs(filter_string="metrics.lr < 0.01", order_by=["metrics.val_loss ASC"], '
            f"max_results=10)` -> DataFrame | {m_med * 1e3:.0f} ms ({m_best * 1e3:.0f} ms) | {m_cpu * 1e3:.0f} ms | "
            f"{m_med / c_med:,.0f}x faster (best {m_best / c_best:,.0f}x) |"
        )
        print(f"\n(filling MLflow took {fill_m:.1f} s)")
    ctx.close()


if __name__ == "__main__":
    main()
