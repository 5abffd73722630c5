"""`studio.cli.entry`: `studio run`'s command line read before click is imported."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from studio.cli import entry
from studio.cli.run import run


def test_the_option_table_is_the_run_commands() -> None:
    values, flags = set(), set()
    for param in run.params:
        names = set(param.opts) | set(param.secondary_opts)
        if not names or not all(name.startswith("-") for name in names):
            continue  # the arguments
        (flags if getattr(param, "is_flag", False) else values).update(names)
    assert (values | flags) == (entry.RUN_VALUE_OPTIONS | entry.RUN_FLAGS | entry.RUN_ELSEWHERE) - {"--help", "-h"}
    assert entry.RUN_FLAGS <= flags and entry.RUN_VALUE_OPTIONS <= values


@pytest.mark.parametrize("argv, module, script, args", [
    (["train.py", "--epochs", "30"], False, "train.py", ["--epochs", "30"]),
    (["--capture=~/.weights:weights", "-e", "x", "train.py"], False, "train.py", []),
    (["--capture-once", "data:in", "--quiet", "train.py", "-e", "y"], False, "train.py", ["-e", "y"]),
    (["-m", "pkg.mod", "a"], True, "pkg.mod", ["a"]),
    (["pkg::mod"], False, "pkg::mod", []),
    (["--", "-odd.py"], False, "-odd.py", []),
])
def test_reads_what_click_reads(argv: list[str], module: bool, script: str, args: list[str],
                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert entry.read_run_args(argv) == entry.expected_command(script, args, module)
    seen: dict[str, Any] = {}

    def fake_run(script: str, args: tuple[str, ...], **flags: Any) -> None:
        seen["expected"] = entry.expected_command(script, args, flags["module"])

    monkeypatch.setattr(run, "callback", fake_run)
    run.main(args=argv, standalone_mode=False)
    assert seen["expected"] == entry.read_run_args(argv)


@pytest.mark.parametrize("argv", [
    ["-q", "gpu", "train.py"], ["--hp=lr=0.1:1:0.2", "train.py"], ["--num-workers", "2", "t.py"],
    ["--cloud=ec2", "t.py"], ["--help"], ["-eNAME", "t.py"], ["--unknown", "t.py"], ["--quiet"], [],
])
def test_leaves_what_it_cannot_read_for_certain(argv: list[str]) -> None:
    assert entry.read_run_args(argv) is None


def test_a_script_path_is_resolved_like_resolve_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.api.run import RunOptions, resolve_target

    real = tmp_path / "real"
    real.mkdir()
    (real / "t.py").write_text("")
    os.symlink(real, tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    target = resolve_target(RunOptions(script="link/../link/t.py", cwd=Path.cwd()))
    assert entry.expected_command("link/../link/t.py", [], False) == [sys.executable, str(target.workspace / target.script)]


def test_plain_run_flags_are_clicks_defaults() -> None:
    from studio.cli.running import DEFAULT_FLAGS

    ctx = run.make_context("run", ["script.py", "a"])
    flags = {k: v for k, v in ctx.params.items() if k not in ("script", "args", "config", "verbose", "quiet")}
    assert flags == DEFAULT_FLAGS
    assert (ctx.params["config"], ctx.params["verbose"], ctx.params["quiet"]) == (None, None, False)


def test_plain_run_imports_no_click(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "t.py").write_text("print('ok')\n")
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('click' in sys.modules, file=sys.stderr))\n"
            "from studio.cli.entry import main\nmain(['run', 't.py'])\n")
    env = {**os.environ, "STUDIOML_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "False"
