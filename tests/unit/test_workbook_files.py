"""Workbook files: time-series CSV logs, JSON/git saving, CSV parsing and its caches, meld."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studio.workbook import saving, tables
from studio.workbook.meld import align
from studio.workbook.tables import FileRef, TableReader
from studio.workbook.timeseries import TimeSeriesLog, metrics_sink

REPO = Path(__file__).resolve().parents[2]
DATE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# -- time series ---------------------------------------------------------------------------
def test_rows_by_name_position_and_mapping(tmp_path: Path) -> None:
    log = TimeSeriesLog(tmp_path / "loss.csv", ["step", "loss", "note"])
    log(step=0, loss=0.5, note="a,b")  # a comma is quoted
    log(1, 0.25)  # missing trailing field: empty cell
    log({"loss": 0.125, "step": 2})  # the seed's log{...}
    log(step=np.int64(3), loss=np.float32(0.5), note=None)
    out = lines(tmp_path / "loss.csv")
    assert out[0] == "step,loss,note,Date"
    assert [o.rsplit(",", 1)[0] for o in out[1:]] == [
        '0,0.5,"a,b"',
        "1,0.25,",
        "2,0.125,",
        "3,0.5,",
    ]
    assert all(DATE.match(o.rsplit(",", 1)[1]) for o in out[1:])
    assert log.rows_written == 4


def test_undeclared_field_and_bad_declarations(tmp_path: Path) -> None:
    log = TimeSeriesLog(tmp_path / "x.csv", ["epoch", "loss"])
    with pytest.raises(ValueError, match=r"'acc' was not declared; declared fields: epoch, loss"):
        log(epoch=1, acc=0.3)
    with pytest.raises(ValueError, match="3 values for 2 declared fields"):
        log(1, 2, 3)
    with pytest.raises(TypeError, match="by name or by position"):
        log(1, loss=2)
    assert lines(tmp_path / "x.csv") == ["epoch,loss,Date"]  # nothing half-written
    with pytest.raises(ValueError, match="Date"):
        TimeSeriesLog(tmp_path / "y.csv", ["Date"])
    with pytest.raises(ValueError, match="twice"):
        TimeSeriesLog(tmp_path / "y.csv", ["a", "a"])
    with pytest.raises(TypeError, match="list of names"):
        TimeSeriesLog(tmp_path / "y.csv", "ab")
    with pytest.raises(ValueError, match="save_every"):
        TimeSeriesLog(tmp_path / "y.csv", ["a"], save_every=0)
    with pytest.raises(ValueError, match="already exists with the fields epoch,loss,Date"):
        TimeSeriesLog(tmp_path / "x.csv", ["epoch", "acc"])


def test_nan_and_infinities_written_faithfully(tmp_path: Path) -> None:
    log = TimeSeriesLog(tmp_path / "v.csv", ["step", "v"])
    for i, v in enumerate([float("nan"), float("inf"), -float("inf"), 1e-300, 0.1 + 0.2]):
        log(i, v)
    cells = [o.split(",")[1] for o in lines(tmp_path / "v.csv")[1:]]
    assert cells == ["nan", "inf", "-inf", "1e-300", "0.30000000000000004"]
    df = tables.frame(tables.read_csv_table(tmp_path / "v.csv"))
    v = df["v"].tolist()
    assert math.isnan(v[0]) and v[1:] == [math.inf, -math.inf, 1e-300, 0.1 + 0.2]


def test_save_every_batches_and_flush(tmp_path: Path) -> None:
    flushed: list[int] = []
    log = TimeSeriesLog(tmp_path / "b.csv", ["i"], save_every=3, on_flush=lambda: flushed.append(1))
    log(0)
    log(1)
    assert len(lines(tmp_path / "b.csv")) == 1 and log.pending == 2
    assert log.oldest_pending() is not None
    log(2)
    assert len(lines(tmp_path / "b.csv")) == 4 and log.pending == 0 and flushed == [1]
    log(3)
    assert log.flush() == 1 and log.flush() == 0
    log.close()
    log(4)  # reopens
    log.close()
    assert [o.split(",")[0] for o in lines(tmp_path / "b.csv")[1:]] == ["0", "1", "2", "3", "4"]


def test_threads_share_a_log(tmp_path: Path) -> None:
    log = TimeSeriesLog(tmp_path / "t.csv", ["thread", "i"], save_every=7)

    def work(n: int) -> None:
        for i in range(500):
            log(thread=n, i=i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    df = pd.read_csv(tmp_path / "t.csv")
    assert len(df) == 2000
    assert sorted(df.groupby("thread")["i"].apply(list).map(sorted).map(tuple).unique()) == [
        tuple(range(500))
    ]


WRITER = """
import sys
from pathlib import Path
from studio.workbook.timeseries import TimeSeriesLog
log = TimeSeriesLog(Path(sys.argv[1]), ["writer", "i", "payload"], save_every=int(sys.argv[3]))
for i in range(3000):
    log(sys.argv[2], i, "x" * (i % 50))
