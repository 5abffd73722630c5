"""Runs+charts view and first-page benchmark, in Chromium, with MLflow's `runs/search` beside it.

    python bench/bench_charts.py                       # everything below, one table each
    python bench/bench_charts.py --runs 10,100 --first-page 10000 --repeat 3
    python bench/bench_charts.py --runs 100 --first-page "" --compare /work/main   # before/after

Charts: N runs of one P-point `loss` series each (each run its own metrics tree, written in ten
segments as a long run writes, a spike at a random step) in a temp STUDIOML_HOME, the real
`studio ui` in a subprocess, and Chromium (Playwright, Debian's /usr/bin/chromium) opening
`/all?view=charts&limit=N`: the table, then one panel with every run's curve. Measured from
navigation start: the table painted, plotly.js loaded, the series fetched (`/api/charts/series`,
one request per 100 runs), and every curve drawn (`window.studioPanelsDrawn`); cold (first
visit: segments read from the store) and warm (median of `--repeat` later visits); plus the
series request alone over HTTP, and the CPU seconds each server process used for all of it. Checks that every run's spike survives the min/max bucketing.

First page: N experiments (3 params, 2 metric summaries each) through the MetaStore; the
first table page (50 rows, newest first) served over HTTP and painted in Chromium, and the same
N runs bulk-inserted into MLflow's SQLite store, its `search_runs` (what `runs/search` serves)
in-process for the same page: MLflow without its HTTP layer, so a lower bound for it.

`--compare TREE` serves the same data from a second studio source tree too (another checkout),
alternating visits, so before/after figures come from the same minutes of the same machine.

Target (issue 14): 100 runs x 100k points drawn in under 2 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_ui import CHROMIUM_ARGS, start_ui  # noqa: E402
from studio.api.context import Context  # noqa: E402
from studio.config import load_settings  # noqa: E402
from studio.entities import ArtifactSpec, Experiment, MetricSummary, Status  # noqa: E402
from studio.tracking.segments import SegmentNamer, write_segment_to  # noqa: E402

SPIKE = 50.0


def fill(ctx: Context, root: Path, runs: int, points: int) -> None:
    rng = np.random.default_rng(3)
    steps = np.arange(points, dtype=np.int64)
    now = time.time()
    for i in range(runs):
        folder = root / f"m{i}"
        folder.mkdir()
        values = (1 + i / runs) / (1.0 + steps / 1000.0) + rng.normal(0, 0.01, points)
        values[rng.integers(points // 10, points)] = SPIKE
        times = now - 3600 + steps * 0.01
        namer = SegmentNamer()
        for part in np.array_split(np.arange(points), 10):
            write_segment_to(folder / namer.next_name(".arrow"), [("loss", steps[part], values[part], times[part])],
                             fsync=False)
        tree = ctx.objects.put_tree(folder)
        key = f"chart-{i:04d}"
        ctx.meta.create_experiment(Experiment(
            key=key, project="charts", owner="bench", script="train.py", status=Status.FINISHED, metric="loss:min",
            params={"lr": [0.1, 0.01, 0.001][i % 3], "seed": i}, metric_value=float(values.min()),
            time_added=now + i, time_started=now, time_finished=now + 10,
            artifacts={"metrics": ArtifactSpec(tag="metrics", tree=tree.tree, size=tree.size, files=tree.files)},
        ))
        ctx.meta.put_metric_summaries(key, [MetricSummary(key="loss", last=float(values[-1]), min=float(values.min()),
                                                          max=SPIKE, count=points, last_step=points - 1)])


PHASES = ("table", "plotly", "fetched", "drawn")


def visit(page: Any, url: str, runs: int) -> dict[str, float | None]:
    """One navigation to the charts view; seconds from navigation start to each phase."""
    page.goto(url, wait_until="commit")
    page.wait_for_function(
        f"window.studioPanelsDrawn !== undefined && "
        f"document.querySelector(\"#run-panels .panel-plot[data-metric='loss']\")?.dataset.rendered === '{runs}'",
        timeout=600_000, polling=50)
    t = page.evaluate("""() => ({table: window.studioTablePainted, plotly: window.studioPlotlyLoaded,
        fetched: window.studioRunPanels?.times?.fetched, drawn: window.studioPanelsDrawn})""")
    return {k: (t.get(k) / 1000 if t.get(k) is not None else None) for k in PHASES}


def measure(bases: dict[str, str], runs: int, repeat: int) -> dict[str, dict[str, Any]]:
    """Visits alternate between the servers (one per tree), so each sees the same load."""
    from playwright.sync_api import sync_playwright

    visits: dict[str, list[dict[str, float | None]]] = {name: [] for name in bases}
    spikes: dict[str, int] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        pages = {name: browser.new_page(viewport={"width": 1360, "height": 900}) for name in bases}
        for _ in range(repeat + 1):
            for name, base in bases.items():
                visits[name].append(visit(pages[name], f"{base}/all?view=charts&limit={runs}&sort=key", runs))
        for name, page in pages.items():
            spikes[name] = page.evaluate(
                "document.querySelector(\"#run-panels .panel-plot[data-metric='loss']\").data"
                f".filter(t => Math.max(...t.y.filter(v => v !== null)) === {SPIKE}).length")
        browser.close()
    keys = ",".join(f"chart-{i:04d}" for i in range(runs))
    out: dict[str, dict[str, Any]] = {}
    for name, base in bases.items():
        api = []
        for _ in range(repeat):
            t = time.perf_counter()
            httpx.get(f"{base}/api/charts/series", params={"keys": keys, "metrics": "loss", "buckets": 600},
                      headers={"accept-encoding": "br, gzip"}, timeout=600)
            api.append(time.perf_counter() - t)
        warm = {k: _median([v[k] for v in visits[name][1:]]) for k in PHASES}
        out[name] = {"cold": visits[name][0]["drawn"], "warm": warm, "api": statistics.median(api),
                     "spikes": spikes[name]}
    return out


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1000:,.0f} ms"


def start_servers(home: Path, trees: dict[str, Path]) -> tuple[list[Any], dict[str, str]]:
    procs, bases = [], {}
    for name, tree in trees.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIOML_")}
        env.update(STUDIOML_HOME=str(home), PYTHONPATH=str(tree))
        proc, base = start_ui(env, cwd=tree)
        procs.append(proc)
        bases[name] = base
    return procs, bases


def stop(procs: list[Any]) -> None:
    for proc in procs:
        proc.terminate()
        proc.wait(30)


def charts(runs_list: list[int], points: int, repeat: int, trees: dict[str, Path]) -> None:
    print(f"\n### Runs and charts: N runs x {points:,} points, every curve in one panel\n")
    print("| runs x points | tree | drawn, cold | drawn, warm | of which: table painted | plotly.js loaded | "
          "series fetched | `/api/charts/series` alone | server CPU, all visits | spikes kept |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for runs in runs_list:
        with tempfile.TemporaryDirectory(prefix="studio-bench-charts-") as tmp:
            root = Path(tmp)
            home = root / "home"
            home.mkdir()
            ctx = Context(load_settings(environ={"STUDIOML_HOME": str(home)}))
            fill(ctx, root, runs, points)
            ctx.close()
            procs, bases = start_servers(home, trees)
            try:
                results = measure(bases, runs, repeat)
                cpu = [sum(psutil.Process(p.pid).cpu_times()[:2]) for p in procs]
            finally:
                stop(procs)
            for (name, r), server_cpu in zip(results.items(), cpu, strict=True):
                w = r["warm"]
                print(f"| {runs} x {points:,} | {name} | {_ms(r['cold'])} | **{_ms(w['drawn'])}** | {_ms(w['table'])} | "
                      f"{_ms(w['plotly'])} | {_ms(w['fetched'])} | {_ms(r['api'])} | {server_cpu:.1f} s | "
                      f"{r['spikes']}/{runs} |", flush=True)


def first_page(sizes: list[int], repeat: int, trees: dict[str, Path]) -> None:
    from playwright.sync_api import sync_playwright

    from bench.bench_ui import fill_mlflow, fill_studio, make_runs, mlflow_queries, timed

    print("\n### First page of the table (50 rows, newest first)\n")
    print("| experiments | tree | served (HTTP, warm) | painted in Chromium (warm) | MLflow `search_runs` (in-process) | "
          "studio faster by |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="studio-bench-page-") as tmp:
            root = Path(tmp)
            home = root / "home"
            home.mkdir()
            ctx = Context(load_settings(environ={"STUDIOML_HOME": str(home)}))
            runs = make_runs(n)
            took = fill_studio(ctx, runs)
            ctx.close()
            print(f"<!-- {n:,} experiments inserted through the MetaStore in {took:.0f} s -->", flush=True)
            ml = fill_mlflow(root, runs, 10)
            theirs = None
            if ml is not None:
                store, exp_id, _big, mfill = ml
                print(f"<!-- MLflow: {n:,} runs bulk-inserted through its ORM in {mfill:.0f} s -->", flush=True)
                _, theirs, _ = timed(mlflow_queries(store, exp_id)["first page (newest first)"], repeat)
            procs, bases = start_servers(home, trees)
            try:
                served: dict[str, float] = {}
                for name, base in bases.items():
                    with httpx.Client(base_url=base, timeout=120) as client:
                        _, served[name], _ = timed(lambda c=client: c.get("/api/experiments", params={"limit": 50}).json(),
                                                   repeat)
                painted: dict[str, list[float]] = {name: [] for name in bases}
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                    page = browser.new_page(viewport={"width": 1360, "height": 900})
                    for _ in range(repeat + 1):
                        for name, base in bases.items():
                            page.goto(base + "/all", wait_until="commit")
                            page.wait_for_function("window.studioTablePainted !== undefined && "
                                                   "document.querySelectorAll('#runs tbody tr[data-key]').length === 50")
                            painted[name].append(page.evaluate("window.studioTablePainted") / 1000)
                    browser.close()
            finally:
                stop(procs)
            for name in bases:
                ratio = f"{theirs / served[name]:.0f}x" if theirs else "-"
                print(f"| {n:,} | {name} | {_ms(served[name])} | {_ms(statistics.median(painted[name][1:]))} | "
                      f"{_ms(theirs) if theirs else 'mlflow not installed'} | {ratio} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="10,100,500", help="Charts view sizes (comma-separated; empty: skip)")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--first-page", default="10000,100000", help="Table sizes (comma-separated; empty: skip)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compare", type=Path, default=None, metavar="TREE", help="Another studio source tree to serve too")
    args = ap.parse_args()
    trees = {"this": ROOT}
    if args.compare is not None:
        trees[str(args.compare)] = args.compare.resolve()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}")
    if args.runs:
        charts([int(r) for r in args.runs.split(",")], args.points, args.repeat, trees)
    if args.first_page:
        first_page([int(n) for n in args.first_page.split(",")], args.repeat, trees)
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
