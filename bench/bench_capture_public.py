"""Capturing a data folder through the doors users use, with the peers in the same run.

    python bench/bench_capture_public.py                   # 1 GB / 10,000 files, 3 rounds
    python bench/bench_capture_public.py --size-mb 100 --files 1000 --rounds 1
    python bench/bench_capture_public.py --dvc /opt/peer-dvc/bin/dvc   # DVC from its own venv

What a user types, timed as whole commands (interpreter start-up included), each round in a
fresh home / repository / store so every tool writes every object anew:

- studio: ``studio run --capture-once=TREE:data t.py`` on the embedded defaults (SQLite +
  local object store in a temporary ``STUDIOML_HOME``), minus ``python t.py`` (the script
  itself); then the same command again with the tree unchanged (the second run of a
  researcher's day).
- ``tar czf`` of the tree (the "just archive it" baseline).
- DVC: ``dvc add data`` in a fresh ``git init`` + ``dvc init`` repository that holds the tree
  (hashes every file and copies it into ``.dvc/cache``, as studio copies into its store);
  then ``dvc add data`` again, unchanged. Found on PATH or given with ``--dvc``.
- MLflow: ``mlflow.log_artifacts(TREE)`` inside ``mlflow.start_run()`` with a local SQLite
  tracking store and a local artifact root, in a fresh process.

The tree is the one `bench_objects.py` builds (80 % incompressible random files with
log-normal sizes, 20 % small text files) and was just written, so every reader reads it from
the page cache: the figures compare CPU and write paths, not the disk. Medians of the rounds;
the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_objects import build_tree  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def tool_version(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout else None


def mlflow_available() -> str | None:
    try:
        from importlib.metadata import version

        return version("mlflow")
    except Exception:
        return None


MLFLOW_SCRIPT = """
import sys, mlflow
mlflow.set_tracking_uri("sqlite:///" + sys.argv[2] + "/mlflow.db")
exp = mlflow.create_experiment("bench", artifact_location="file://" + sys.argv[2] + "/artifacts")
with mlflow.start_run(experiment_id=exp):
    mlflow.log_artifacts(sys.argv[1], artifact_path="data")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dvc", default=shutil.which("dvc"), help="the dvc command (default: PATH)")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    mlflow_v = None if a.no_peers else mlflow_available()
    dvc = None if a.no_peers else a.dvc
    dvc_v = tool_version([dvc, "--version"]) if dvc else None
    studio_v = tool_version([sys.executable, "-m", "studio", "--version"])
    print(
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.python_version()}; "
        f"{os.cpu_count()} CPUs; studio {studio_v}; dvc {dvc_v}; mlflow {mlflow_v}; "
        f"load {loadavg()}",
        flush=True,
    )
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "studio")], check=True)

    rows: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
        base = Path(tmp)
        repo = base / "repo"
        tree = repo / "data"
        tree.mkdir(parents=True)
        files, nbytes = build_tree(tree, a.size_mb, a.files)
        run_dir = base / "run"
        run_dir.mkdir()
        (run_dir / "t.py").write_text("print('done')\n")
        git_env = dict(
            os.environ,
            GIT_AUTHOR_NAME="b",
            GIT_AUTHOR_EMAIL="b@x",
            GIT_COMMITTER_NAME="b",
            GIT_COMMITTER_EMAIL="b@x",
        )
        for r in range(a.rounds):
            home = base / f"home{r}"
            env = dict(os.environ, STUDIOML_HOME=str(home))
            add("python t.py", timed([sys.executable, "t.py"], run_dir, env))
            cmd = [sys.executable, "-m", "studio", "run", f"--capture-once={tree}:data", "t.py"]
            add("studio first", timed(cmd, run_dir, env))
            add("studio again", timed(cmd, run_dir, env))
            shutil.rmtree(home)

            out = base / "tree.tgz"
            add("tar czf", timed(["tar", "czf", str(out), "-C", str(repo), "data"], base))
            out.unlink()

            if dvc:
                for p in (repo / ".git", repo / ".dvc", repo / "data.dvc", repo / ".gitignore"):
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(
                        missing_ok=True
                    )
                subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=git_env)
                subprocess.run([dvc, "init", "-q"], cwd=repo, check=True, env=git_env)
                subprocess.run(
                    [dvc, "config", "core.analytics", "false"], cwd=repo, check=True, env=git_env
                )
                add("dvc add", timed([dvc, "add", "-q", "data"], repo, git_env))
                add("dvc add again", timed([dvc, "add", "-q", "data"], repo, git_env))

            if mlflow_v:
                mdir = base / f"mlflow{r}"
                mdir.mkdir()
                add(
                    "mlflow.log_artifacts",
                    timed([sys.executable, "-c", MLFLOW_SCRIPT, str(tree), str(mdir)], base),
                )
                shutil.rmtree(mdir)
            print(f"round {r + 1}/{a.rounds} done, load {loadavg()}", flush=True)

    med = {k: statistics.median(v) for k, v in rows.items()}
    py = med["python t.py"]
    first = med["studio first"] - py
    again = med["studio again"] - py
    if a.json:
        print(json.dumps({"files": files, "bytes": nbytes, "medians": med, "all": rows}))
    print(f"\ntree: {files:,} files, {nbytes / 2**20:,.0f} MB; rounds {a.rounds}; load {loadavg()}")
    print("| what the user runs | time (median) | studio is |")
    print("|---|---|---|")
    print(
        f"| `studio run --capture-once=TREE:data t.py`, first (minus `python t.py`) | {first:.2f} s | |"
    )
    print(f"| the same command again, tree unchanged (minus `python t.py`) | {again:.2f} s | |")
    print(f"| `tar czf` | {med['tar czf']:.2f} s | {med['tar czf'] / first:.1f}x faster |")
    if "dvc add" in med:
        print(
            f"| `dvc add data` ({dvc_v}) | {med['dvc add']:.2f} s | {med['dvc add'] / first:.1f}x faster |"
        )
        print(
            f"| `dvc add data` again, unchanged | {med['dvc add again']:.2f} s | "
            f"{med['dvc add again'] / again:.1f}x faster |"
        )
    if "mlflow.log_artifacts" in med:
        m = med["mlflow.log_artifacts"]
        print(
            f"| `mlflow.log_artifacts` ({mlflow_v}), whole process | {m:.2f} s | {m / first:.1f}x faster |"
        )


if __name__ == "__main__":
    main()
