"""Dashboard benchmark: 10,000 experiments and one 1,000,000-point series behind `studio ui`.

    python bench/bench_ui.py [--experiments 10000] [--points 1000000] [--repeat 15] [--no-browser]

Fills a temp STUDIOML_HOME directly through the MetaStore (and one metrics tree through the
ObjectStore), starts the real `studio ui` in a subprocess and measures over HTTP (median of
`--repeat` warm requests after one cold one): the first page of the table, sorts and filters,
the status poll, the 1M-point series bucketed for a chart (cold and warm). Then in Chromium
(Playwright, Debian's /usr/bin/chromium): navigation to the table painted, and to the 1M-point
chart drawn with its spike. With mlflow installed, its search API runs the same queries on the
same 10,000 runs (SQLite, in-process) in the same run.

Targets (TARGETS.md): first page served < 200 ms and painted < 1 s; sort/filter < 300 ms;
1M-point chart < 1 s with the spike visible.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from studio.api.context import Context  # noqa: E402
from studio.config import load_settings  # noqa: E402
from studio.entities import ArtifactSpec, Experiment, MetricSummary, Status  # noqa: E402
from studio.tracking.segments import SegmentNamer, write_segment_to  # noqa: E402

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SPIKE = 1000.0
BIG_KEY = "bench-big-series"
QUERIES: dict[str, dict[str, Any]] = {
    "first page (newest first)": {},
    "sort by metric_value": {"sort": "metric_value"},
    "sort by params.lr": {"sort": "params.lr"},
    "sort by metrics.acc desc": {"sort": "-metrics.acc"},
    "filter lr < 0.01 and status = finished": {"filter": "lr < 0.01 and status = finished"},
    "filter + sort: opt = adam, by metrics.loss": {"filter": "opt = adam", "sort": "metrics.loss"},
    "text search 'bench-0042'": {"text": "bench-0042"},
    "project page (one of 20)": {"project": "proj-03"},
    "a page in the middle (offset n/2)": {"offset": -1},
}


def timed(fn: Callable[[], Any], repeat: int, budget: float = 5.0) -> tuple[float, float, Any]:
    """(cold seconds, median warm seconds, last result); slow calls repeat until `budget` s."""
    t = time.perf_counter()
    out = fn()
    cold = time.perf_counter() - t
    warm: list[float] = []
    while len(warm) < repeat and (not warm or sum(warm) < budget):
        t = time.perf_counter()
        out = fn()
        warm.append(time.perf_counter() - t)
    return cold, statistics.median(warm), out


def ms(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s >= 0.01 else f"{s * 1000:.1f} ms"


# -- data --------------------------------------------------------------------------------
def make_runs(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    start = time.time() - n * 60
    statuses = [Status.FINISHED] * 8 + [Status.FAILED, Status.STOPPED]
    runs = []
    for i in range(n):
        lr = 10 ** rnd.uniform(-4, -1)
        layers = rnd.randint(1, 8)
        opt = rnd.choice(["adam", "sgd", "rmsprop"])
        loss = 0.1 + abs(math.log10(lr) + 2.5) * 0.2 + rnd.random() * 0.1
        runs.append({
            "key": f"bench-{i:05d}", "project": f"proj-{i % 20:02d}", "owner": f"user{i % 5}",
            "status": statuses[i % len(statuses)], "time_added": start + i * 60,
            "params": {"lr": lr, "layers": layers, "opt": opt},
            "metrics": {"loss": loss, "acc": 1 - loss / 2},
        })
    return runs


def fill_studio(ctx: Context, runs: list[dict[str, Any]]) -> float:
    t = time.perf_counter()
    for r in runs:
        exp = Experiment(
            key=r["key"], project=r["project"], owner=r["owner"], script="train.py", args=("--epochs", "10"),
            status=r["status"], params=r["params"], metric="loss:min", metric_value=r["metrics"]["loss"],
            time_added=r["time_added"], time_started=r["time_added"] + 1, time_finished=r["time_added"] + 50,
        )
        ctx.meta.create_experiment(exp)
        ctx.meta.put_metric_summaries(r["key"], [
            MetricSummary(key=k, last=v, min=v, max=v + 1, count=100, last_step=99) for k, v in r["metrics"].items()
        ])
    return time.perf_counter() - t


def big_series(ctx: Context, root: Path, points: int) -> None:
    folder = root / "big-metrics"
    folder.mkdir()
    rng = np.random.default_rng(1)
    steps = np.arange(points, dtype=np.int64)
    values = 1.0 / (1.0 + steps / 1000.0) + rng.normal(0, 0.01, points)
    values[points * 2 // 3] = SPIKE
    namer = SegmentNamer()
    for part in np.array_split(np.arange(points), 10):  # ten flushes, as a long run writes
        cols = [("loss", steps[part], values[part], np.full(len(part), time.time()))]
        write_segment_to(folder / namer.next_name(".arrow"), cols, fsync=False)
    tree = ctx.objects.put_tree(folder)
    ctx.meta.create_experiment(Experiment(
        key=BIG_KEY, project="proj-00", owner="user0", script="long.py", status=Status.FINISHED, metric="loss:min",
        metric_value=float(values.min()), time_added=time.time() + 10, time_started=time.time(), time_finished=time.time(),
        artifacts={"metrics": ArtifactSpec(tag="metrics", tree=tree.tree, size=tree.size, files=tree.files)},
    ))
    ctx.meta.put_metric_summaries(BIG_KEY, [MetricSummary(key="loss", last=float(values[-1]), min=float(values.min()),
                                                           max=SPIKE, count=points, last_step=points - 1)])


# -- mlflow ------------------------------------------------------------------------------
def fill_mlflow(root: Path, runs: list[dict[str, Any]], points: int) -> tuple[Any, str, str, float] | None:
    try:
        import mlflow  # noqa: F401
        from mlflow.store.tracking.dbmodels.models import (
            SqlLatestMetric,
            SqlMetric,
            SqlParam,
            SqlRun,
        )
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    except ImportError:
        return None
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    store = SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}", str(root / "mlruns"))
    exp_id = store.create_experiment("bench")
    t = time.perf_counter()
    status = {Status.FINISHED: "FINISHED", Status.FAILED: "FAILED", Status.STOPPED: "KILLED"}
    with store.ManagedSessionMaker() as session:
        for r in runs:
            rid = r["key"].replace("-", "")
            ms_ = int(r["time_added"] * 1000)
            session.add(SqlRun(run_uuid=rid, name=r["key"], experiment_id=int(exp_id), user_id=r["owner"],
                               status=status[r["status"]], start_time=ms_, end_time=ms_ + 50_000,
                               lifecycle_stage="active", artifact_uri=str(root / "mlruns" / rid), source_type="LOCAL",
                               source_name="train.py", entry_point_name="", source_version=""))
            for k, v in r["params"].items():
                session.add(SqlParam(run_uuid=rid, key=k, value=str(v)))
            # MLflow compares params as text only; numeric filters need the value as a metric too.
            for k, v in [*r["metrics"].items(), ("lr", r["params"]["lr"])]:
                session.add(SqlLatestMetric(run_uuid=rid, key=k, value=v, timestamp=ms_, step=99, is_nan=False))
                session.add(SqlMetric(run_uuid=rid, key=k, value=v, timestamp=ms_, step=99, is_nan=False))
    fill = time.perf_counter() - t
    big = "benchbigseries"
    with store.ManagedSessionMaker() as session:
        session.add(SqlRun(run_uuid=big, name=BIG_KEY, experiment_id=int(exp_id), user_id="user0", status="FINISHED",
                           start_time=0, end_time=1, lifecycle_stage="active", artifact_uri="x", source_type="LOCAL",
                           source_name="long.py", entry_point_name="", source_version=""))
    rng = np.random.default_rng(1)
    values = 1.0 / (1.0 + np.arange(points) / 1000.0) + rng.normal(0, 0.01, points)
    values[points * 2 // 3] = SPIKE
    from sqlalchemy import insert

    with store.ManagedSessionMaker() as session:
        rows = [{"run_uuid": big, "key": "loss", "value": float(v), "timestamp": i, "step": i, "is_nan": False}
                for i, v in enumerate(values)]
        for i in range(0, len(rows), 50_000):
            session.execute(insert(SqlMetric.__table__), rows[i:i + 50_000])
    return store, exp_id, big, fill


def mlflow_queries(store: Any, exp_id: str) -> dict[str, Callable[[], Any]]:
    def search(filter_string: str = "", order_by: list[str] | None = None, page_token: Any = None) -> Any:
        return store.search_runs([exp_id], filter_string, 1, 50, order_by or ["attributes.start_time DESC"], page_token)

    return {
        "first page (newest first)": lambda: search(),
        "sort by metric_value": lambda: search(order_by=["metrics.loss ASC"]),
        "sort by params.lr": lambda: search(order_by=["params.lr ASC"]),
        "sort by metrics.acc desc": lambda: search(order_by=["metrics.acc DESC"]),
        "filter lr < 0.01 and status = finished": lambda: search("metrics.lr < 0.01 and attributes.status = 'FINISHED'"),
        "filter + sort: opt = adam, by metrics.loss": lambda: search("params.opt = 'adam'", ["metrics.loss ASC"]),
        "text search 'bench-0042'": lambda: search("attributes.run_name LIKE '%bench-0042%'"),
    }


# -- server and browser ------------------------------------------------------------------
def start_ui(env: dict[str, str], cwd: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`studio ui` on a free port; `cwd` decides which tree `python -m studio` imports first."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "studio", "ui", "--port", str(port)], env=env, cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("studio ui did not start")


def browser_times(base: str, repeat: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = b.new_page(viewport={"width": 1360, "height": 900})
        table, chart, series_only = [], [], []
        spike_seen = True
        for i in range(repeat + 1):
            page.goto(base + "/all", wait_until="commit")
            page.wait_for_function("window.studioTablePainted !== undefined && "
                                   "document.querySelectorAll('#runs tbody tr[data-key]').length === 50")
            painted = page.evaluate("window.studioTablePainted")
            page.goto(f"{base}/experiment/{BIG_KEY}", wait_until="commit")
            page.wait_for_function("window.studioPanelsDrawn !== undefined && "
                                   "document.querySelector('.panel-plot')?.dataset.rendered === '1'")
            drawn = page.evaluate("window.studioPanelsDrawn")
            ys = page.evaluate("document.querySelector('.panel-plot').data[0].y")
            spike_seen = spike_seen and max(v for v in ys if v is not None) == SPIKE
            # The chart alone: one refresh (request, bucketing, drawing) on the loaded page.
            again = page.evaluate("""async () => {
                const div = document.querySelector('.panel-plot');
                const t = performance.now();
                await new Promise((resolve) => {
                  div.on('plotly_afterplot', function h() { div.removeListener('plotly_afterplot', h); resolve(); });
                  window.studioRefresh(); });
                return performance.now() - t; }""")
            if i:  # the first round warms the browser cache (plotly.js) and the server
                table.append(painted / 1000)
                chart.append(drawn / 1000)
                series_only.append(again / 1000)
            out["points_drawn"] = len(ys)
        out.update(table=statistics.median(table), chart=statistics.median(chart),
                   chart_refresh=statistics.median(series_only), spike=spike_seen)
        b.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiments", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp_:
        tmp = Path(tmp_)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIOML_")}
        env["STUDIOML_HOME"] = str(tmp / "home")
        ctx = Context(load_settings(environ=env))
        runs = make_runs(args.experiments)
        fill = fill_studio(ctx, runs)
        big_series(ctx, tmp, args.points)
        print(f"studio: {args.experiments} experiments inserted through the MetaStore in {fill:.1f} s")
        proc, base = start_ui(env)
        rows: list[tuple[str, str, str, str]] = []
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                def get(path: str, **params: Any) -> Any:
                    r = client.get(path, params=params)
                    r.raise_for_status()
                    return r.json()

                for name, params in QUERIES.items():
                    if params.get("offset") == -1:
                        params = {"offset": args.experiments // 2}
                    cold, warm, data = timed(lambda p=params: get("/api/experiments", limit=50, **p), args.repeat)
                    assert len(data["items"]) > 0, name
                    rows.append((f"`/api/experiments` {name}", ms(warm), ms(cold), f"{data['total']} match"))
                keys = ",".join(r["key"] for r in get("/api/experiments", limit=50)["items"])
                cold, warm, _ = timed(lambda: get("/api/status", keys=keys), args.repeat)
                rows.append(("`/api/status` for the 50 visible keys (live updates)", ms(warm), ms(cold), ""))
                series = f"/api/experiments/{BIG_KEY}/series"
                cold, warm, data = timed(lambda: get(series, keys="loss", buckets=1000), args.repeat)
                s = data["series"]["loss"]
                assert max(v for v in s["y"] if v is not None) == SPIKE
                rows.append((f"`series` {args.points:,} points -> 1,000 min/max buckets (cold: materialize + read)",
                             ms(warm), ms(cold), f"{len(s['x'])} points sent, spike kept"))
                cold, warm, data = timed(lambda: get(series, keys="loss", buckets=1000, x_min=600_000, x_max=700_000),
                                         args.repeat)
                rows.append(("`series` zoomed to 100,000 steps", ms(warm), ms(cold), f"{len(data['series']['loss']['x'])} points"))
                cold, warm, _ = timed(lambda: get("/api/projects"), args.repeat)
                rows.append(("`/api/projects` (20 projects, counts and best metric)", ms(warm), ms(cold), ""))
                cold, warm, _ = timed(lambda: get("/api/projects/proj-03/points"), args.repeat)
                rows.append(("`/api/projects/{name}/points` (500 experiments for the plots)", ms(warm), ms(cold), ""))
            browser = None if args.no_browser else browser_times(base, min(args.repeat, 5))
        finally:
            proc.terminate()
            proc.wait(10)
        print("\n| measure | median warm | cold | note |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |")
        if browser:
            print(f"| browser: navigation -> first table page painted (50 rows) | {ms(browser['table'])} | | |")
            print(f"| browser: navigation -> {args.points:,}-point chart drawn (plotly.js included) | "
                  f"{ms(browser['chart'])} | | {browser['points_drawn']} points, spike visible: {browser['spike']} |")
            print(f"| browser: chart refresh alone (request, bucketing, drawing) | {ms(browser['chart_refresh'])} | | |")
        ml = fill_mlflow(tmp, runs, args.points)
        if ml is None:
            print("\nmlflow is not installed: no comparison (pip install mlflow)")
            return
        store, exp_id, big, mfill = ml
        import mlflow

        print(f"\nmlflow {mlflow.__version__}: {args.experiments} runs bulk-inserted through its ORM in {mfill:.1f} s")
        print("\n| query, 50 rows | studio MetaStore.query (in-process) | mlflow search_runs (in-process) | ratio |")
        print("|---|---|---|---|")
        from studio.server.api_runs import build_query

        for name, fn in mlflow_queries(store, exp_id).items():
            params = QUERIES[name]
            q = build_query(ctx, "all", params.get("project"), None, None, params.get("text"), params.get("filter"),
                            params.get("sort"), 50, params.get("offset", 0))
            _, ours, _ = timed(lambda q=q: ctx.meta.query(q), args.repeat)
            _, theirs, _ = timed(fn, args.repeat)
            print(f"| {name} | {ms(ours)} | {ms(theirs)} | {theirs / ours:.1f}x |")
        _, theirs, hist = timed(lambda: store.get_metric_history(big, "loss"), 2)
        print(f"| {args.points:,}-point history (mlflow: get_metric_history, all points) | "
              f"(see `series` above) | {ms(theirs)} | {len(hist):,} points |")
        ctx.close()


if __name__ == "__main__":
    main()
