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
