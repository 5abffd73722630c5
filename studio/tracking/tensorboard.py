"""TensorBoard scalars without TensorFlow: read event files, import them into a metric series.

An event file is a TFRecord stream: ``uint64 length, uint32 masked_crc32c(length), data,
uint32 masked_crc32c(data)`` (little-endian), each `data` an `Event` protobuf. Events are
decoded with the `tensorboard` package's compiled protos when it is importable, else with the
small hand-written decoder in `studio.tracking._tbproto`. Both scalar encodings are read:
``simple_value`` (TF1, torch) and rank-0 numeric tensors (TF2, plugin "scalars").

`import_tensorboard` is idempotent and incremental: imported byte ranges are encoded in the
segment names (``seg-tb-<file id>-<start>-<end>.arrow``), so a re-run after a crash never
imports a range twice; a small state file (``.tensorboard-state.json``) remembers offsets of
files read so far, including ranges that held no scalar.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from studio.tracking import _tbproto
from studio.tracking.segments import (
    ARROW_SUFFIX,
    SEGMENT_PREFIX,
    list_segments,
    write_segment_to,
)

__all__ = ["import_tensorboard", "read_records", "read_tensorboard_scalars"]

STATE_FILE = ".tensorboard-state.json"
_log = logging.getLogger(__name__)
_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")
_VERIFY_DATA_CRC_UP_TO = 1 << 16  # pure-Python CRC is slow: big records (images) are skipped

Scalar = tuple[str, int, float, float]  # tag, step, wall_time, value


def read_records(fh: BinaryIO, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(end offset, data) of each complete, intact record from `offset` on.

    Stops at a torn tail (a writer still writing) or at a record whose length is corrupt;
    a record whose data checksum fails is skipped.
    """
    fh.seek(offset)
    while True:
        header = fh.read(12)
        if len(header) < 12:
            return
        length, length_crc = _HEADER.unpack(header)
        if _tbproto.masked_crc32c(header[:8]) != length_crc:
            _log.warning("corrupt TensorBoard record length at byte %d of %s", offset, fh)
            return
        body = fh.read(length + 4)
        if len(body) < length + 4:
            return
        data = body[:length]
        if length <= _VERIFY_DATA_CRC_UP_TO:
            (data_crc,) = _CRC.unpack(body[length:])
            if _tbproto.masked_crc32c(data) != data_crc:
                _log.warning("corrupt TensorBoard record at byte %d of %s", offset, fh)
                offset += 12 + length + 4
                continue
        offset += 12 + length + 4
        yield offset, data


def _decoder(use_protobuf: bool | None) -> Any:
    if use_protobuf is not False:
        try:
            from studio.tracking import _tbproto_pb2
        except ImportError:
            if use_protobuf:
                raise
        else:
            return _tbproto_pb2.scalars_of_event
    return _tbproto.scalars_of_event


def _scan(
    path: Path, offset: int, skip: set[str], use_protobuf: bool | None = None
) -> tuple[int, list[Scalar]]:
    """Scalars of the complete records from `offset`, and the end of the last such record."""
    decode = _decoder(use_protobuf)
    end, found = offset, []
    with open(path, "rb") as fh:
        for end, data in read_records(fh, offset):
            try:
                found.extend(decode(data, skip))
            except Exception:  # a malformed event must not stop the import of the rest
                _log.debug("undecodable event before byte %d of %s", end, path, exc_info=True)
    return end, found


def read_tensorboard_scalars(
    tb_dir: str | os.PathLike[str], use_protobuf: bool | None = None
) -> Iterator[Scalar]:
    """(tag, step, wall_time, value) of every scalar in the event files under `tb_dir`.

    Tags of files in subfolders are prefixed with the folder (``train/loss``), as TensorBoard
    shows runs. `use_protobuf`: None picks the compiled protos when available.
    """
    root = Path(tb_dir)
    for rel, path in _event_files(root):
        prefix = _prefix(rel)
        for tag, step, wall_time, value in _scan(path, 0, set(), use_protobuf)[1]:
            yield prefix + tag, step, wall_time, value


def _event_files(root: Path) -> list[tuple[str, Path]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if ".tfevents." in name and not name.startswith("."):
                path = Path(dirpath) / name
                found.append((path.relative_to(root).as_posix(), path))
    return found


def _prefix(rel: str) -> str:
    folder = rel.rpartition("/")[0]
    return f"{folder}/" if folder else ""


def _file_id(rel: str) -> str:
    return hashlib.sha1(rel.encode("utf-8")).hexdigest()[:12]


def _imported_ends(metrics_dir: Path) -> dict[str, int]:
    """file id -> end of the furthest range already imported, from the segment names."""
    ends: dict[str, int] = {}
    head = f"{SEGMENT_PREFIX}tb-"
    for name in list_segments(metrics_dir):
        if name.startswith(head):
            parts = name[len(head) :].split(".")[0].split("-")
            if len(parts) == 3 and parts[2].isdigit():
                ends[parts[0]] = max(ends.get(parts[0], 0), int(parts[2]))
    return ends


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
        if isinstance(state, dict) and isinstance(state.get("files"), dict):
            return state
    except (OSError, ValueError):
        pass
    return {"files": {}}


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)
    except OSError:
        _log.debug("cannot save %s", path, exc_info=True)


def import_tensorboard(
    tb_dir: str | os.PathLike[str],
    metrics_dir: str | os.PathLike[str],
    state_path: str | os.PathLike[str] | None = None,
    use_protobuf: bool | None = None,
) -> int:
    """Append scalars that appeared in `tb_dir`'s event files since the last call to the
    series in `metrics_dir`; returns how many points were imported."""
    import numpy as np

    root, out = Path(tb_dir), Path(metrics_dir)
    state_file = Path(state_path) if state_path is not None else out / STATE_FILE
    state = _load_state(state_file)
    ends = _imported_ends(out)
    suffix = ARROW_SUFFIX
    total = 0
    changed = False
    for rel, path in _event_files(root):
        fid = _file_id(rel)
        entry = state["files"].setdefault(rel, {"offset": 0, "skip": []})
        start = max(int(entry["offset"]), ends.get(fid, 0))
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        if size <= start:
            continue
        skip = set(entry["skip"])
        prefix = _prefix(rel)
        by_key: dict[str, tuple[list[int], list[float], list[float]]] = {}
        end, found = _scan(path, start, skip, use_protobuf)
        for tag, step, wall_time, value in found:
            cols = by_key.setdefault(prefix + tag, ([], [], []))
            cols[0].append(step)
            cols[1].append(value)
            cols[2].append(wall_time)
        if by_key:
            columns = [
                (
                    key,
                    np.array(s, dtype=np.int64),
                    np.array(v, dtype=np.float64),
                    np.array(t, dtype=np.float64),
                )
                for key, (s, v, t) in by_key.items()
            ]
            out.mkdir(parents=True, exist_ok=True)
            name = f"{SEGMENT_PREFIX}tb-{fid}-{start:016d}-{end:016d}{suffix}"
            write_segment_to(out / name, columns)
            total += sum(len(c[1]) for c in columns)
        if end != entry["offset"] or sorted(skip) != entry["skip"]:
            entry["offset"], entry["skip"] = end, sorted(skip)
            changed = True
    if changed:
        out.mkdir(parents=True, exist_ok=True)
        _save_state(state_file, state)
    return total
