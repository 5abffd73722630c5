"""Hyperparameter search benchmarks (issue 4, performance).

1. Per-trial overhead: a 100-point grid of a trivial script through `studio run -hp a=1:100
   --num-workers 2` (real CLI, SQLite + local store in a temp STUDIOML_HOME), against a shell
   loop running `python script.py` 100 times.
2. Search quality: trials needed by `tpe` and `cmaes` vs `random` to bring the Rosenbrock
   function of a `-hp x=-2:2:D:a` array below a target, in D = 4 and 8 dimensions, through
   the optimizer interface in-process (the same objects a sweep drives), generations of
   `popsize` trials, median over several seeds; a run that misses the target within the budget
   counts as "> budget".

    python bench/bench_sweep.py [--points 100] [--seeds 5] [--budget 1000] [--skip-overhead]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def overhead(points: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws, home = Path(tmp) / "ws", Path(tmp) / "home"
        ws.mkdir()
        (ws / "script.py").write_text("a = 0\nprint('fitness:', a)\n")
        env = dict(os.environ, STUDIOML_HOME=str(home))
        t0 = time.perf_counter()
        subprocess.run(["bash", "-c", f"for i in $(seq {points}); do {sys.executable} script.py >/dev/null; done"],
                       cwd=ws, env=env, check=True)
        loop = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "studio", "run", "-hp", f"a=1:{points}", "--num-workers", "2",
                        "script.py"], cwd=ws, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        sweep = time.perf_counter() - t0
    per_script = loop / points
    print(f"shell loop, {points} x python script.py: {loop:.1f} s ({1000 * per_script:.0f} ms per script)")
    print(f"studio sweep, {points}-point grid, 2 workers: {sweep:.1f} s wall ({1000 * sweep / points:.0f} ms per trial)")
    worker_time = 2 * sweep / points
    print(f"worker time per trial: {1000 * worker_time:.0f} ms -> overhead {1000 * (worker_time - per_script):.0f} ms "
          f"per trial over the script itself; wall ratio sweep/loop {sweep / loop:.2f}")


def rosenbrock(x: list[float]) -> float:
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))


def trials_to_target(name: str, dims: int, seed: int, target: float, budget: int) -> int | None:
    from studio.search import parse_ranges
    from studio.search.optimizers import OptimizerConfig, SearchSpace, load_optimizer

    space = SearchSpace(ranges=tuple(parse_ranges([f"x=-2:2:{dims}:a"])))
    config = OptimizerConfig(seed=seed)
    opt = load_optimizer(name, space, config)
    popsize = opt.default_popsize(4)  # cmaes: 4 + 3 ln(D); random/tpe: one trial per worker (4)
    done = 0
    while done < budget:
        batch = opt.ask(min(popsize, budget - done))
        values = [rosenbrock(p["x"]) for p in batch]
        opt.tell([(p, -v) for p, v in zip(batch, values, strict=True)])
        for v in values:
            done += 1
            if v <= target:
                return done
    return None


def quality(seeds: int, budget: int) -> None:
    targets = {4: 5.0, 8: 30.0}
    print(f"\ntrials to reach the target on Rosenbrock in [-2, 2]^D (median of {seeds} seeds, budget {budget})")
    print("| D | target | random | tpe | cmaes |")
    print("|---|---|---|---|---|")
    for dims, target in targets.items():
        cells = []
        for name in ("random", "tpe", "cmaes"):
            t0 = time.perf_counter()
            found = [trials_to_target(name, dims, seed, target, budget) for seed in range(seeds)]
            hit = sorted(n if n is not None else budget + 1 for n in found)
            med = statistics.median(hit)
            shown = f"> {budget}" if med > budget else f"{med:g}"
            misses = sum(n is None for n in found)
            cells.append(f"{shown} ({misses} missed, {time.perf_counter() - t0:.0f} s)")
        print(f"| {dims} | f <= {target:g} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    a = ap.parse_args()
    if not a.skip_overhead:
        overhead(a.points)
    if not a.skip_quality:
        quality(a.seeds, a.budget)


if __name__ == "__main__":
    main()
