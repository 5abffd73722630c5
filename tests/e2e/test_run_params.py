"""`studio run train.py --lr 0.1 --epochs 3` records the script's command line as params."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.e2e.helpers import studio, studio_json

TRAIN = """\
import argparse, studio
p = argparse.ArgumentParser()
p.add_argument("--learning-rate", "-l", type=float, default=0.01)
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--amp", action="store_true")
p.add_argument("overrides", nargs="*")
a = p.parse_args()
print("params seen by the script:", studio.params())
"""


def test_options_overrides_and_config_files_become_params(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(TRAIN)
    (ws / "conf.yaml").write_text(textwrap.dedent("""\
        model:
          depth: 4
        seed: 1
    """))
    studio("run", "-e", "p1", "train.py", "-l", "0.1", "--epochs", "3", "--amp", "conf.yaml", "model.depth=8",
           cwd=ws, check=True)
    params = studio_json("runs", "show", "p1")["params"]
    assert params == {"learning_rate": 0.1, "epochs": 3, "amp": True, "model.depth": 8, "seed": 1}
    rows = studio_json("runs", "list", "all", "--filter", "learning_rate > 0.05 and epochs = 3")
    assert [r["key"] for r in rows] == ["p1"]
    assert rows[0]["name"] == "train.py amp=True epochs=3 learning_rate=0.1 model.depth=8 seed=1"


def test_sweep_params_win_over_the_command_line(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(TRAIN + "learning_rate = 0.5\n")
    studio("run", "--project", "sw", "-hp", "learning_rate=0.2", "train.py", "--learning-rate", "9", "--epochs", "2",
           cwd=ws, check=True)
    (row,) = studio_json("runs", "list", "project", "sw")
    assert row["params"]["learning_rate"] == 0.2


def test_secret_looking_params_are_masked(studio_home: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "t.py").write_text("print('ok')\n")
    (ws / "conn.json").write_text('{"host": "db", "password": "hunter2-secret", "port": 5432}')
    studio("run", "-e", "s1", "t.py", "--api-key", "sk-live-123456", "--lr", "0.1", "conn.json", cwd=ws, check=True)
    params = studio_json("runs", "show", "s1")["params"]
    assert params["api_key"] == "***" and params["password"] == "***"
    assert params["lr"] == 0.1 and params["host"] == "db" and params["port"] == 5432
