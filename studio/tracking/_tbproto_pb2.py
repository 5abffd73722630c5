"""Scalars of an Event through the `tensorboard` package's compiled protos (faster, exact).

Importing this module fails with ImportError when tensorboard (or protobuf) is missing; the
caller then uses the hand-written decoder in `_tbproto`.
"""

from __future__ import annotations

from tensorboard.compat.proto import event_pb2

from studio.tracking._tbproto import scalar_from_tensor

_parse = event_pb2.Event.FromString


def scalars_of_event(data: bytes, skip: set[str]) -> list[tuple[str, int, float, float]]:
    """Same contract as `_tbproto.scalars_of_event`."""
    event = _parse(data)
    if not event.HasField("summary"):
        return []
    out = []
    for value in event.summary.value:
        tag = value.tag
        if value.HasField("metadata"):
            if value.metadata.plugin_data.plugin_name not in ("", "scalars"):
                skip.add(tag)
        if tag in skip:
            continue
        kind = value.WhichOneof("value")
        if kind == "simple_value":
            out.append((tag, event.step, event.wall_time, float(value.simple_value)))
        elif kind == "tensor":
            t = value.tensor
            scalar = scalar_from_tensor(
                t.dtype,
                len(t.tensor_shape.dim),
                t.tensor_content,
                list(t.float_val[:1]),
                list(t.double_val[:1]),
                list(t.int_val[:1]),
                list(t.int64_val[:1]),
                list(t.half_val[:1]),
            )
            if scalar is not None:
                out.append((tag, event.step, event.wall_time, scalar))
    return out
