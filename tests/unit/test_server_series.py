"""Min/max bucketing of series for the dashboard's charts (studio.server.series)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("fastapi")

from studio.server.series import KeySeries, SeriesCache, bucketed, run_start, step_range  # noqa: E402
from studio.tracking.segments import SegmentNamer, write_segment_to  # noqa: E402


def series(values: list[float]) -> KeySeries:
    return KeySeries(np.arange(len(values), dtype=np.int64), np.asarray(values, dtype=np.float64))


@given(st.lists(st.floats(allow_nan=True, allow_infinity=False, width=32), min_size=1, max_size=3000),
       st.integers(1, 200))
@settings(max_examples=200, deadline=None)
def test_extremes_and_ends_survive(values: list[float], buckets: int) -> None:
    out = bucketed(series(values), buckets)
    assert len(out["x"]) <= max(2 * buckets + 2, len(values))
    assert out["x"] == sorted(out["x"]) and out["x"][0] == 0 and out["x"][-1] == len(values) - 1
    finite = [v for v in values if not math.isnan(v)]
    ys = [y for y in out["y"] if y is not None]
    if finite:
        assert max(ys) == max(finite) and min(ys) == min(finite)


def test_a_range_returns_points_inside_plus_one_each_side() -> None:
    s = series([float(i) for i in range(100)])
    out = bucketed(s, 100, 10, 20)
    assert out["x"] == list(range(9, 22)) and not out["sampled"]
    assert bucketed(s, 100, 500, 600)["x"] == [99]
    assert len(bucketed(s, 100, 30, 20)["x"]) <= 1  # a reversed range is nearly empty
    assert bucketed(s, 100, float("nan"), float("inf"))["count"] == 100


def test_cache_reads_new_segments_only(tmp_path: Path) -> None:
    namer = SegmentNamer()

    def write(start: int, n: int) -> None:
        steps = np.arange(start, start + n, dtype=np.int64)
        cols = [("loss", steps, steps * 1.0, np.zeros(n)), ("acc", steps, -steps * 1.0, np.zeros(n))]
        write_segment_to(tmp_path / namer.next_name(".arrow"), cols, fsync=False)

    write(0, 10)
    cache = SeriesCache()
    first = cache.load(tmp_path)
    assert first["loss"].steps.tolist() == list(range(10))
    write(10, 5)
    (tmp_path / ".seg-tmp.tmp").write_bytes(b"half")  # a writer's temp file is not a segment
    second = cache.load(tmp_path)
    assert second["acc"].values.tolist() == [-float(i) for i in range(15)]
    assert cache.load(tmp_path) is second


def test_a_time_range_is_the_steps_logged_within_it() -> None:
    times = np.array([100.0, 101.0, np.nan, 103.0, 104.0, 105.0])
    s = KeySeries(np.array([0, 10, 20, 30, 40, 50], dtype=np.int64), np.zeros(6), times)
    assert step_range(s, 100.5, 104.0) == (10.0, 40.0)
    assert step_range(s, None, 101.0) == (0.0, 10.0)
    assert step_range(s, 101.2, 102.9) == (10.0, 30.0)  # nothing inside: the points either side
    assert step_range(s, 200.0, 300.0) == (50.0, 50.0)
    assert step_range(series([1.0, 2.0]), 0.0, 1.0) == (None, None)  # no times: everything
    other = KeySeries(np.array([0], dtype=np.int64), np.zeros(1), np.array([99.5]))
    assert run_start({"a": s, "b": other, "c": series([1.0])}) == 99.5
    assert run_start({"c": series([1.0])}) is None


def test_overviews_are_kept_after_their_points_are_evicted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A view of more runs than the point cache holds is drawn again without reading segments."""
    import studio.server.series as mod

    namer = SegmentNamer()

    def write(start: int, n: int) -> None:
        steps = np.arange(start, start + n, dtype=np.int64)
        cols = [("loss", steps, np.sin(steps / 50.0), 1000.0 + steps)]
        write_segment_to(tmp_path / namer.next_name(".arrow"), cols, fsync=False)

    write(0, 5000)
    cache = SeriesCache(max_bytes=1)  # keeps one folder's points at most
    whole, start = cache.overview(tmp_path, ["loss", "nope"], 100, with_time=True)
    assert whole["loss"] == bucketed(cache.load(tmp_path)["loss"], 100, with_time=True) and start == 1000.0
    assert "nope" not in whole
    other = tmp_path / "other"
    other.mkdir()
    write_segment_to(other / "000001.arrow", [("loss", np.arange(3), np.zeros(3), np.zeros(3))], fsync=False)
    cache.load(other)  # evicts tmp_path's points
    monkeypatch.setattr(mod, "read_segment", lambda path: pytest.fail(f"read {path} again"))
    assert cache.overview(tmp_path, ["loss", "nope"], 100, with_time=True) == (whole, start)
    monkeypatch.undo()
    write(5000, 10)  # the run logs more: a new overview, the old one is dropped
    newer, _ = cache.overview(tmp_path, ["loss"], 100, with_time=True)
    assert newer["loss"]["x"][-1] == 5009 and newer["loss"]["total"] == 5010
    assert len(cache._views) == 1
