"""End to end: `workbook.new_experiment()` returns before its workspace is stored.

The session's background tick stores the workspace and collects git (or `close()`, or the
interpreter's exit, does it first); a process killed before that leaves a record that says so:
a `workspace` artifact without a tree, `git` pending, and `studio rerun` refuses it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from studio.api.context import Context
from studio.config import load_settings
from studio.entities import Experiment, Status
from tests.e2e.helpers import studio, studio_json

REPO = Path(__file__).resolve().parents[2]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}  # fmt: skip

# A tick far away: nothing is stored in the background unless the script lets it happen.
PROLOGUE = """
import json, os, signal, sys, time
from studio.workbook import session
session.TICK = float(os.environ.get("TEST_TICK", "3600"))
from studio import workbook
from studio.api.context import shared_context

def record(key):
    e = shared_context().meta.get_experiment(key)
    return {"tree": e.artifacts["workspace"].tree, "git": e.git, "status": str(e.status)}
"""


def project(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "helper.py").write_text("VALUE = 1\n")
    script = folder / "train.py"
    script.write_text(textwrap.dedent(PROLOGUE) + textwrap.dedent(body))
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, env={**os.environ, **GIT_ENV})
    return script


def run(script: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, script.name], cwd=script.parent, capture_output=True, text=True, timeout=120,
        env={**os.environ, **GIT_ENV, "PYTHONPATH": str(REPO), **env},
    )  # fmt: skip


def lines(proc: subprocess.CompletedProcess[str]) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def stored(studio_home: Path, key: str) -> Experiment:
    ctx = Context(load_settings())
    try:
        return ctx.meta.get_experiment(key)
    finally:
        ctx.close()


def head(script: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=script.parent, capture_output=True, text=True)
    return out.stdout.strip()


def test_new_experiment_returns_first_and_close_stores_the_workspace(studio_home: Path, tmp_path: Path) -> None:
    script = project(tmp_path, """
        exp = workbook.new_experiment(name="bg", echo=False)
        print(json.dumps({"key": exp.key, **record(exp.key)}))
        exp.close()
        print(json.dumps(record(exp.key)))
    """)
    proc = run(script)
    assert proc.returncode == 0, proc.stderr
    before, after = lines(proc)
    assert before["tree"] is None and "pending" in before["git"] and before["status"] == "running"
    assert after["tree"] and after["git"]["commit"] == head(script) and after["status"] == "finished"
    assert "pending" not in after["git"]
    exp = stored(studio_home, before["key"])
    assert exp.artifacts["workspace"].files == 2  # train.py, helper.py
    assert exp.artifacts["workspace"].tree == after["tree"]
    studio("rerun", before["key"], "--queue", "q", check=True)  # a stored workspace: it can rerun


def test_the_background_tick_stores_it_while_the_run_goes_on(studio_home: Path, tmp_path: Path) -> None:
    script = project(tmp_path, """
        exp = workbook.new_experiment(name="tick", echo=False)
        deadline = time.monotonic() + 60
        while record(exp.key)["tree"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        print(json.dumps(record(exp.key)))
    """)
    proc = run(script, TEST_TICK="0.1")
    assert proc.returncode == 0, proc.stderr
    [running] = lines(proc)
    assert running["tree"] and running["git"]["commit"] == head(script) and running["status"] == "running"


def test_exit_without_close_stores_the_workspace(studio_home: Path, tmp_path: Path) -> None:
    script = project(tmp_path, """
        exp = workbook.new_experiment(name="exit", echo=False)
        print(json.dumps({"key": exp.key}))
        sys.exit(0)  # no close(): the interpreter's exit finishes the session
    """)
    proc = run(script)
    assert proc.returncode == 0, proc.stderr
    [out] = lines(proc)
    exp = stored(studio_home, out["key"])
    assert exp.status == Status.FINISHED and exp.artifacts["workspace"].tree
    assert exp.git["commit"] == head(script) and "pending" not in exp.git


def test_killed_before_the_workspace_is_stored_says_so(studio_home: Path, tmp_path: Path) -> None:
    (studio_home / "config.yaml").write_text("worker:\n  lease: 1\n  heartbeat: 0.3\n")
    script = project(tmp_path, """
        exp = workbook.new_experiment(name="killed", echo=False)
        print(json.dumps({"key": exp.key}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = run(script)
    assert proc.returncode == -9
    [out] = lines(proc)
    key = out["key"]
    time.sleep(1.5)  # the lease lapses
    shown = studio_json("runs", "show", key)
    assert shown["status"] == "lost"
    assert shown["artifacts"]["workspace"]["tree"] is None
    assert "pending" in shown["git"] and "commit" not in shown["git"]
    table = studio("runs", "show", key, check=True).stdout
    assert "not stored" in table and "not recorded" in table
    refused = studio("rerun", key, "--queue", "q")
    assert refused.returncode != 0 and "no stored workspace" in refused.stderr + refused.stdout


def test_first_new_experiment_returns_with_the_segment_writers_imported_off_the_main_thread(
    studio_home: Path, tmp_path: Path
) -> None:
    script = project(tmp_path, """
        import threading
        seen = {}

        class Spy:
            def find_spec(self, name, path=None, target=None):
                if name.startswith(("pyarrow.", "numpy.")):
                    seen.setdefault(name.partition(".")[0], threading.current_thread().name)
                return None

        sys.meta_path.insert(0, Spy())
        exp = workbook.new_experiment(name="warm", echo=False)
        # no pause left for the training loop: pyarrow's initialisation is already done
        print(json.dumps({"loaded": "pyarrow.lib" in sys.modules, "threads": seen}))
        exp.close()
    """)
    proc = run(script)
    assert proc.returncode == 0, proc.stderr
    [out] = lines(proc)
    assert out["loaded"] and set(out["threads"]) == {"numpy", "pyarrow"}
    assert "MainThread" not in out["threads"].values(), out
