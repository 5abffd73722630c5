"""Reading series: long/wide/meld, summaries (incremental), spike-safe downsampling."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from studio.entities import MetricSummary
from studio.tracking import segments, series
from studio.tracking.metrics import Logger


def write(d: Path, columns: dict[str, tuple[list[int], list[float]]], fmt: str = "arrow") -> Path:
    """One segment straight from columns {key: (steps, values)}."""
    d.mkdir(parents=True, exist_ok=True)
    cols = [
        (
            k,
            np.array(s, dtype=np.int64),
            np.array(v, dtype=np.float64),
            np.full(len(s), time.time()),
        )
        for k, (s, v) in columns.items()
    ]
    if fmt == "csv":  # as versions that wrote CSV without pyarrow did: still read
        path = d / segments.SegmentNamer().next_name(segments.CSV_SUFFIX)
        lines = [",".join(segments.COLUMNS)]
        for key, steps, values, times in cols:
            lines += [f"{key},{s},{v!r},{t!r}" for s, v, t in zip(steps.tolist(), values.tolist(), times.tolist(), strict=True)]
        path.write_text("\n".join(lines) + "\n")
        return path
    path = d / segments.SegmentNamer().next_name(segments.ARROW_SUFFIX)
    segments.write_segment_to(path, cols, fsync=False)
    return path


def test_read_series_filters_and_ignores_strays(tmp_path: Path) -> None:
    write(tmp_path, {"loss": ([0, 1], [1.0, 0.5]), "acc": ([0], [0.1])})
    write(tmp_path, {"loss": ([2], [0.25])}, fmt="csv")  # a CSV segment among Arrow ones
    (tmp_path / ".seg-1-2-000000-abc.arrow.x.tmp").write_bytes(b"torn")
    (tmp_path / "notes.txt").write_text("not a segment")
    (tmp_path / series.SUMMARY_STATE).write_text("{}")
    df = series.read_series(tmp_path, ["loss"])
    assert list(df.columns) == ["key", "step", "value", "time"]
    assert df["step"].tolist() == [0, 1, 2] and df["value"].tolist() == [1.0, 0.5, 0.25]
    assert set(series.read_series(tmp_path)["key"]) == {"loss", "acc"}
    assert series.read_series(tmp_path, ["nope"]).empty
    empty = series.read_series(tmp_path / "missing")
    assert empty.empty and list(empty.columns) == ["key", "step", "value", "time"]


def test_wide_and_meld(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, {"loss": ([0, 1, 2], [3.0, 2.0, 1.0]), "acc": ([0, 2], [0.1, 0.3])})
    write(a, {"loss": ([2], [0.9])})  # a repeated step: the later point wins
    write(b, {"loss": ([1, 2, 3], [5.0, 4.0, 3.0])})
    w = series.wide(series.read_series(a))
    assert list(w.columns) == ["acc", "loss"] and w.index.name == "step"
    assert w["loss"].tolist() == [3.0, 2.0, 0.9]
    assert math.isnan(w.loc[1, "acc"])
    m = series.meld({"first": a, "second": b}, "loss")
    assert list(m.columns) == ["first", "second"]
    assert m.index.tolist() == [0, 1, 2, 3]
    assert m["first"].tolist()[:3] == [3.0, 2.0, 0.9] and math.isnan(m.loc[3, "first"])
    assert m["second"].tolist()[1:] == [5.0, 4.0, 3.0]
    by_path = series.meld([a, b], "loss")
    assert list(by_path.columns) == [str(a), str(b)]


def test_summarize_values_and_nan(tmp_path: Path) -> None:
    nan = float("nan")
    write(tmp_path, {"loss": ([0, 1, 2], [nan, 2.0, -1.0]), "acc": ([0, 1], [nan, nan])})
    write(tmp_path, {"loss": ([3], [nan]), "lr": ([5, 4], [0.1, 0.2])})
    got = {s.key: s for s in series.summarize(tmp_path)}
    loss = got["loss"]
    assert (loss.min, loss.max, loss.count, loss.last_step) == (-1.0, 2.0, 4, 3)
    assert math.isnan(loss.last)  # the last point is NaN: last says so
    assert math.isnan(got["acc"].min) and math.isnan(got["acc"].max) and got["acc"].count == 2
    assert got["lr"].last == 0.1 and got["lr"].last_step == 5  # last = greatest step
    assert all(isinstance(s, MetricSummary) for s in got.values())


def test_summarize_incremental_equals_full(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    d = tmp_path / "m"
    state = tmp_path / "state.json"
    for i in range(6):
        steps = list(range(i * 10, i * 10 + 10))
        write(d, {"x": (steps, rng.normal(size=10).tolist()), f"k{i % 2}": (steps, [i] * 10)})
        incremental = series.summarize(d, state_path=state)
    full = series.summarize(d, state_path=tmp_path / "fresh.json")

    def strip(items: list[MetricSummary]) -> list[tuple[object, ...]]:
        return [(s.key, s.last, s.min, s.max, s.count, s.last_step) for s in items]

    assert strip(incremental) == strip(full)
    df = series.read_series(d, ["x"])
    x = {s.key: s for s in full}["x"]
    assert (x.min, x.max, x.count, x.last) == (
        df["value"].min(),
        df["value"].max(),
        60,
        df["value"].iloc[-1],
    )
    # default state lives in the directory under a dot-name, outside the series
    series.summarize(d)
    assert (d / series.SUMMARY_STATE).exists()
    assert series.SUMMARY_STATE not in segments.list_segments(d)


def test_summarize_refolds_when_a_segment_vanishes(tmp_path: Path) -> None:
    first = write(tmp_path, {"x": ([0], [1.0])})
    write(tmp_path, {"x": ([1], [2.0])})
    assert series.summarize(tmp_path)[0].count == 2
    first.unlink()
    [x] = series.summarize(tmp_path)
    assert (x.count, x.min) == (1, 2.0)


def test_summarize_with_live_logger(tmp_path: Path) -> None:
    with Logger(tmp_path, flush_interval=3600) as lg:
        for i in range(100):
            lg.log(loss=100.0 - i)
        lg.flush()
        assert series.summarize(tmp_path)[0].last == 1.0
        lg.log(loss=500.0)
    [loss] = series.summarize(tmp_path)
    assert (loss.last, loss.max, loss.count, loss.last_step) == (500.0, 500.0, 101, 100)


def test_downsample_keeps_the_spike() -> None:
    n = 1_000_000
    values = np.sin(np.arange(n) / 1000.0)
    values[654_321] = 1e6
    values[123_456] = -1e6
    values[5] = np.nan
    df = pd.DataFrame(
        {"key": pd.Categorical(["loss"] * n), "step": np.arange(n), "value": values, "time": 0.0}
    )
    started = time.perf_counter()
    out = series.downsample(df, 500)
    assert time.perf_counter() - started < 10.0  # generous: the bench tracks the real figure
    assert len(out) <= 1000
    assert out["value"].max() == 1e6 and out["value"].min() == -1e6
    assert out.loc[out["value"] == 1e6, "step"].tolist() == [654_321]
    assert out["step"].is_monotonic_increasing
    assert list(out.columns) == list(df.columns)


def test_downsample_range_small_and_nan_buckets() -> None:
    n = 10_000
    df = pd.DataFrame(
        {
            "key": pd.Categorical(["a"] * n + ["b"] * 3),
            "step": np.r_[np.arange(n), [0, 1, 2]],
            "value": np.r_[np.full(n, np.nan), [1.0, 2.0, 3.0]],
            "time": 0.0,
        }
    )
    out = series.downsample(df, 10)
    assert out[out["key"] == "b"]["value"].tolist() == [1.0, 2.0, 3.0]  # few points: all kept
    a = out[out["key"] == "a"]
    assert 1 <= len(a) <= 20 and a["value"].isna().all()  # all-NaN buckets still show
    zoom = series.downsample(df, 5, x_range=(100, 199))
    za = zoom[zoom["key"] == "a"]
    assert za["step"].between(100, 199).all() and len(za) <= 10
    with pytest.raises(ValueError):
        series.downsample(df, 0)


def test_many_segments_read_in_one_go(tmp_path: Path) -> None:
    for i in range(1000):
        write(tmp_path, {"x": ([i], [float(i)]), "y": ([i], [0.0])})
    started = time.perf_counter()
    df = series.read_series(tmp_path, ["x"])
    elapsed = time.perf_counter() - started
    assert df["step"].tolist() == list(range(1000))
    assert elapsed < 10  # generous: shared CI machine; the bench tracks the real figure
    assert series.summarize(tmp_path)[0].count == 1000
