"""A reaper started before its script is known (`studio.runner.process.Prestarted`)."""

from __future__ import annotations

import os
import sys
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
