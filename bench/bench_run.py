"""Overhead of `studio run` over `python script.py` (issue: foundation, perf (a)).

A trivial script in a 1,000-file / 10 MB workspace, on the embedded defaults (SQLite + local
store) in a temporary STUDIOML_HOME. Prints medians (wall and CPU seconds) and the overhead;
targets (TARGETS.md): < 0.1 s for 1,000 files / 10 MB, < 0.2 s for 10,000 files / 1 GB.
The commands are timed in turn within each round, so a load that changes over the run (other
developers' processes on the machine) weighs on each of them alike.

    python bench/bench_run.py [--files 1000] [--mb 10] [--repeat 7] [--compare SRC]

`--compare SRC` also times `studio run` from another source tree (a directory holding a
`studio` package, e.g. `git archive <rev> studio | tar -x -C SRC`), in the same rounds, the
two trees taking turns going first.
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

import studio


def make_workspace(root: Path, files: int, total_mb: int) -> None:
    size = total_mb * 2**20 // files
    for i in range(files):
        d = root / f"d{i % 20}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.dat").write_bytes(os.urandom(size))
    (root / "script.py").write_text("print('hello')\n")


def compile_bytecode(package_dir: Path) -> None:
    # An installed wheel ships (or pip compiles) .pyc files, but this environment sets
    # PYTHONDONTWRITEBYTECODE=1, so without this step every `studio run` would re-compile
    # studio's modules from source and the figure would measure the compiler, not studio.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package_dir)], check=True)


CPU: dict[int, list[float]] = {}  # id(list of wall times) -> CPU seconds of the same runs


def timed(cmd: list[str], cwd: Path, env: dict[str, str], into: list[float] | None = None) -> float:
    """Wall seconds of one run; with `into`, appends them there and the CPU seconds (user +
    system, every process of the run: supervisor, reaper, script) to CPU[id(into)]."""
    c0 = children_cpu()
    t0 = time.perf_counter()
    subprocess.run(
        cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - t0
    if into is not None:
        into.append(wall)
        CPU.setdefault(id(into), []).append(children_cpu() - c0)
    return wall


def children_cpu() -> float:
    """User + system CPU seconds of the waited-for children so far (getrusage's microseconds
    where there is one: os.times counts in clock ticks, 10 ms, as coarse as what is measured)."""
    try:
        import resource
    except ImportError:  # Windows
        t = os.times()
        return t.children_user + t.children_system
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cpu(runs: list[float]) -> float:
    return statistics.median(CPU[id(runs)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--mb", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--compare", type=Path, help="another source tree to time in the same rounds")
    ap.add_argument("--workspace", type=Path, help="an existing workspace holding script.py (default: a new one)")
    a = ap.parse_args()
    compile_bytecode(Path(studio.__file__).parent)
    if a.compare:
        compile_bytecode(a.compare / "studio")
    with tempfile.TemporaryDirectory() as tmp:
        ws, home = Path(tmp) / "ws", Path(tmp) / "home"
        if a.workspace is not None:
            ws = a.workspace.resolve()
        else:
            ws.mkdir()
            make_workspace(ws, a.files, a.mb)
        env = dict(os.environ, STUDIOML_HOME=str(home))
        py = [sys.executable, "script.py"]
        st = [sys.executable, "-m", "studio", "run", "script.py"]
        first = timed(st, ws, env)  # first capture: hashes and stores the workspace
        cmp_env = None
        if a.compare:
            path = os.pathsep.join(p for p in (str(a.compare), env.get("PYTHONPATH")) if p)
            # Its own home: the two trees may expect different schema revisions.
            cmp_env = dict(env, PYTHONPATH=path, STUDIOML_HOME=str(Path(tmp) / "home-compare"))
            timed(st, ws, cmp_env)  # the other tree's first run: its own cache warm-up
        base: list[float] = []
        runs: list[float] = []
        other: list[float] = []
        load0 = os.getloadavg()[0]
        for i in range(a.repeat):
            timed(py, ws, env, base)
            # The two trees take turns going first: the run right after another `studio run`
            # was measured ~10 ms faster (warm caches), which would favour one side.
            pair = [(env, runs), (cmp_env, other)] if cmp_env is not None else [(env, runs)]
            for run_env, into in pair if i % 2 == 0 else reversed(pair):
                timed(st, ws, run_env, into)
        b, r = statistics.median(base), statistics.median(runs)
        target = 0.1 if a.files <= 1000 else 0.2
        print(f"workspace: {a.workspace or f'{a.files} files, {a.mb} MB'}; load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
        print(f"python script.py          median {b:.3f} s  CPU {cpu(base):.3f} s")
        print(f"studio run (first)        {first:.3f} s")
        print(f"studio run (repeat)       median {r:.3f} s  CPU {cpu(runs):.3f} s")
        print(f"overhead                  {r - b:.3f} s  CPU {cpu(runs) - cpu(base):.3f} s  "
              f"(target < {target:.1f} s)  ratio {r / b:.1f}x")
        if other:
            o = statistics.median(other)
            print(f"studio run ({a.compare})  median {o:.3f} s  overhead {o - b:.3f} s  "
                  f"CPU overhead {cpu(other) - cpu(base):.3f} s")


if __name__ == "__main__":
    main()
