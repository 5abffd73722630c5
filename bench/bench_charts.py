"""Runs+charts view benchmark: N runs of P points each, every curve overlaid, in Chromium.

    python bench/bench_charts.py [--runs 10,100,500] [--points 100000] [--repeat 3]

Fills a temp STUDIOML_HOME through the MetaStore and ObjectStore (each run its own metrics tree
of one `loss` series with a spike, written in ten segments as a long run writes), starts the
real `studio ui` in a subprocess, and in Chromium (Playwright, Debian's /usr/bin/chromium)
opens `/all?view=charts&limit=N`: the table, then one panel with every run's curve. Measured:
navigation start -> every panel drawn (`window.studioPanelsDrawn`), cold (first visit: segments
read from the store) and warm (median of `--repeat` later visits), plus the `/api/charts/series`
request alone. Checks that every run's spike is still in the drawn (min/max-bucketed) points.

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


def measure(base: str, runs: int, repeat: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    url = f"{base}/all?view=charts&limit={runs}&sort=key"
    times: list[float] = []
    spikes = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        for _ in range(repeat + 1):
            page.goto(url, wait_until="commit")
            page.wait_for_function(
                f"window.studioPanelsDrawn !== undefined && "
                f"document.querySelector(\"#run-panels .panel-plot[data-metric='loss']\")?.dataset.rendered === '{runs}'",
                timeout=600_000, polling=50)
            times.append(page.evaluate("window.studioPanelsDrawn") / 1000)
            spikes = page.evaluate(
                "document.querySelector(\"#run-panels .panel-plot[data-metric='loss']\").data"
                f".filter(t => Math.max(...t.y.filter(v => v !== null)) === {SPIKE}).length")
        browser.close()
    keys = ",".join(f"chart-{i:04d}" for i in range(runs))
    api = []
    for _ in range(repeat):
        t = time.perf_counter()
        httpx.get(f"{base}/api/charts/series", params={"keys": keys, "metrics": "loss", "buckets": 600}, timeout=600)
        api.append(time.perf_counter() - t)
    return {"cold": times[0], "warm": statistics.median(times[1:]), "api": statistics.median(api), "spikes": spikes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="10,100,500")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d')}")
    print("| runs x points | drawn, cold | drawn, warm | /api/charts/series alone (warm) | spikes kept |")
    print("|---|---|---|---|---|")
    for runs in (int(r) for r in args.runs.split(",")):
        with tempfile.TemporaryDirectory(prefix="studio-bench-charts-") as tmp:
            root = Path(tmp)
            home = root / "home"
            home.mkdir()
            ctx = Context(load_settings(environ={"STUDIOML_HOME": str(home)}))
            fill(ctx, root, runs, args.points)
            ctx.close()
            env = {k: v for k, v in os.environ.items() if not k.startswith("STUDIOML_")}
            env.update(STUDIOML_HOME=str(home), PYTHONPATH=str(ROOT))
            proc, base = start_ui(env)
            try:
                r = measure(base, runs, args.repeat)
            finally:
                proc.terminate()
                proc.wait(30)
            print(f"| {runs} x {args.points:,} | {r['cold'] * 1000:.0f} ms | {r['warm'] * 1000:.0f} ms | "
                  f"{r['api'] * 1000:.0f} ms | {r['spikes']}/{runs} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