log.close()
"""


def test_two_processes_write_one_series(tmp_path: Path) -> None:
    path = tmp_path / "shared.csv"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, every], env=env)
        for name, every in (("a", "1"), ("b", "13"))
    ]
    assert [p.wait(60) for p in procs] == [0, 0]
    out = lines(path)
    assert out[0] == "writer,i,payload,Date"  # one header, written once
    rows = [o.split(",") for o in out[1:]]
    assert len(rows) == 6000 and all(len(r) == 4 for r in rows)  # nothing interleaved mid-row
    for name in "ab":
        mine = [int(r[1]) for r in rows if r[0] == name]
        assert mine == list(range(3000))
        assert all(r[2] == "x" * (int(r[1]) % 50) for r in rows if r[0] == name)


def test_metrics_sink_steps() -> None:
    calls: list[tuple[object, dict[str, object]]] = []
    sink = metrics_sink(
        ("step", "loss", "note"), lambda step, **v: calls.append((step, v)), "train/"
    )
    sink([3, 0.5, "text"])
    sink([np.int64(4), np.float32(0.25), None])
    sink([True, 1.0, None])  # a bool is not a step
    float_index = metrics_sink(("epoch", "loss"), lambda step, **v: calls.append((step, v)))
    float_index([0.5, 2.0])
    float_index([1.5, "n/a"])
    assert calls == [
        (3, {"train/loss": 0.5}),
        (4, {"train/loss": np.float32(0.25)}),
        (None, {"train/step": True, "train/loss": 1.0}),
        (None, {"epoch": 0.5, "loss": 2.0}),
        (None, {"epoch": 1.5}),
    ]


# -- saving --------------------------------------------------------------------------------
def test_json_errors_name_the_key_path() -> None:
    with pytest.raises(TypeError, match=r"value\['opt'\]\['layers'\]\[1\] is a builtins.object"):
        saving.encode_json("options", {"opt": {"lr": 0.1, "layers": [1, object()]}})
    with pytest.raises(TypeError, match=r"the key \(1, 2\)"):
        saving.encode_json("options", {"a": {(1, 2): 3}})
    with pytest.raises(TypeError, match=r"value\[0\] is a builtins.set"):
        saving.encode_json("x", [{1, 2}])
    data = json.loads(
        saving.encode_json("x", {"n": np.int64(3), "a": np.arange(3), "f": float("nan")})
    )
    assert data["n"] == 3 and data["a"] == [0, 1, 2] and math.isnan(data["f"])


@pytest.mark.parametrize("bad", ["", " ", "a/b", "../x", ".hidden", "a\\b"])
def test_artifact_names_are_plain_file_names(bad: str) -> None:
    with pytest.raises(ValueError, match="artifact name"):
        saving.artifact_name(bad)
    assert saving.artifact_name("Training loss", ".csv") == "Training loss.csv"
    assert saving.artifact_name("x.json", ".json") == "x.json"


def test_git_status_includes_untracked_files(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / "train.py").write_text("print(1)\n")
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first commit"], cwd=repo, check=True)
    (repo / "train.py").write_text("print(2)\n")
    (repo / "new_module.py").write_text("X = 1\n")
    files = saving.git_status_files(repo)
    assert files is not None
    assert (
        files["git-current-commit"].startswith("commit ")
        and "first commit" in files["git-current-commit"]
    )
    assert "+print(2)" in files["git-patch"] and "new_module.py" in files["git-patch"]
    assert saving.git_status_files(tmp_path / "nowhere") is None


# -- parsing and caches --------------------------------------------------------------------
def test_types_settled_from_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    rows = [f"{i},,{i}\n" for i in range(60_000)]  # `val` empty for the first block
    rows += ["60000,0.5,60000.5\n"]  # and `x` turns from ints into floats
    path.write_text("step,val,x\n" + "".join(rows))
    df = tables.frame(tables.read_csv_table(path))
    assert (
        df["val"].dtype == np.float64 and df["val"].iloc[-1] == 0.5 and np.isnan(df["val"].iloc[0])
    )
    assert df["x"].dtype == np.float64 and df["x"].iloc[-1] == 60000.5


def test_partial_last_line_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("step,loss,Date\n0,0.5,2026-11-22 10:00:00.000\n1,0.25,2026-11-2")
    df = tables.frame(tables.read_csv_table(path))
    assert list(df.index) == [0] and df["Date"].dtype.kind == "M"


def test_live_file_reparsed_incrementally(tmp_path: Path) -> None:
    path = tmp_path / "live.csv"
    log = TimeSeriesLog(path, ["step", "loss"])
    reader = TableReader(None)
    ref = FileRef("live.csv", path)
    assert reader.read(ref).num_rows == 0
    for i in range(5):
        log(i, i / 10)
    assert reader.read(ref).num_rows == 5
    with open(path, "ab") as f:
        f.write(b"5,0.5,2026-11-22 10:0")  # a row being written
    assert reader.read(ref).num_rows == 5
    with open(path, "ab") as f:
        f.write(b"0:00.000\n6,x,2026-11-22 10:00:01.000\n")  # `loss` turns into text
    table = reader.read(ref)
    assert table.num_rows == 7 and table.column("loss").to_pylist()[-1] == "x"
    entry = next(iter(reader._live.values()))
    assert entry.offset == path.stat().st_size


def test_stored_tables_are_cached_by_hash(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_text("step,loss\n0,1.5\n1,2.5\n")
    reader = TableReader(tmp_path / "cache")
    ref = FileRef("loss.csv", path, blob="ab" * 32)
    assert reader.read(ref, ["step", "loss"]).column("loss").to_pylist() == [1.5, 2.5]
    cached = list((tmp_path / "cache" / "tables" / "ab").glob("*.arrow"))
    assert len(cached) == 1
    path.write_text("step,loss\n0,9\n")  # a blob never changes: the cache is what is read
    assert reader.read(ref, ["step", "loss"]).column("loss").to_pylist() == [1.5, 2.5]
    cached[0].write_bytes(b"garbage")  # a damaged cache entry is parsed again
    assert reader.read(ref, ["step", "loss"]).column("loss").to_pylist() == [9]


# -- meld ----------------------------------------------------------------------------------
def _col(values: list[object]) -> object:
    import pyarrow as pa

    return pa.chunked_array([pa.array(values)])


def test_align_same_and_different_indexes() -> None:
    same = align(
        [
            ("a", _col([0, 1, 2]), _col([1.0, 2.0, 3.0])),
            ("b", _col([0, 1, 2]), _col([4.0, 5.0, 6.0])),
        ],
        "step",
    )
    assert same.index.name == "step" and same.to_dict("list") == {
        "a": [1.0, 2.0, 3.0],
        "b": [4.0, 5.0, 6.0],
    }
    cols = [
        ("a", _col([0, 1, 2]), _col([1.0, 2.0, 3.0])),
        ("b", _col([1, 2, 3, 2]), _col([5.0, 6.0, 7.0, 8.0])),
    ]
    outer = align(cols, "step")
    assert list(outer.index) == [0, 1, 2, 3]
    assert outer["b"].tolist()[1:] == [5.0, 8.0, 7.0]  # the repeated step keeps its last value
    assert np.isnan(outer["b"].iloc[0]) and np.isnan(outer["a"].iloc[3])
    assert list(align(cols, "step", how="inner").index) == [1, 2]
    twice = align([("x", _col([0]), _col([1.0])), ("x", _col([0]), _col([2.0]))], "step")
    assert list(twice.columns) == ["x", "x"]
    assert align([], "step").empty


def test_import_is_cheap() -> None:
    code = "import sys, studio.workbook; assert 'pandas' not in sys.modules and 'sqlalchemy' not in sys.modules"
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
