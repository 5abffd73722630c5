"""Overhead of `studio run` over `python script.py` (issue: foundation, perf (a)).

A trivial script in a 1,000-file / 10 MB workspace, on the embedded defaults (SQLite + local
store) in a temporary STUDIOML_HOME. Prints medians and the overhead; target < 0.3 s.

    python bench/bench_run.py [--files 1000] [--mb 10] [--repeat 7]
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


def make_workspace(root: Path, files: int, total_mb: int) -> None:
    size = total_mb * 2**20 // files
    for i in range(files):
        d = root / f"d{i % 20}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.dat").write_bytes(os.urandom(size))
    (root / "script.py").write_text("print('hello')\n")


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--mb", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws, home = Path(tmp) / "ws", Path(tmp) / "home"
        ws.mkdir()
        make_workspace(ws, a.files, a.mb)
        env = dict(os.environ, STUDIOML_HOME=str(home))
        py = [sys.executable, "script.py"]
        st = [sys.executable, "-m", "studio", "run", "script.py"]
        first = timed(st, ws, env)  # first capture: hashes and stores the workspace
        base = statistics.median(timed(py, ws, env) for _ in range(a.repeat))
        runs = statistics.median(timed(st, ws, env) for _ in range(a.repeat))
        print(f"workspace: {a.files} files, {a.mb} MB")
        print(f"python script.py          median {base:.3f} s")
        print(f"studio run (first)        {first:.3f} s")
        print(f"studio run (repeat)       median {runs:.3f} s")
        print(f"overhead                  {runs - base:.3f} s  (target < 0.300 s)  ratio {runs / base:.1f}x")


if __name__ == "__main__":
    main()
