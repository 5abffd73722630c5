"""Merged metric segments vs one file per flush (`studio.tracking.compaction`).

A long run flushes `studio.log` about once a second. This writes `--flushes` segments of
`--points` points each through one `Logger`, with merging on and off, and times: writing
(flushes and merges, fsync off to time studio rather than the disk), the files left, reading
the whole series, summarizing it from scratch, and a first capture of the folder into a
fresh object store. The merge step runs after every flush, as the logger's background thread
does once a second.

    python bench/bench_compaction.py [--flushes 20000] [--points 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.objects import open_object_store  # noqa: E402
from studio.tracking import segments, series  # noqa: E402
from studio.tracking.metrics import Logger  # noqa: E402


def run(root: Path, flushes: int, points: int, compact: bool) -> dict[str, float]:
    folder = root / "metrics"
    logger = Logger(folder, flush_interval=3600, fsync=False, compact=compact)
    step = 0
    t = time.perf_counter()
    for _ in range(flushes):
        for _ in range(points // 2):
            logger.log(step=step, loss=1.0 / (step + 1), acc=step * 1e-6)
            step += 1
        logger.flush()
        if logger._compactor is not None:
            logger._compactor.run()
    logger.close()
    write = time.perf_counter() - t
    files = sum(1 for n in os.listdir(folder) if segments.is_segment_name(n))
    t = time.perf_counter()
    df = series.read_series(folder)
    read = time.perf_counter() - t
    assert len(df) == step * 2
    t = time.perf_counter()
    summary = {m.key: m for m in series.summarize(folder, state_path=root / "state.json")}
    summarize = time.perf_counter() - t
    assert summary["loss"].count == step
    store = open_object_store(f"file://{root / 'store'}", cache_dir=root / "cache", stat_cache=root / "stat.db")
    t = time.perf_counter()
    store.put_tree(folder)
    capture = time.perf_counter() - t
    return {"files": files, "write": write, "read": read, "summarize": summarize, "capture": capture}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flushes", type=int, default=20_000)
    ap.add_argument("--points", type=int, default=10)
    a = ap.parse_args()
    print(f"{a.flushes:,} flushes of {a.points} points; load average {os.getloadavg()[0]:.1f}")
    results = {}
    for compact in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            results[compact] = run(Path(tmp), a.flushes, a.points, compact)
    off, on = results[False], results[True]
    print("| | one file per flush | merged | ratio |")
    print("|---|---|---|---|")
    print(f"| segment files left | {off['files']:,} | {on['files']:,} | {off['files'] / on['files']:.0f}x fewer |")
    for name in ("write", "read", "summarize", "capture"):
        print(f"| {name} | {off[name]:.2f} s | {on[name]:.2f} s | {off[name] / on[name]:.1f}x |")


if __name__ == "__main__":
    main()
