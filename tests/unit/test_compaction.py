"""Merging a writer's metric segments: names, hiding, the merge schedule, and summaries that
count every point once across merges."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from studio.tracking import segments, series
from studio.tracking.compaction import Compactor, merge
from studio.tracking.metrics import Logger

T = "1795349094216970400"


def test_segment_ids_spans_and_hiding() -> None:
    raw = f"seg-{T}-42-000007-abcd.arrow"
    merged = segments.merged_name(f"seg-{T}-42-000015-abcd.arrow", 0, 15)
    assert merged == f"seg-{T}-42-000015-abcd-c000000.arrow"
    assert segments.segment_id(raw) == segments.SegmentId(("42", "abcd"), 7, 7, False)
    assert segments.segment_id(merged) == segments.SegmentId(("42", "abcd"), 0, 15, True)
    assert segments.segment_id("seg-tb-0a1b2c-0-100.arrow") is None  # TensorBoard imports
    other = f"seg-{T}-43-000007-ffff.arrow"  # another writer's counter 7
    outside = f"seg-{T}-42-000016-abcd.csv"
    higher = segments.merged_name(f"seg-{T}-42-000255-abcd.arrow", 0, 255)
    names = [raw, merged, other, outside, "seg-tb-0a1b2c-0-100.arrow"]
    assert segments.hidden_by_merges(names) == {raw}
    assert segments.hidden_by_merges([*names, higher]) == {raw, merged, outside}


def _logger(tmp_path: Path) -> Logger:
    # Flushed by hand; merges run when the test says so.
    return Logger(tmp_path / "metrics", flush_interval=3600, fsync=False)


def _flushes(logger: Logger, n: int, start: int = 0) -> None:
    for k in range(start, start + n):
        logger.log(step=k, loss=1.0 / (k + 1), acc=k / 1000)
        logger.flush()


def test_logger_merges_its_segments_and_readers_see_each_point_once(tmp_path: Path) -> None:
    logger = _logger(tmp_path)
    root = tmp_path / "metrics"
    _flushes(logger, 260)
    logger._compactor.run()
    # 260 flushes: 256 merged twice over into one segment, 4 not merged yet.
    visible = segments.list_segments(root)
    assert len(visible) == 5 and segments.segment_id(visible[0]).first == 0  # type: ignore[union-attr]
    assert logger._compactor.merges == 17
    df = series.read_series(root)
    loss = df[df["key"] == "loss"]
    assert loss["step"].tolist() == list(range(260))
    assert loss["value"].tolist() == [1.0 / (k + 1) for k in range(260)]
    # The merges' inputs stay (hidden) until keep_seconds have passed or the logger closes.
    assert len([p for p in root.iterdir() if segments.is_segment_name(p.name)]) > 200
    logger.close()
    on_disk = sorted(p.name for p in root.iterdir() if segments.is_segment_name(p.name))
    assert on_disk == visible
    assert series.read_series(root)["step"].tolist() == df["step"].tolist()


def test_summaries_count_merged_points_once(tmp_path: Path) -> None:
    logger = _logger(tmp_path)
    root = tmp_path / "metrics"
    _flushes(logger, 10)
    first = {m.key: m for m in series.summarize(root)}
    assert first["loss"].count == 10
    _flushes(logger, 30, start=10)
    logger._compactor.run()  # merges 0-15 (10 of them folded already) and 16-31
    assert len(segments.list_segments(root)) == 2 + 8
    summary = {m.key: m for m in series.summarize(root)}
    fresh = {m.key: m for m in series.summarize(root, state_path=tmp_path / "fresh.json")}
    for key in ("loss", "acc"):
        assert summary[key].count == fresh[key].count == 40
        assert summary[key].last_step == 39 and summary[key].min == fresh[key].min
    assert math.isclose(summary["loss"].max, 1.0) and summary["acc"].last == 39 / 1000
    _flushes(logger, 230, start=40)  # enough for a second-level merge of folded merges
    logger._compactor.run()
    logger.close()
    summary = {m.key: m for m in series.summarize(root)}
    assert summary["loss"].count == 270 and summary["loss"].last_step == 269


def test_a_merge_never_spans_a_segment_still_being_written(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    namer = segments.SegmentNamer()
    names = [namer.next_name(segments.ARROW_SUFFIX) for _ in range(20)]

    def write(k: int) -> None:
        cols = [("x", np.array([k]), np.array([float(k)]), np.array([0.0]))]
        segments.write_segment_to(root / names[k], cols, fsync=False)

    compactor = Compactor(root, fsync=False, fanin=4)
    for k in (1, 2, 3, 4, 5):  # 0 is still being written
        write(k)
        compactor.written(names[k])
    compactor.run()
    assert compactor.merges == 0 and len(segments.list_segments(root)) == 5
    compactor.skipped(0)  # its write failed: it will never exist
    compactor.run()
    assert compactor.merges == 1
    merged = [n for n in segments.list_segments(root) if segments.segment_id(n).merged]  # type: ignore[union-attr]
    assert [segments.segment_id(n).first for n in merged] == [1]  # type: ignore[union-attr]
    assert series.read_table(root).column("step").to_pylist() == [1, 2, 3, 4, 5]


def test_big_runs_are_left_as_they_are(tmp_path: Path) -> None:
    logger = _logger(tmp_path)
    _flushes(logger, 3)
    compactor = Compactor(tmp_path / "metrics", fsync=False, fanin=2, max_bytes=10)
    for name in segments.list_segments(tmp_path / "metrics"):
        compactor.written(name)
    compactor.run()
    assert compactor.merges == 0 and len(segments.list_segments(tmp_path / "metrics")) == 3
    logger.close()


def test_merge_refuses_segments_of_two_writers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one writer"):
        merge(tmp_path, [f"seg-{T}-1-000000-aa.arrow", f"seg-{T}-2-000001-bb.arrow"])
