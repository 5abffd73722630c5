"""`name: value` lines in a script's output."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from studio.tracking.outputmetrics import parse_metric_lines


def test_pairs_are_found() -> None:
    text = "fitness: 1.5\nval_loss=0.3\nloss: 0.3, acc: 0.9 | lr=1e-3\n  train/top-1 : 75\n"
    assert list(parse_metric_lines(text)) == [
        ("fitness", 1.5),
        ("val_loss", 0.3),
        ("loss", 0.3),
        ("acc", 0.9),
        ("lr", 0.001),
        ("train/top-1", 75.0),
    ]


def test_junk_is_ignored() -> None:
    junk = [
        "Epoch 1/10",
        "step 3 loss 0.2",
        "12:30:45 started",
        "time: 0.3s",
        "url: http://example.com",
        "name: resnet",
        "1875/1875 [====] - 3s - loss: 0.3",
        "fitness: 1.5 extra",
        "x" * 20000 + "=1",
        "",
        "=3",
        "a: 1b: 2",
    ]
    assert list(parse_metric_lines("\n".join(junk))) == []


def test_special_values_ansi_and_progress_redraws() -> None:
    text = "\x1b[32mloss=0.5\x1b[0m\rprogress 10%\rdone: nan\r\nup: inf\ndown=-Infinity\n"
    got = list(parse_metric_lines(text))
    assert got[0] == ("loss", 0.5)
    assert got[1][0] == "done" and math.isnan(got[1][1])
    assert got[2:] == [("up", math.inf), ("down", -math.inf)]


def test_the_supervisor_loads_the_parser_at_the_first_line_that_can_hold_a_metric(tmp_path: Path) -> None:
    # In a fresh interpreter: output without a `name: value` line does not import the parser.
    code = (
        "import sys; from studio.runner.collectors import OutputMetrics\n"
        f"m = OutputMetrics(__import__('pathlib').Path({str(tmp_path / 'quiet')!r}))\n"
        "m.feed('hello\\nworld, no metric here\\n'); m.close()\n"
        "print(sorted(k for k in ('studio.tracking.outputmetrics',) if k in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

    from studio.runner.collectors import OutputMetrics
    from studio.tracking.series import read_series

    m = OutputMetrics(tmp_path / "m")
    m.feed("epoch 1\nloss: 0.5, acc=0.25\nstep: 3\nlo")
    m.feed("ss: 0.25\n")
    m.close()
    df = read_series(tmp_path / "m")
    assert sorted(zip(df["key"].astype(str), df["value"], strict=True)) == [("acc", 0.25), ("loss", 0.25), ("loss", 0.5)]
