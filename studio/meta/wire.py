"""The JSON form of MetaStore arguments and results, for the HTTP store (`studio.meta.http`)
and the server's store API (`studio.server.api_store`).

Entities travel as ``{"$t": "Experiment", "v": {field: value}}``, statuses as
``{"$s": "running"}``, tuples as ``{"$tuple": [...]}``; a plain dict that could be mistaken
for one of those travels as ``{"$d": {...}}``. Only the entity classes below are decoded, so a
message can never name an arbitrary class. NaN and infinities are kept (`allow_nan`), which
Python's json reads back.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from studio.entities import (
    ArtifactSpec,
    Experiment,
    ExperimentQuery,
    MetricSummary,
    Status,
    StatusEvent,
)
from studio.meta.base import OutputChunk, Page

_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (ArtifactSpec, Experiment, ExperimentQuery, MetricSummary, StatusEvent, OutputChunk, Page)
}
_MARKS = ("$t", "$s", "$tuple", "$d")


def encode(value: Any) -> Any:
    if isinstance(value, Status):
        return {"$s": value.value}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if name not in _TYPES:
            raise TypeError(f"{name} cannot travel to the metadata server")
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$t": name, "v": fields}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return {"$tuple": [encode(v) for v in sorted(value)]}
    if isinstance(value, dict):
        out = {str(k): encode(v) for k, v in value.items()}
        return {"$d": out} if any(k in out for k in _MARKS) else out
    return value


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$s" in value and len(value) == 1:
        return Status(value["$s"])
    if "$tuple" in value and len(value) == 1:
        return tuple(decode(v) for v in value["$tuple"])
    if "$d" in value and len(value) == 1:
        return {k: decode(v) for k, v in value["$d"].items()}
    if "$t" in value and set(value) == {"$t", "v"}:
        cls = _TYPES.get(value["$t"])
        if cls is None:
            raise ValueError(f"unknown type {value['$t']!r} from the metadata server")
        return cls(**{k: decode(v) for k, v in value["v"].items()})
    return {k: decode(v) for k, v in value.items()}


def dumps(value: Any) -> bytes:
    return json.dumps(encode(value), allow_nan=True, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    return decode(json.loads(data))
