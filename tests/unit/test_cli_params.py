"""Params read off a script's command line: declared argparse/click options, `--key value`
pairs, Hydra overrides and config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.capture.cli_params import declared_options, params_from_args, typed

ARGPARSE = """\
import argparse
p = argparse.ArgumentParser()
p.add_argument("-l", "--learning-rate", type=float, default=0.01)
p.add_argument("--epochs", type=int)
p.add_argument("--run-id", type=str)
p.add_argument("--amp", action="store_true")
p.add_argument("--no-shuffle", dest="shuffle", action="store_false")
p.add_argument("data")
args = p.parse_args()
"""
CLICK = """\
import click
@click.command()
@click.option("--lr", type=float)
@click.option("--verbose", "-v", is_flag=True)
@click.option("--shout/--no-shout", default=False)
@click.option("-n", "steps", type=int)
def main(lr, verbose, shout, steps): ...
"""


def script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.py"
    path.write_text(text)
    return path


def test_plain_pairs_without_a_declaration(tmp_path: Path) -> None:
    args = ["--lr", "0.1", "--epochs=3", "--name", "resnet", "--debug", "--warmup-steps", "1e-3", "--neg", "-5"]
    assert params_from_args(args, cwd=tmp_path) == {
        "lr": 0.1, "epochs": 3, "name": "resnet", "debug": True, "warmup_steps": 0.001, "neg": -5,
    }
    assert params_from_args([], cwd=tmp_path) == {}
    assert params_from_args(["data.csv", "out"], cwd=tmp_path) == {}  # positionals are not params


def test_argparse_declarations_name_and_type_options(tmp_path: Path) -> None:
    path = script(tmp_path, ARGPARSE)
    args = ["-l", "0.3", "--amp", "data.csv", "--no-shuffle", "--run-id", "007", "--epochs", "5"]
    assert params_from_args(args, script=path, cwd=tmp_path) == {
        "learning_rate": 0.3, "amp": True, "shuffle": False, "run_id": "007", "epochs": 5,
    }
    # `--amp` takes no value: the positional after it is not its value.
    assert params_from_args(["--amp", "data.csv"], script=path, cwd=tmp_path) == {"amp": True}


def test_click_declarations(tmp_path: Path) -> None:
    path = script(tmp_path, CLICK)
    decl = declared_options(path)
    assert decl["-v"].flag and decl["--no-shout"].value_when_flag is False and decl["-n"].dest == "steps"
    args = ["--lr", "0.2", "-v", "--no-shout", "-n", "100"]
    assert params_from_args(args, script=path, cwd=tmp_path) == {"lr": 0.2, "verbose": True, "shout": False, "steps": 100}


def test_hydra_overrides_and_config_files(tmp_path: Path) -> None:
    (tmp_path / "conf.yaml").write_text("model:\n  depth: 4\n  act: relu\noptim:\n  lr: 0.01\nseed: 1\n")
    (tmp_path / "extra.json").write_text(json.dumps({"optim": {"lr": 0.5, "betas": [0.9, 0.99]}}))
    args = ["conf.yaml", "model.depth=8", "+trainer.devices=2", "++seed=7", "~model.act", "tags=[a,b]",
            "--config", "extra.json"]
    assert params_from_args(args, cwd=tmp_path) == {
        "model.depth": 8, "model.act": "relu", "optim.lr": 0.5, "optim.betas": [0.9, 0.99], "seed": 7,
        "trainer.devices": 2, "tags": ["a", "b"], "config": "extra.json",
    }
    # A missing or broken file is skipped, never fatal.
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    assert params_from_args(["bad.yaml", "missing.yaml", "x=1"], cwd=tmp_path) == {"x": 1}


@pytest.mark.parametrize(("text", "value"), [
    ("3", 3), ("-0.5", -0.5), ("1e-4", 1e-4), ("true", True), ("False", False), ("null", None),
    ("adam", "adam"), ("[1, 2]", [1, 2]), ("{a: 1}", {"a": 1}), ("", ""), ("2024-01-01", "2024-01-01"),
])
def test_values_are_typed(text: str, value: object) -> None:
    assert typed(text) == value


def test_unreadable_script_is_not_an_error(tmp_path: Path) -> None:
    path = script(tmp_path, "def broken(:\n")
    assert params_from_args(["--lr", "1"], script=path, cwd=tmp_path) == {"lr": 1}
    assert params_from_args(["--lr", "1"], script=tmp_path / "nope.py", cwd=tmp_path) == {"lr": 1}
