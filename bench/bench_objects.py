"""Capture benchmark: studio's object store vs `tar czf` on the same tree, in one run.

    python bench/bench_objects.py                      # 1 GB / 10,000 files (needs ~3.5 GB of disk)
    python bench/bench_objects.py --size-mb 100 --files 1000
    python bench/bench_objects.py --workers 1,2,4     # also compare thread counts

Builds a tree of incompressible random files plus ~20% small text files (source-like,
compressible), then measures, each capture in a fresh subprocess:
  (c) first capture into an empty local store vs `tar czf` of the same tree (and `tar cf`,
      the cost of merely reading and writing the bytes once, for reference);
  (b) re-capture of the unchanged tree (stat cache warm), plus re-capture after changing one
      file and a re-capture with no stat cache (every file hashed, nothing uploaded);
  (d) peak RSS of a first capture of the full tree vs a tree 10x smaller.
Page cache: the tree was just written, so every reader (tar and studio alike) reads it from
memory; the figures compare CPU and write paths, not the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORDS = (
    "import def return self model train loss epoch batch tensor optimizer learning rate "
    "for in if else while print data loader config value key None True False class "
    "numpy torch layer weight bias gradient step update metric accuracy validation"
).split()


# -- tree ----------------------------------------------------------------------------------


def build_tree(root: Path, size_mb: int, files: int, seed: int = 7) -> tuple[int, int]:
    """Write `files` files totalling about `size_mb` MiB under `root`. Returns (files, bytes)."""
    rng = random.Random(seed)
    corpus = " ".join(rng.choice(WORDS) for _ in range(400_000)).encode()
    n_text = files // 5
    text_sizes = [rng.randint(500, 8000) for _ in range(n_text)]
    remaining = size_mb * (1 << 20) - sum(text_sizes)
    weights = [rng.lognormvariate(0, 1.5) for _ in range(files - n_text)]
    scale = remaining / sum(weights)
    bin_sizes = [max(1, int(w * scale)) for w in weights]
    total = 0
    for i in range(files):
        d = root / f"d{i % 20:02d}" / f"s{(i // 20) % 25:02d}"
        if i % 500 == 0 or not d.exists():
            d.mkdir(parents=True, exist_ok=True)
        if i < n_text:
            size = text_sizes[i]
            start = rng.randrange(0, len(corpus) - size)
            data = corpus[start : start + size]
            name = f"f{i:05d}.py"
        else:
            size = bin_sizes[i - n_text]
            data = rng.randbytes(size)
            name = f"f{i:05d}.bin"
        (d / name).write_bytes(data)
        total += size
    return files, total


# -- child: one capture, measured from inside --------------------------------------------


def child(args: argparse.Namespace) -> None:
    import psutil

    sys.path.insert(0, str(ROOT))
    from studio.objects import ObjectStore, StatCache, backend_for_url

    baseline = psutil.Process().memory_info().rss
    stat_cache = StatCache(Path(args.stat)) if args.stat else None
    store = ObjectStore(backend_for_url(args.store), Path(args.store) / "cache", stat_cache, workers=args.workers)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    result = store.put_tree(Path(args.root), previous=args.previous or None)
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {"seconds": seconds, "peak_rss": usage.ru_maxrss * 1024, "baseline_rss": baseline}
    out.update(user_s=usage.ru_utime - cpu0.ru_utime, sys_s=usage.ru_stime - cpu0.ru_stime)
    print(json.dumps({**out, **vars(result)}))


def capture(root: Path, store: Path, stat: Path | None, workers: int, previous: str = "") -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--root", str(root), "--store", str(store)]
    cmd += ["--stat", str(stat) if stat else "", "--workers", str(workers), "--previous", previous]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def wait_until_old(seconds: float = 2.1) -> None:
    """The stat cache ignores files younger than its racy window (2 s): a real workspace is
    older than that, so let the freshly built tree age before measuring."""
    time.sleep(seconds)


# -- main ----------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def mb(n: float) -> str:
    return f"{n / (1 << 20):,.0f} MB"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--workers", default="", help="comma-separated thread counts to compare (default: studio's)")
    p.add_argument("--repeat", type=int, default=1, help="repeat first captures and tar; report medians")
    p.add_argument("--dir", default=None, help="where to build trees (default: system temp dir)")
    p.add_argument("--skip-tar", action="store_true")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--stat", help=argparse.SUPPRESS)
    p.add_argument("--previous", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.workers = int(args.workers) or None
        child(args)
        return

    sys.path.insert(0, str(ROOT))
    from studio.objects.store import LOCAL_WORKERS

    workers = [int(w) for w in args.workers.split(",") if w] or [LOCAL_WORKERS]
    base = Path(tempfile.mkdtemp(prefix="studio-objects-bench-", dir=args.dir))
    figures: dict[str, Any] = {"size_mb": args.size_mb, "files": args.files}
    try:
        tree = base / "tree"
        t0 = time.perf_counter()
        n, total = build_tree(tree, args.size_mb, args.files)
        print(f"built {n:,} files, {mb(total)} in {time.perf_counter() - t0:.1f} s under {base}")
        small = base / "small"
        build_tree(small, max(1, args.size_mb // 10), max(1, args.files // 10), seed=8)
        wait_until_old()

        figures["load_before"] = os.getloadavg()[0]
        czf: list[float] = []
        cf: list[float] = []
        firsts: dict[int, list[dict[str, Any]]] = {w: [] for w in workers}
        for _ in range(args.repeat):  # interleaved, so a burst of load hits every contender
            if not args.skip_tar:
                czf.append(timed(["tar", "czf", str(base / "t.tgz"), "tree"], base))
                cf.append(timed(["tar", "cf", str(base / "t.tar"), "tree"], base))
                for f in ("t.tgz", "t.tar"):
                    (base / f).unlink()
            for w in workers:
                shutil.rmtree(base / "store", ignore_errors=True)
                (base / "stat.db").unlink(missing_ok=True)
                firsts[w].append(capture(tree, base / "store", base / "stat.db", w))
        if czf:
            figures["tar_czf_s"] = median(czf)
            figures["tar_cf_s"] = median(cf)
        for w in workers:
            figures[f"first_capture_s[w={w}]"] = median([r["seconds"] for r in firsts[w]])
        w = workers[-1]
        store, stat = base / "store", base / "stat.db"
        first = firsts[w][-1]
        assert first["uploaded_files"] == first["files"] == n, first
        figures["first_capture_s"] = figures[f"first_capture_s[w={w}]"]
        figures["first_capture_user_s"] = median([r["user_s"] for r in firsts[w]])
        figures["first_capture_sys_s"] = median([r["sys_s"] for r in firsts[w]])
        figures["first_capture_peak_rss"] = first["peak_rss"]
        figures["first_capture_rss_over_baseline"] = first["peak_rss"] - first["baseline_rss"]

        again = [capture(tree, store, stat, w) for _ in range(max(3, args.repeat))]
        assert all(a["hashed_files"] == 0 and a["uploaded_files"] == 0 for a in again), again
        figures["recapture_unchanged_s"] = median([a["seconds"] for a in again])

        victim = next(tree.rglob("*.bin"))
        victim.write_bytes(os.urandom(victim.stat().st_size))
        one = capture(tree, store, stat, w, previous=first["tree"])
        assert one["uploaded_files"] == 1, one
        figures["recapture_one_changed_s"] = one["seconds"]
        cold = capture(tree, store, None, w)
        figures["recapture_no_stat_cache_s"] = cold["seconds"]

        small_first = capture(small, base / "store-small", base / "stat-small.db", w)
        figures["small_tree_peak_rss"] = small_first["peak_rss"]
        figures["small_tree_rss_over_baseline"] = small_first["peak_rss"] - small_first["baseline_rss"]
        figures["load_after"] = os.getloadavg()[0]
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print()
    print(
        f"tree: {args.files:,} files, {args.size_mb:,} MB; workers {w}; repeat {args.repeat} (medians);"
        f" load average {figures['load_before']:.1f} -> {figures['load_after']:.1f} on {os.cpu_count()} CPUs"
    )
    for k, v in figures.items():
        if k.startswith("first_capture_s[") and len(workers) > 1:
            print(f"  first capture with {k[16:-1]:<14} {v:8.3f} s")
    if "tar_czf_s" in figures:
        print(f"(c) tar czf                       {figures['tar_czf_s']:8.3f} s")
        print(f"    tar cf (no compression)       {figures['tar_cf_s']:8.3f} s")
    print(f"(c) studio first capture          {figures['first_capture_s']:8.3f} s", end="")
    if "tar_czf_s" in figures:
        ratio = figures["tar_czf_s"] / figures["first_capture_s"]
        figures["speedup_vs_tar_czf"] = ratio
        print(f"   {ratio:.1f}x faster than tar czf (target >= 5x)", end="")
    print()
    print(f"    CPU of that capture: user {figures['first_capture_user_s']:.2f} s, system {figures['first_capture_sys_s']:.2f} s")
    print(f"(b) re-capture, unchanged         {figures['recapture_unchanged_s']:8.3f} s   (target < 1 s)")
    print(f"    re-capture, one file changed  {figures['recapture_one_changed_s']:8.3f} s")
    print(f"    re-capture, no stat cache     {figures['recapture_no_stat_cache_s']:8.3f} s")
    big, little = figures["first_capture_peak_rss"], figures["small_tree_peak_rss"]
    print(
        f"(d) peak RSS {args.size_mb} MB tree {mb(big)} ({mb(figures['first_capture_rss_over_baseline'])} over baseline);"
        f" {max(1, args.size_mb // 10)} MB tree {mb(little)} ({mb(figures['small_tree_rss_over_baseline'])});"
        f" ratio {big / little:.2f}"
    )
    if args.json:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
