"""A reaper started before its script is known (`studio.runner.process.Prestarted`)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from studio.runner.process import Prestarted

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper is Linux's")

SCRIPT = """\
import os, sys
print(os.getcwd())
print(os.environ.get("ONLY_HERE"), os.environ.get("NOT_PASSED"))
print(repr(sys.stdin.read()))
print(sys.argv[1:])
sys.exit(7)
"""


def test_launch_runs_the_script_in_its_cwd_with_exactly_its_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOT_PASSED", "supervisor's own")
    (tmp_path / "s.py").write_text(SCRIPT)
    reaper = Prestarted.start()
    assert reaper is not None
    env = {"PATH": os.environ["PATH"], "ONLY_HERE": "yes", "SPACES": "a b\tc=d"}
    proc = reaper.launch([sys.executable, "s.py", "--x", "a b"], str(tmp_path), env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 7, err
    assert out.decode().splitlines() == [str(tmp_path), "yes None", "''", "['--x', 'a b']"]
    reaper.cancel()  # after launch: nothing left to cancel


def test_cancel_runs_nothing(tmp_path: Path) -> None:
    reaper = Prestarted.start()
    assert reaper is not None and reaper.proc is not None
    proc = reaper.proc
    reaper.cancel()
    assert proc.returncode == 0
    with pytest.raises(OSError):
        reaper.launch([sys.executable, "-c", "pass"], str(tmp_path), dict(os.environ))


def test_a_missing_program_is_exit_127(tmp_path: Path) -> None:
    reaper = Prestarted.start()
    assert reaper is not None
    proc = reaper.launch(["no-such-program-here"], str(tmp_path), {"PATH": os.environ["PATH"]})
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 127 and b"could not start no-such-program-here" in err


WARM_PROBE = """\
import os, sys
print(b"STUDIOML_WARM_FD=" in open("/proc/self/environ", "rb").read(), os.getcwd(), os.environ.get("STUDIOML_TAG"),
      "STUDIOML_WARM_FD" in os.environ, sys.argv[1:])
open(os.path.join(os.path.dirname(__file__), "ran-" + os.environ["STUDIOML_TAG"]), "w").close()
"""


def _run_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def test_warm_start_runs_the_expected_command_in_the_process_started_ahead(tmp_path: Path) -> None:
    (tmp_path / "w.py").write_text(WARM_PROBE)
    argv = [sys.executable, str(tmp_path / "w.py"), "x"]
    reaper = Prestarted.start(argv)
    assert reaper is not None
    # Studio's own variables may differ: they are set when the launch arrives.
    proc = reaper.launch(argv, os.getcwd(), _run_env(STUDIOML_TAG="warm", STUDIOML_EXPERIMENT="k"))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.decode().split() == ["True", os.getcwd(), "warm", "False", "['x']"]


@pytest.mark.parametrize("change", ["argv", "cwd", "env"])
def test_a_launch_unlike_the_expected_one_starts_cold_and_the_warm_one_never_runs(
        tmp_path: Path, change: str) -> None:
    (tmp_path / "w.py").write_text(WARM_PROBE)
    argv = [sys.executable, str(tmp_path / "w.py"), "x"]
    reaper = Prestarted.start(argv)
    assert reaper is not None
    launch_argv = argv[:2] + ["y"] if change == "argv" else argv
    cwd = str(tmp_path) if change == "cwd" else os.getcwd()
    env = _run_env(STUDIOML_TAG="cold", **({"OTHER": "1"} if change == "env" else {}))
    proc = reaper.launch(launch_argv, cwd, env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.decode().split()[0] == "False" and out.decode().split()[2] == "cold"
    assert [p.name for p in tmp_path.glob("ran-*")] == ["ran-cold"]  # ran once, the cold way


def test_cancelled_warm_start_runs_nothing(tmp_path: Path) -> None:
    (tmp_path / "w.py").write_text(WARM_PROBE)
    reaper = Prestarted.start([sys.executable, str(tmp_path / "w.py")])
    assert reaper is not None and reaper.proc is not None
    proc = reaper.proc
    time.sleep(0.3)  # the warm interpreter is up and waiting
    reaper.cancel()
    assert proc.returncode == 0
    assert list(tmp_path.glob("ran-*")) == []
    held = [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline_has(pid, str(tmp_path / "w.py"))]
    assert held == []


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        return text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.parametrize("warm", [False, True])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_sent_to_the_group_right_at_launch_stops_the_script(tmp_path: Path, warm: bool, sig: int) -> None:
    """The supervisor stops a run by signalling the reaper's group; sent right after the
    launch, the signal may reach the reaper before the script exists (cold) or while the
    warm start is still setting up: either way the script must not run on."""
    (tmp_path / "slow.py").write_text("import time\ntime.sleep(30)\n")
    argv = [sys.executable, str(tmp_path / "slow.py")]
    for _ in range(5):
        reaper = Prestarted.start(argv if warm else None)
        assert reaper is not None
        if warm:
            time.sleep(0.2)  # the warm interpreter is up and waiting
        proc = reaper.launch(argv, os.getcwd(), _run_env())
        os.killpg(proc.pid, sig)
        assert proc.wait(timeout=10) == -sig
        proc.communicate()
