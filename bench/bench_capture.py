"""Time the capture collectors that run at the start of every `studio run`.

    python bench/bench_capture.py [--files 1000] [--repeat 5]

Builds a "typical" repository in a temp dir (N source files over nested folders, a venv-like
folder, a few modified, staged and untracked files), then reports the median wall time of each
collector, `collect_environment` (git in a thread) and a sequential baseline, plus the import
cost of `studio.capture` in a fresh interpreter and a workspace walk with and without a
`.studioml_ignore` file. Target: `collect_environment` under 100 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.capture import (
    collect_environment,
    git_info,
    host_info,
    installed_packages,
    iter_workspace,
    python_version,
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV}
    )


def make_repo(root: Path, files: int) -> Path:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for i in range(files):
        path = root / f"pkg{i % 20}" / f"sub{i % 7}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"def f{i}(x):\n    return x + {i}\n" * 20)
    venv = root / ".venv" / "lib"
    venv.mkdir(parents=True)
    (root / ".venv" / "pyvenv.cfg").write_text("home = /usr\n")
    for i in range(200):
        (venv / f"dep{i}.py").write_text("x = 1\n")
    (root / ".gitignore").write_text(".venv/\n*.log\n")
    git(root, "add", ".")
    git(root, "commit", "-qm", "initial")
    for i in range(0, files, max(1, files // 10)):  # ~10 modified files
        path = root / f"pkg{i % 20}" / f"sub{i % 7}" / f"mod{i}.py"
        path.write_text(path.read_text() + "# changed\n")
    (root / "staged.py").write_text("staged = 1\n")
    git(root, "add", "staged.py")
    for i in range(5):  # untracked, not ignored
        (root / f"notes{i}.txt").write_text("untracked\n" * 50)
    (root / "train.py").write_text("print('train')\n")
    (root / "run.log").write_text("ignored\n")
    return root


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def sequential(script: Path) -> dict[str, Any]:
    return {
        "python_version": python_version(),
        "pythonenv": installed_packages(),
        "git": git_info(script.parent),
        "host": host_info(),
    }


def uncached_packages() -> list[str]:
    installed_packages.cache_clear()  # type: ignore[attr-defined]
    return installed_packages()


COLD = """
import sys, time
from pathlib import Path
t0 = time.perf_counter()
import studio.capture as c
t1 = time.perf_counter()
if sys.argv[2] == "parallel":
    c.collect_environment(sys.argv[1])
else:
    c.installed_packages(), c.host_info(), c.git_info(Path(sys.argv[1]).parent)
t2 = time.perf_counter()
print((t1 - t0) * 1000, (t2 - t1) * 1000)
"""


def cold_ms(script: Path, mode: str, runs: int) -> tuple[float, float]:
    """Median (import, collect) ms in fresh interpreters, as at the start of `studio run`."""
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", COLD, str(script), mode],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(tuple(map(float, out.stdout.split())))
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp) / "repo", args.files)
        script = repo / "train.py"
        git_result = git_info(repo)
        cold_runs = max(9, args.repeat)
        import_par, cold_par = cold_ms(script, "parallel", cold_runs)
        _, cold_seq = cold_ms(script, "sequential", cold_runs)
        rows = [
            ("cold: import studio.capture", import_par),
            ("cold: collect_environment (git in a thread)", cold_par),
            ("cold: python + host + git one after another", cold_seq),
            ("installed_packages (uncached)", median_ms(uncached_packages, args.repeat)),
            ("installed_packages (cached)", median_ms(installed_packages, args.repeat)),
            ("host_info", median_ms(host_info, args.repeat)),
            ("git_info", median_ms(lambda: git_info(repo), args.repeat)),
            (
                "warm: sequential python+git+host",
                median_ms(lambda: (uncached_packages(), sequential(script)), args.repeat),
            ),
            (
                "warm: collect_environment",
                median_ms(lambda: (uncached_packages(), collect_environment(script)), args.repeat),
            ),
            (
                "walk workspace, defaults only",
                median_ms(lambda: sum(1 for _ in iter_workspace(repo)), args.repeat),
            ),
        ]
        (repo / ".studioml_ignore").write_text("data/\n/build\n*.ckpt\n!best.ckpt\nlogs/**/*.tmp\n")
        rows.append(
            (
                "walk workspace, 5-line .studioml_ignore",
                median_ms(lambda: sum(1 for _ in iter_workspace(repo)), args.repeat),
            )
        )
        files = sum(1 for _ in iter_workspace(repo))
    print(
        f"repo: {args.files} tracked files, {files} workspace files, diff {len(git_result['diff'])} chars, "
        f"{len(installed_packages())} packages, {os.cpu_count()} CPUs"
    )
    for name, ms in rows:
        print(f"  {name:<50} {ms:8.1f} ms")


if __name__ == "__main__":
    main()
