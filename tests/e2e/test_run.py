"""End to end: the real `studio run` on the embedded defaults (SQLite + local store)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import popen_studio, studio, studio_json

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "general"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def all_keys() -> list[str]:
    return [r["key"] for r in studio_json("runs", "list", "all")]


def test_seed_linear_regression_commands_verbatim(studio_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "general"
    shutil.copytree(EXAMPLES, work)
    proc = studio(
        "run",
        "--capture=~/.weights:weights",
        "--experiment",
        "linear_regression",
        "train_linreg.py",
        cwd=work,
    )
    assert proc.returncode == 0, proc.stderr
    assert "step = 9, loss =" in proc.stdout
    weights = Path(os.environ["HOME"]) / ".weights"
    assert len(list(weights.glob("*.pck"))) == 10
    data = studio_json("runs", "show", "linear_regression")
    assert data["status"] == "finished" and data["returncode"] == 0
    for field in (
        "key",
        "project",
        "script",
        "args",
        "git",
        "pythonenv",
        "host",
        "time_added",
        "time_started",
        "time_finished",
        "artifacts",
    ):
        assert field in data
    assert data["script"] == "train_linreg.py"
    assert data["artifacts"]["weights"]["files"] == 10 and data["artifacts"]["weights"]["tree"]
    assert data["artifacts"]["workspace"]["tree"]
    assert "step = 9" in studio("runs", "logs", "linear_regression", check=True).stdout

    proc = studio("run", "--reuse=linear_regression/weights:w", "print_norm_linreg.py", cwd=work)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "*****" and lines[-1] == "*****"
    assert lines[1].endswith(".pck") and "blobcache" in lines[1]
    float(lines[2])


def test_script_args_env_and_exit_code(studio_home: Path, tmp_path: Path) -> None:
    write(studio_home / "config.yaml", "env:\n  GREETING: hello-$USER_NAME\n")
    script = write(
        tmp_path / "ws" / "show.py",
        """
        import json, os, sys
        print(json.dumps({"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in
              ["STUDIOML_EXPERIMENT", "STUDIOML_HOME", "STUDIOML_ARTIFACT_MAPPING", "PYTHONUNBUFFERED", "GREETING"]}}))
        sys.exit(int(os.environ.get("CODE", "0")))
    """,
    )
    proc = studio(
        "run",
        "-e",
        "args1",
        "show.py",
        "--experiment",
        "x",
        "-e",
        "y",
        cwd=script.parent,
        env={"USER_NAME": "ada", "CODE": "3"},
    )
    assert proc.returncode == 3
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["argv"] == ["--experiment", "x", "-e", "y"]
    env = out["env"]
    assert env["STUDIOML_EXPERIMENT"] == "args1" and env["PYTHONUNBUFFERED"] == "1"
    assert env["STUDIOML_HOME"] == str(studio_home) and env["GREETING"] == "hello-ada"
    mapping = json.loads(Path(env["STUDIOML_ARTIFACT_MAPPING"]).read_text())
    assert {"workspace", "output", "modeldir", "tb"} <= set(mapping)
    data = studio_json("runs", "show", "args1")
    assert data["status"] == "failed" and data["returncode"] == 3
    assert data["args"] == ["--experiment", "x", "-e", "y"]


def test_module_mode(studio_home: Path, tmp_path: Path) -> None:
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "mod.py", "import sys\nprint('module says', sys.argv[1:])\n")
    proc = studio("run", "-e", "m1", "pkg::mod", "a", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "module says ['a']" in proc.stdout
    proc = studio("run", "-e", "m2", "-m", "pkg.mod", "b", cwd=tmp_path)
    assert "module says ['b']" in proc.stdout
    assert studio_json("runs", "show", "m2")["module"] is True


def test_workspace_ignore_git_and_artifact_get(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    write(ws / "train.py", "print('hi')\n")
    write(ws / "big" / "data.bin", "x" * 1000)
    write(ws / "notes.txt", "keep me\n")
    write(ws / ".studioml_ignore", "big/\n")
    git = ["git", "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q"], cwd=ws, check=True)
    subprocess.run([*git, "add", "train.py"], cwd=ws, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=ws, check=True)
    write(ws / "train.py", "print('hi there')\n")
    assert studio("run", "-e", "ws1", "train.py", cwd=ws).returncode == 0
    data = studio_json("runs", "show", "ws1")
    assert len(data["git"]["commit"]) == 40
    assert "hi there" in data["git"]["diff"] and "notes.txt" in data["git"]["diff"]
    dest = tmp_path / "out"
    studio("artifacts", "get", "ws1", "workspace", str(dest), check=True)
    assert (dest / "notes.txt").read_text() == "keep me\n"
    assert not (dest / "big").exists()
    out = tmp_path / "out.log"
    studio("artifacts", "get", "ws1", "output", str(out), check=True)
    assert out.read_text() == "hi there\n"


def test_capture_is_continuous_and_only_changed_files(studio_home: Path, tmp_path: Path) -> None:
    write(studio_home / "config.yaml", "saveWorkspaceFrequency: 0.5\n")
    script = write(
        tmp_path / "ws" / "slow.py",
        """
        import os, time
        from studio import fs_tracker
        d = fs_tracker.get_artifact("results")
        for i in range(6):
            with open(os.path.join(d, f"r{i}.txt"), "w") as f:
                f.write(str(i))
            print("wrote", i, flush=True)
            time.sleep(0.5)
    """,
    )
    proc = popen_studio(
        "run",
        "-e",
        "cap1",
        "--capture",
        str(tmp_path / "res") + ":results",
        "slow.py",
        cwd=script.parent,
    )
    seen_files = set()
    deadline = time.time() + 60
    while proc.poll() is None and time.time() < deadline:
        r = studio("runs", "show", "cap1", "--json")
        if r.returncode == 0:
            art = json.loads(r.stdout)["artifacts"]["results"]
            seen_files.add(art["files"])
        time.sleep(0.3)
    assert proc.wait(30) == 0
    assert any(0 < n < 6 for n in seen_files), seen_files  # saved while running
    assert studio_json("runs", "show", "cap1")["artifacts"]["results"]["files"] == 6


def test_max_duration_kills(studio_home: Path, tmp_path: Path) -> None:
    script = write(
        tmp_path / "ws" / "sleep.py", "import time\nprint('start', flush=True)\ntime.sleep(60)\n"
    )
    t0 = time.time()
    proc = studio("run", "-e", "md1", "--max-duration", "1s", "sleep.py", cwd=script.parent)
    assert time.time() - t0 < 30
    assert proc.returncode != 0
    data = studio_json("runs", "show", "md1")
    assert data["status"] == "killed" and "max duration" in data["status_reason"]


def test_sigterm_is_forwarded_and_final_capture_happens(studio_home: Path, tmp_path: Path) -> None:
    script = write(
        tmp_path / "ws" / "term.py",
        """
        import os, signal, sys, time
        from studio import fs_tracker
        def bye(*a):
            open(os.path.join(fs_tracker.get_model_directory(), "final.txt"), "w").write("saved")
            print("got SIGTERM", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, bye)
        print("ready", flush=True)
        time.sleep(60)
    """,
    )
    proc = popen_studio("run", "-e", "term1", "term.py", cwd=script.parent)
    assert proc.stdout is not None
    assert "ready" in proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 7
    data = studio_json("runs", "show", "term1")
    assert data["status"] == "killed" and data["returncode"] == 7
    assert data["artifacts"]["modeldir"]["files"] == 1


def test_runs_stop_and_kill(studio_home: Path, tmp_path: Path) -> None:
    write(studio_home / "config.yaml", "worker:\n  heartbeat: 0.3\n")
    script = write(
        tmp_path / "ws" / "loop.py", "import time\nprint('up', flush=True)\ntime.sleep(60)\n"
    )
    proc = popen_studio("run", "-e", "stop1", "loop.py", cwd=script.parent)
    assert proc.stdout is not None and "up" in proc.stdout.readline()
    studio("runs", "stop", "stop1", check=True)
    assert proc.wait(30) != 0
    assert studio_json("runs", "show", "stop1")["status"] == "stopped"
    studio("runs", "kill", "--yes", "stop1", check=True)
    assert "stop1" not in all_keys()


def test_dead_supervisor_shows_lost(studio_home: Path, tmp_path: Path) -> None:
    write(studio_home / "config.yaml", "worker:\n  lease: 1\n  heartbeat: 0.3\n")
    script = write(
        tmp_path / "ws" / "loop.py", "import time\nprint('up', flush=True)\ntime.sleep(30)\n"
    )
    proc = popen_studio("run", "-e", "lost1", "loop.py", cwd=script.parent)
    assert proc.stdout is not None and "up" in proc.stdout.readline()
    assert studio_json("runs", "show", "lost1")["status"] == "running"
    proc.kill()
    proc.wait()
    time.sleep(1.5)
    assert studio_json("runs", "show", "lost1")["status"] == "lost"


def test_rerun_and_gc(studio_home: Path, tmp_path: Path) -> None:
    script = write(tmp_path / "ws" / "hello.py", "import sys\nprint('hello', sys.argv[1:])\n")
    studio("run", "-e", "orig", "hello.py", "a", "b", cwd=script.parent, check=True)
    script.write_text("print('changed')\n")  # rerun uses the stored workspace, not the folder
    proc = studio("rerun", "-e", "again", "orig", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hello ['a', 'b']" in proc.stdout
    data = studio_json("runs", "show", "again")
    assert data["status"] == "finished" and data["args"] == ["a", "b"]
    studio("runs", "kill", "-y", "orig", "again", check=True)
    assert studio_json("gc")["removed_objects"] == 0  # young objects: maybe a capture in progress
    report = studio_json("gc", "--grace", "0")
    assert report["removed_objects"] > 0


BAD_INPUTS = [
    (["run", "missing.py"], "not found"),
    (["run", "-c", "nocolon", "ok.py"], "PATH:TAG"),
    (["run", "-co", "/nonexistent/dir:data", "ok.py"], "does not exist"),
    (["run", "-r", "ghost/weights:w", "ok.py"], "no experiment 'ghost'"),
    (["run", "-r", "dup/nothing:w", "ok.py"], "no stored artifact 'nothing'"),
    (["run", "--max-duration", "48x", "ok.py"], "cannot parse duration"),
    (["run", "--ram", "lots", "ok.py"], "cannot parse size"),
    (["run", "-e", "../x", "ok.py"], "experiment key"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_input_is_one_clear_line_and_creates_nothing(
    studio_home: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    ws = tmp_path / "ws"
    write(ws / "ok.py", "print('ok')\n")
    studio("run", "-e", "dup", "ok.py", cwd=ws, check=True)
    proc = studio(*args, cwd=ws)
    assert proc.returncode not in (0, 1), proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert all_keys() == ["dup"]


def test_bad_config_and_database_url(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    write(ws / "ok.py", "print('ok')\n")
    write(tmp_path / "bad.yaml", "storage:\n  path: /x\n")
    proc = studio("run", "--config", str(tmp_path / "bad.yaml"), "ok.py", cwd=ws)
    assert proc.returncode == 194 and "storage.path" in proc.stderr
    proc = studio("run", "ok.py", cwd=ws, env={"STUDIOML_DATABASE_URL": "mongodb://x"})
    assert (
        proc.returncode != 0
        and "mongodb" in proc.stderr
        and len(proc.stderr.strip().splitlines()) == 1
    )


def test_cli_starts_fast_enough_to_not_import_heavy_modules() -> None:
    code = "import sys, studio, studio.fs_tracker; print(sorted(m for m in ('pandas','sqlalchemy','fastapi','numpy') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_run_on_an_existing_database_does_not_import_sqlalchemy(studio_home: Path, tmp_path: Path) -> None:
    # About 0.2 s of every `studio run` (docs/benchmarks.md): the supervisor's statements run
    # on stdlib sqlite3 (studio.meta.lite); only creating the database needs Alembic.
    ws = tmp_path / "ws"
    write(ws / "ok.py", "print('ok')\n")
    studio("run", "ok.py", cwd=ws, check=True)
    # The real CLI, reporting at exit which of the modules in question it had imported.
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic'}),"
        " 'studio.meta.lite' in sys.modules, file=sys.stderr))\n"
        "from studio.cli.main import main\n"
        "main(['run', 'ok.py'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ws, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[] True"
    assert [r["status"] for r in studio_json("runs", "list", "all")] == ["finished", "finished"]


def test_a_repeated_run_reuses_host_facts_and_packages_without_importing_psutil(
    studio_home: Path, tmp_path: Path
) -> None:
    # What only changes with a reboot or an install is read once ($STUDIOML_HOME/cache), so a
    # short run's supervisor imports neither psutil nor what only flags/arguments need.
    ws = tmp_path / "ws"
    write(ws / "ok.py", "print('ok')\n")
    studio("run", "--experiment", "first", "ok.py", cwd=ws, check=True)
    assert (studio_home / "cache" / "host.json").is_file()
    time.sleep(2.1)  # the workspace folder (on sys.path) was just created: not cached within 2 s
    studio("run", "--experiment", "second", "ok.py", cwd=ws, check=True)
    code = (
        "import atexit, sys\n"
        "heavy = ('psutil', 'socket', 'secrets', 'studio.api.specs', 'studio.capture.cli_params', 'studio.tracking.outputmetrics')\n"
        "atexit.register(lambda: print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr))\n"
        "from studio.cli.main import main\n"
        "main(['run', '--experiment', 'third', 'ok.py'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ws, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]"
    first, third = studio_json("runs", "show", "first"), studio_json("runs", "show", "third")
    for fact in ("cpu_count_physical", "ram_total", "gpus", "cpu_count_logical", "hostname", "user"):
        assert third["host"][fact] == first["host"][fact]
    assert third["host"]["ram_total"] > 0 and third["pythonenv"] == first["pythonenv"]


def test_a_long_log_is_merged_into_few_segments_and_counted_once(studio_home: Path, tmp_path: Path) -> None:
    # 40 flushes (one per second in a real run): the logger merges them 16 at a time on its
    # background thread; the summaries and the stored artifact still hold each point once.
    script = write(
        tmp_path / "ws" / "long.py",
        """
        import time
        import studio
        from studio.tracking.metrics import flush
        for step in range(40):
            studio.log(step=step, loss=1.0 / (step + 1))
            flush()
        time.sleep(2.5)  # the background thread merges within a flush interval (1 s)
        """,
    )
    proc = studio("run", "-e", "long1", "--metric", "loss:min", "long.py", cwd=script.parent)
    assert proc.returncode == 0, proc.stderr
    data = studio_json("runs", "show", "long1")
    assert data["metrics"]["loss"]["count"] == 40 and data["metrics"]["loss"]["last_step"] == 39
    assert data["metric_value"] == 1.0 / 40
    dest = tmp_path / "metrics"
    studio("artifacts", "get", "long1", "metrics", str(dest), check=True)
    from studio.tracking import segments, series

    visible = segments.list_segments(dest)
    assert len(visible) <= 10  # 2 merges of 16 + the last 8, not 40 files
    # The merges' inputs were deleted at exit, so the artifact does not store them twice.
    assert sorted(p.name for p in dest.iterdir() if segments.is_segment_name(p.name)) == visible
    assert series.read_series(dest)["step"].tolist() == list(range(40))


def test_logged_metrics_are_summarized_and_folded(studio_home: Path, tmp_path: Path) -> None:
    script = write(
        tmp_path / "ws" / "logs.py",
        """
        import studio
        for step, loss in enumerate([3.0, 0.0, 2.0]):
            studio.log(step=step, loss=loss)
        print("acc: 0.75")
        """,
    )
    proc = studio("run", "-e", "met1", "--metric", "loss:min", "logs.py", cwd=script.parent)
    assert proc.returncode == 0, proc.stderr
    data = studio_json("runs", "show", "met1")
    assert data["metric_value"] == 0.0  # a minimum of 0.0 is a value, not "missing"
    assert data["metrics"]["loss"]["count"] == 3 and data["metrics"]["loss"]["last"] == 2.0
    assert data["metrics"]["acc"]["last"] == 0.75  # `name: value` lines of the output
    dest = tmp_path / "metrics"
    studio("artifacts", "get", "met1", "metrics", str(dest), check=True)
    names = [p.name for p in dest.iterdir()]
    assert names and not [n for n in names if n.startswith(".")]
