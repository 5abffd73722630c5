"""`studio run` starts the script's own interpreter ahead (a warm start, `studio/runner/_reaper.py`
and `studio/runner/warm/sitecustomize.py`). The script must not be able to tell, and nothing of
it may run before studio has captured the workspace and recorded the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import popen_studio, studio, studio_json

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper is Linux's")

# What a script can see of how it was started; `warm` is the one difference (the environment
# the process was exec'ed with, which only /proc shows).
PROBE = '''\
"""the probe's docstring"""
import inspect, json, os, sys
environ0 = open("/proc/self/environ", "rb").read()
print(json.dumps({
    "warm": b"STUDIOML_WARM_FD=" in environ0,
    "name": __name__, "file": __file__, "doc": __doc__, "spec": repr(__spec__),
    "loader": [type(__loader__).__name__, __loader__.name],
    "argv": sys.argv, "orig_argv": sys.orig_argv[1:],
    "cmdline": open("/proc/self/cmdline", "rb").read().decode().split("\\0")[1:-1],
    "path": sys.path, "cwd": os.getcwd(), "depth": len(inspect.stack()),
    "modules": sorted(m for m in ("sitecustomize", "site", "inspect") if m in sys.modules),
    "env": {k: v for k, v in os.environ.items() if not k.startswith("STUDIOML_")},
    "studio_vars": sorted(k for k in os.environ if k.startswith("STUDIOML_")),
    "flags": [sys.flags.safe_path, sys.flags.no_site, sys.flags.ignore_environment],
    "buffered": sys.stdout.line_buffering,
}))
raise ValueError("boom")
'''


def probe_run(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("{")))


def test_the_script_sees_what_a_cold_start_shows(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "probe.py").write_text(PROBE)
    warm = studio("run", "probe.py", "a", "b c", cwd=ws)
    # The same command line, started the way studio starts it when it cannot start ahead.
    cold = studio("run", "probe.py", "a", "b c", cwd=ws, env={"STUDIOML_WARM_START": "0"})
    assert warm.returncode == cold.returncode == 1, warm.stderr
    seen, expected = probe_run(warm), probe_run(cold)
    assert seen.pop("warm") is True and expected.pop("warm") is False
    expected["studio_vars"].remove("STUDIOML_WARM_START")  # how the cold one was asked for
    assert seen == expected
    script = str(ws / "probe.py")
    assert seen["argv"] == [script, "a", "b c"] == seen["cmdline"] == seen["orig_argv"]
    assert seen["path"][0] == str(ws) and seen["doc"] == "the probe's docstring" and seen["depth"] == 1
    assert seen["modules"] == ["inspect", "site"] and "PYTHONPATH" not in seen["env"]
    assert seen["studio_vars"] == ["STUDIOML_ARTIFACT_MAPPING", "STUDIOML_EXPERIMENT", "STUDIOML_HOME",
                                   "STUDIOML_METRICS_DIR", "STUDIOML_PARAMS"]
    # The traceback is the script's alone, as python prints it.
    trace = warm.stderr[warm.stderr.index("Traceback"):].splitlines()[:4]
    assert trace == ["Traceback (most recent call last):", f'  File "{script}", line 17, in <module>',
                     '    raise ValueError("boom")', "ValueError: boom"]
    # And what python itself shows, run directly (argv as typed, no studio variables).
    direct = subprocess.run([sys.executable, "probe.py", "a", "b c"], cwd=ws, capture_output=True, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    plain = probe_run(direct)
    for field in ("name", "file", "doc", "spec", "loader", "path", "cwd", "depth", "modules", "flags", "buffered"):
        if field == "file":
            assert seen[field] == str(ws / plain[field])
        else:
            assert seen[field] == plain[field], field


def test_a_module_run_starts_warm(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "pkg").mkdir(parents=True)
    (ws / "pkg" / "__init__.py").write_text("")
    (ws / "pkg" / "probe.py").write_text(PROBE)
    proc = studio("run", "pkg::probe", "x", cwd=ws)
    assert proc.returncode == 1, proc.stderr
    seen = probe_run(proc)
    assert seen["warm"] is True and seen["name"] == "__main__"
    assert seen["argv"] == [str(ws / "pkg" / "probe.py"), "x"] and seen["path"][0] == str(ws)
    assert seen["cmdline"] == ["-m", "pkg.probe", "x"]


def test_the_users_own_sitecustomize_still_runs_once(studio_home: Path, tmp_path: Path) -> None:
    site_dir = tmp_path / "mysite"
    site_dir.mkdir()
    (site_dir / "sitecustomize.py").write_text(
        "import os, sys\nprint('user sitecustomize', os.environ.get('STUDIOML_EXPERIMENT') is not None, file=sys.stderr)\n"
        "sys.user_marker = getattr(sys, 'user_marker', 0) + 1\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "s.py").write_text(
        "import os, sys, sitecustomize\nprint(open('/proc/self/environ','rb').read().count(b'STUDIOML_WARM_FD='),"
        " sys.user_marker, sitecustomize.__file__, os.environ['PYTHONPATH'], sys.path[1])\n")
    proc = studio("run", "s.py", cwd=ws, env={"PYTHONPATH": str(site_dir)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[:5] == ["1", "1", str(site_dir / "sitecustomize.py"), str(site_dir), str(site_dir)]
    # It ran once in the script's process (and once in studio's own), with the run's environment.
    assert proc.stderr.count("user sitecustomize True") == 1


def test_a_run_whose_start_differs_from_the_guess_starts_cold(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "probe.py").write_text(PROBE)
    config = tmp_path / "config.yaml"
    config.write_text("env:\n  MODE: fast\n")  # the run's environment is more than studio's variables
    proc = studio("run", "--config", str(config), "probe.py", cwd=ws)
    seen = probe_run(proc)
    assert seen["warm"] is False and seen["env"]["MODE"] == "fast"
    off = studio("run", "probe.py", cwd=ws, env={"STUDIOML_WARM_START": "0"})
    assert probe_run(off)["warm"] is False
    assert {r["status"] for r in studio_json("runs", "list", "all")} == {"failed"}


def _processes_running(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(pid))
    return found


def _wait_gone(marker: str, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _processes_running(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_bad_input_runs_nothing_and_leaves_no_process(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "sideeffect_probe.py").write_text("open('ran', 'w').write('yes')\n")
    proc = studio("run", "--capture-once", str(tmp_path / "missing") + ":data", "sideeffect_probe.py", cwd=ws)
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    assert not (ws / "ran").exists()
    assert _wait_gone("sideeffect_probe.py") == []
    assert studio_json("runs", "list", "all") == []


def test_interrupted_while_capturing_runs_nothing(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "interrupt_probe.py").write_text("open('ran', 'w').write('yes')\n")
    for i in range(3000):  # a workspace large enough that the capture is still going on
        (ws / f"f{i}.txt").write_text(str(i) * 100)
    proc = popen_studio("run", "interrupt_probe.py", cwd=ws)
    deadline = time.monotonic() + 30
    while not _processes_running(str(ws / "interrupt_probe.py")) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.3)  # the warm start is up, studio's imports are done, the first capture takes ~1 s
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (ws / "ran").exists()
    assert _wait_gone("interrupt_probe.py") == []
    assert {r["status"] for r in studio_json("runs", "list", "all")} <= {"stopped"}


def test_supervisor_killed_before_launch_leaves_nothing_running(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "killed_probe.py").write_text("open('ran', 'w').write('yes')\n")
    for i in range(3000):
        (ws / f"f{i}.txt").write_text(str(i) * 100)
    proc = popen_studio("run", "killed_probe.py", cwd=ws)
    deadline = time.monotonic() + 30
    while not _processes_running(str(ws / "killed_probe.py")) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.3)
    proc.kill()
    proc.communicate(timeout=60)
    assert _wait_gone("killed_probe.py") == []
    assert not (ws / "ran").exists()
