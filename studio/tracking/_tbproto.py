"""Just enough TFRecord and protobuf to read TensorBoard scalars with the standard library.

Decodes ``Event{wall_time=1, step=2, summary=5{value=1{tag=1, simple_value=2, tensor=8,
metadata=9{plugin_data=1{plugin_name=1}}}}}`` and the scalar parts of ``TensorProto{dtype=1,
tensor_shape=2{dim=2}, tensor_content=4, float_val=5, double_val=6, int_val=7, int64_val=10,
half_val=13}``. Unknown fields are skipped, as protobuf requires.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

_CASTAGNOLI = 0x82F63B78
_MASK_DELTA = 0xA282EAD8


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _CASTAGNOLI if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:  # a C implementation when one is installed
    import google_crc32c  # type: ignore[import-not-found]

    def _crc(data: bytes) -> int:
        return int(google_crc32c.value(data))
except ImportError:
    _crc = crc32c


def masked_crc32c(data: bytes) -> int:
    crc = _crc(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# -- protobuf wire format ---------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value): an int for varints, bytes for everything else."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf message")
        yield number, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _packed_varints(value: int | bytes) -> list[int]:
    if isinstance(value, int):
        return [value]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(v)
    return out


# -- tensors --------------------------------------------------------------------------------
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8 = 1, 2, 3, 4, 5, 6
DT_INT64, DT_BFLOAT16, DT_HALF = 9, 14, 19
_CONTENT_FORMAT = {
    DT_FLOAT: "<f",
    DT_DOUBLE: "<d",
    DT_INT32: "<i",
    DT_UINT8: "<B",
    DT_INT16: "<h",
    DT_INT8: "<b",
    DT_INT64: "<q",
    DT_HALF: "<e",
}


def scalar_from_tensor(
    dtype: int,
    rank: int,
    content: bytes,
    float_val: list[float],
    double_val: list[float],
    int_val: list[int],
    int64_val: list[int],
    half_val: list[int],
) -> float | None:
    """The value of a rank-0 numeric tensor, or None for anything else."""
    if rank != 0:
        return None
    if content:
        if dtype == DT_BFLOAT16:
            return float(struct.unpack("<f", b"\0\0" + content[:2])[0])
        fmt = _CONTENT_FORMAT.get(dtype)
        if fmt is None or len(content) < struct.calcsize(fmt):
            return None
        return float(struct.unpack_from(fmt, content)[0])
    if dtype == DT_FLOAT and float_val:
        return float(float_val[0])
    if dtype == DT_DOUBLE and double_val:
        return float(double_val[0])
    if dtype in (DT_INT32, DT_UINT8, DT_INT16, DT_INT8) and int_val:
        return float(int_val[0])
    if dtype == DT_INT64 and int64_val:
        return float(int64_val[0])
    if dtype == DT_HALF and half_val:
        return float(struct.unpack("<e", struct.pack("<H", half_val[0] & 0xFFFF))[0])
    if dtype == DT_BFLOAT16 and half_val:
        return float(struct.unpack("<f", struct.pack("<I", (half_val[0] & 0xFFFF) << 16))[0])
    return None


def _tensor_scalar(buf: bytes) -> float | None:
    dtype = rank = 0
    content = b""
    floats: list[float] = []
    doubles: list[float] = []
    ints: list[int] = []
    int64s: list[int] = []
    halves: list[int] = []
    for number, _wire, value in fields(buf):
        if number == 1 and isinstance(value, int):
            dtype = value
        elif number == 2 and isinstance(value, bytes):
            rank = sum(1 for n, _, _ in fields(value) if n == 2)
        elif number == 4 and isinstance(value, bytes):
            content = value
        elif number == 5 and isinstance(value, bytes):
            floats.extend(x for (x,) in struct.iter_unpack("<f", value[: len(value) // 4 * 4]))
        elif number == 6 and isinstance(value, bytes):
            doubles.extend(x for (x,) in struct.iter_unpack("<d", value[: len(value) // 8 * 8]))
        elif number == 7:
            ints.extend(_signed64(v) for v in _packed_varints(value))
        elif number == 10:
            int64s.extend(_signed64(v) for v in _packed_varints(value))
        elif number == 13:
            halves.extend(_packed_varints(value))
    return scalar_from_tensor(dtype, rank, content, floats, doubles, ints, int64s, halves)


def _plugin_name(metadata: bytes) -> str:
    for number, _, value in fields(metadata):
        if number == 1 and isinstance(value, bytes):
            for n, _, v in fields(value):
                if n == 1 and isinstance(v, bytes):
                    return v.decode("utf-8", "replace")
    return ""


def scalars_of_event(data: bytes, skip: set[str]) -> list[tuple[str, int, float, float]]:
    """(tag, step, wall_time, value) of the scalars in one serialized Event.

    A tag first seen with metadata naming a plugin other than "scalars" is added to `skip`
    (later events of that tag omit the metadata).
    """
    wall_time, step = 0.0, 0
    summaries = []
    for number, _, value in fields(data):
        if number == 1 and isinstance(value, bytes):
            wall_time = struct.unpack("<d", value)[0]
        elif number == 2 and isinstance(value, int):
            step = _signed64(value)
        elif number == 5 and isinstance(value, bytes):
            summaries.append(value)
    out = []
    for summary in summaries:
        for number, _, item in fields(summary):
            if number != 1 or not isinstance(item, bytes):
                continue
            tag, simple, tensor, metadata = "", None, None, None
            for n, _, v in fields(item):
                if n == 1 and isinstance(v, bytes):
                    tag = v.decode("utf-8", "replace")
                elif n == 2 and isinstance(v, bytes):
                    simple = struct.unpack("<f", v)[0]
                elif n == 8 and isinstance(v, bytes):
                    tensor = v
                elif n == 9 and isinstance(v, bytes):
                    metadata = v
            if metadata is not None and _plugin_name(metadata) not in ("", "scalars"):
                skip.add(tag)
            if tag in skip:
                continue
            if simple is not None:
                out.append((tag, step, wall_time, float(simple)))
            elif tensor is not None:
                scalar = _tensor_scalar(tensor)
                if scalar is not None:
                    out.append((tag, step, wall_time, scalar))
    return out
