"""Bad input through the real `studio` command: one clear line, studio's own exit code, and
nothing half-made (no experiment row, no new stored object, no folder created)."""

from __future__ import annotations

import json
import math
import os
import textwrap
from pathlib import Path

import pytest

from studio.entities import MetricSummary
from studio.exceptions import NotFoundError, UsageError
from studio.meta import open_meta_store
from studio.meta.base import MetaStore
from tests.e2e.helpers import studio

LONG = "n" * 256


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _store(home: Path) -> MetaStore:
    return open_meta_store(f"sqlite:///{home / 'studio.db'}", create=False)


def _keys(home: Path) -> list[str]:
    from studio.entities import ExperimentQuery

    store = _store(home)
    try:
        return sorted(e.key for e in store.query(ExperimentQuery(limit=1000)).items)
    finally:
        store.close()


def _objects(home: Path) -> list[str]:
    return sorted(str(p) for p in (home / "objects" / "objects").rglob("*") if p.is_file())


# (arguments, words the one line must hold, exit code); {ws} {tmp} are filled in per test.
BAD_INPUTS = [
    (["run", "--ram", "9999999999999999999p", "ok.py"], "larger than 1 EiB", UsageError.exit_code),
    (["run", "--hdd", "9" * 400 + "p", "ok.py"], "larger than 1 EiB", UsageError.exit_code),
    (["run", "--cpus", "99999999999999999999", "ok.py"], "check the number", UsageError.exit_code),
    (["run", "--max-duration", "inf", "ok.py"], "finite", UsageError.exit_code),
    (["run", "--lifetime", "1e300", "ok.py"], "longer than 100 years", UsageError.exit_code),
    (["run", "-co", "{tmp}/fifo:data", "ok.py"], "is not a file or folder", UsageError.exit_code),
    (["run", "--project", LONG, "ok.py"], "--project is 256 characters long; use at most 255", UsageError.exit_code),
    (["run", "--queue", LONG, "ok.py"], "--queue is 256 characters long", UsageError.exit_code),
    (["run", "--metric", LONG, "ok.py"], "--metric is 256 characters long", UsageError.exit_code),
    (["run", "-c", f"{{tmp}}/out:{LONG}", "ok.py"], "256 characters long", UsageError.exit_code),
    (["run", "--config", "{tmp}/inf-lease.yaml", "ok.py"], "worker.lease", UsageError.exit_code),
    (["run", "--config", "{tmp}/huge-lease.yaml", "ok.py"], "worker.lease", UsageError.exit_code),
    (["run", "--config", "{tmp}/missing-db.yaml", "ok.py"], "does not exist; create it", UsageError.exit_code),
    (["artifacts", "get", "dup", "workspace", "{tmp}/missing/dest"], "does not exist", UsageError.exit_code),
    (["artifacts", "get", "dup", "workspace", "{tmp}/a-file"], "it is a file", UsageError.exit_code),
    (["artifacts", "get", "dup", "typo"], "no stored artifact 'typo' (stored: metrics, modeldir, output, tb, workspace)",
     NotFoundError.exit_code),
    (["gc", "--grace", "inf"], "finite", UsageError.exit_code),
    (["worker", "--queue", "q", "--timeout", "nan"], "finite", UsageError.exit_code),
    (["runs", "list", "--limit", "99999999999999999999"], "--limit", UsageError.exit_code),
    (["runs", "list", "--bogus"], "No such option '--bogus'; see `studio runs list --help`", UsageError.exit_code),
]


@pytest.mark.parametrize(("args", "message", "code"), BAD_INPUTS, ids=lambda v: str(v)[:40] if isinstance(v, list) else None)
def test_bad_input_is_one_line_and_makes_nothing(
    studio_home: Path, tmp_path: Path, args: list[str], message: str, code: int
) -> None:
    ws = tmp_path / "ws"
    write(ws / "ok.py", "print('ok')\n")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "inf-lease.yaml").write_text("worker:\n  lease: .inf\n")
    (tmp_path / "huge-lease.yaml").write_text("worker:\n  lease: 1e12\n")
    (tmp_path / "missing-db.yaml").write_text(f"database:\n  url: sqlite:///{tmp_path}/nope/studio.db\n")
    studio("run", "-e", "dup", "ok.py", cwd=ws, check=True)
    before = _objects(studio_home)

    proc = studio(*[a.format(tmp=tmp_path, ws=ws) for a in args], cwd=ws, timeout=60)  # a FIFO must not hang

    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("studio: error:"), proc.stderr
    assert _keys(studio_home) == ["dup"]
    assert _objects(studio_home) == before
    assert not (tmp_path / "nope").exists() and not (tmp_path / "missing").exists()
    assert sorted(p.name for p in ws.iterdir()) == ["ok.py"]


def test_json_output_is_strict_json(studio_home: Path, tmp_path: Path) -> None:
    """NaN and infinities print as null (documented in README, "Exit codes")."""
    ws = tmp_path / "ws"
    write(ws / "ok.py", "print('ok')\n")
    studio("run", "-e", "k", "ok.py", cwd=ws, check=True)
    store = _store(studio_home)
    try:
        store.put_metric_summaries("k", [MetricSummary("loss", math.nan, -math.inf, math.inf, 3)])
    finally:
        store.close()

    def strict(text: str) -> object:
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))

    shown = strict(studio("runs", "show", "k", "--json", check=True).stdout)
    assert isinstance(shown, dict)
    loss = next(m for m in shown["metrics"] if m["name"] == "loss") if isinstance(shown["metrics"], list) else shown["metrics"]["loss"]
    assert loss["last"] is None and loss["min"] is None and loss["max"] is None
    strict(studio("runs", "list", "all", "--json", check=True).stdout)


def test_script_codes_and_studio_codes_are_told_apart(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    write(ws / "two.py", "import sys\nsys.exit(2)\n")
    write(ws / "killed.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert studio("run", "two.py", cwd=ws).returncode == 2  # the script's own code, passed through
    assert studio("run", "killed.py", cwd=ws).returncode == 128 + 9
    refused = studio("run", "--ram", "lots", "two.py", cwd=ws)
    assert refused.returncode == 194 and refused.stderr.startswith("studio: error:")
    assert studio("runs", "show", "nope").returncode == 195
    assert studio("runs", "list", "--no-such-flag").returncode == 194
