"""TensorBoard event files: TFRecord framing, both Event decoders, idempotent import."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from studio.tracking import _tbproto, series
from studio.tracking.tensorboard import import_tensorboard, read_tensorboard_scalars

event_pb2 = pytest.importorskip("tensorboard.compat.proto.event_pb2")
summary_pb2 = pytest.importorskip("tensorboard.compat.proto.summary_pb2")
tensor_pb2 = pytest.importorskip("tensorboard.compat.proto.tensor_pb2")

DECODERS = [True, False]  # compiled protos, hand-written decoder


def record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", _tbproto.masked_crc32c(header))
        + data
        + struct.pack("<I", _tbproto.masked_crc32c(data))
    )


def scalar_event(tag: str, step: int, value: float, wall_time: float = 1000.0) -> bytes:
    ev = event_pb2.Event(wall_time=wall_time, step=step)
    ev.summary.value.add(tag=tag, simple_value=value)
    return ev.SerializeToString()


def tensor_event(step: int, tag: str, plugin: str | None = "scalars", **tensor: object) -> bytes:
    ev = event_pb2.Event(wall_time=2000.0 + step, step=step)
    value = ev.summary.value.add(tag=tag)
    value.tensor.CopyFrom(tensor_pb2.TensorProto(**tensor))  # type: ignore[arg-type]
    if plugin is not None:
        value.metadata.plugin_data.plugin_name = plugin
    return ev.SerializeToString()


def events_file(directory: Path, *events: bytes, name: str = "events.out.tfevents.1.host") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    version = event_pb2.Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString()
    path.write_bytes(b"".join(record(e) for e in (version, *events)))
    return path


def test_crc32c_known_vector() -> None:
    assert _tbproto.crc32c(b"123456789") == 0xE3069283
    assert _tbproto.crc32c(b"") == 0


@pytest.mark.parametrize("use_protobuf", DECODERS)
def test_tensorboard_event_file_writer(tmp_path: Path, use_protobuf: bool) -> None:
    """Files written by tensorboard's own writer (what torch's SummaryWriter uses)."""
    writer_mod = pytest.importorskip("tensorboard.summary.writer.event_file_writer")
    writer = writer_mod.EventFileWriter(str(tmp_path / "tb"))
    for i in range(5):
        loss = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="loss", simple_value=1.0 / (i + 1))]
        )
        writer.add_event(event_pb2.Event(wall_time=10.0 + i, step=i, summary=loss))
        writer.add_event(
            event_pb2.Event.FromString(tensor_event(i, "acc", dtype=2, double_val=[i / 8]))
        )
    image = summary_pb2.Summary.Image(height=1, width=1, colorspace=1, encoded_image_string=b"png")
    writer.add_event(
        event_pb2.Event(
            step=0,
            summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="img", image=image)]),
        )
    )
    writer.close()
    got = sorted(read_tensorboard_scalars(tmp_path / "tb", use_protobuf=use_protobuf))
    assert [(t, s, v) for t, s, _, v in got if t == "acc"] == [("acc", i, i / 8) for i in range(5)]
    loss = [(s, w, v) for t, s, w, v in got if t == "loss"]
    assert loss == [(i, 10.0 + i, pytest.approx(1.0 / (i + 1), rel=1e-6)) for i in range(5)]
    assert {t for t, *_ in got} == {"acc", "loss"}


@pytest.mark.parametrize("use_protobuf", DECODERS)
def test_tensor_encodings_and_plugins(tmp_path: Path, use_protobuf: bool) -> None:
    events_file(
        tmp_path,
        tensor_event(0, "f_content", dtype=1, tensor_content=struct.pack("<f", 0.5)),
        tensor_event(1, "f_val", dtype=1, float_val=[0.25]),
        tensor_event(2, "d_val", dtype=2, double_val=[0.1]),
        tensor_event(3, "d_content", dtype=2, tensor_content=struct.pack("<d", -2.5)),
        tensor_event(4, "i64", dtype=9, int64_val=[-7]),
        tensor_event(5, "i32", dtype=3, int_val=[12]),
        tensor_event(6, "half", dtype=19, half_val=[0x3C00]),  # 1.0 in float16
        tensor_event(7, "nan", plugin=None, dtype=2, double_val=[math.nan]),
        tensor_event(
            8, "vector", dtype=1, float_val=[1.0, 2.0], tensor_shape={"dim": [{"size": 2}]}
        ),
        tensor_event(9, "hist", plugin="histograms", dtype=2, double_val=[3.0]),
        tensor_event(10, "hist", plugin=None, dtype=2, double_val=[4.0]),  # metadata only once
        scalar_event("simple", 11, 1.5),
    )
    got = {t: (s, v) for t, s, _, v in read_tensorboard_scalars(tmp_path, use_protobuf)}
    assert got.pop("nan")[1] != got.get("nan", (0, 0.0))[1]  # NaN kept (NaN != anything)
    assert got == {
        "f_content": (0, 0.5),
        "f_val": (1, 0.25),
        "d_val": (2, 0.1),
        "d_content": (3, -2.5),
        "i64": (4, -7.0),
        "i32": (5, 12.0),
        "half": (6, 1.0),
        "simple": (11, 1.5),
    }


def test_both_decoders_agree(tmp_path: Path) -> None:
    events_file(
        tmp_path / "run",
        *[scalar_event("x", i, i * 0.1, 100.0 + i) for i in range(50)],
        *[tensor_event(i, "y", dtype=2, double_val=[i / 3]) for i in range(50)],
    )
    fast = list(read_tensorboard_scalars(tmp_path, use_protobuf=True))
    pure = list(read_tensorboard_scalars(tmp_path, use_protobuf=False))
    assert fast == pure and len(fast) == 100
    assert fast[0][0] == "run/x"  # files in a subfolder are prefixed like TensorBoard runs


def test_import_is_incremental_idempotent_and_survives_torn_tail(tmp_path: Path) -> None:
    tb, out = tmp_path / "tb", tmp_path / "metrics"
    path = events_file(tb, *[scalar_event("loss", i, float(i)) for i in range(3)])
    fourth = record(scalar_event("loss", 3, 3.0))
    with open(path, "ab") as fh:
        fh.write(fourth[:10])  # a writer mid-record
    assert import_tensorboard(tb, out) == 3
    assert import_tensorboard(tb, out) == 0
    with open(path, "ab") as fh:
        fh.write(fourth[10:] + record(scalar_event("loss", 4, 4.0)))
    assert import_tensorboard(tb, out) == 2
    (out / ".tensorboard-state.json").unlink()  # lost state: ranges in segment names suffice
    assert import_tensorboard(tb, out) == 0
    df = series.read_series(out)
    assert df["step"].tolist() == [0, 1, 2, 3, 4]
    assert df["value"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert df["time"].tolist() == [1000.0] * 5
    [summary] = series.summarize(out)
    assert (summary.key, summary.last, summary.count) == ("loss", 4.0, 5)


def test_corrupt_record_is_skipped(tmp_path: Path) -> None:
    good = [record(scalar_event("x", i, float(i))) for i in range(3)]
    bad = bytearray(good[1])
    bad[-6] ^= 0xFF  # flip a data byte: its checksum no longer matches
    (tmp_path / "events.out.tfevents.2.h").write_bytes(good[0] + bytes(bad) + good[2])
    assert [s for _, s, _, _ in read_tensorboard_scalars(tmp_path)] == [0, 2]


def test_empty_and_missing_directories(tmp_path: Path) -> None:
    assert list(read_tensorboard_scalars(tmp_path / "missing")) == []
    (tmp_path / "tb").mkdir()
    assert import_tensorboard(tmp_path / "tb", tmp_path / "m") == 0
    assert series.read_series(tmp_path / "m").empty
