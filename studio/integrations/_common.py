"""What every framework adapter needs: the experiment, params, metrics, and the model folder."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.workbook.training import WorkbookExperiment


def experiment(project: str | None = None, name: str | None = None) -> WorkbookExperiment:
    """The experiment this process records into: the open one, the `studio run` one, or a
    new workbook experiment (`project`, `name`) in a plain process."""
    from studio.exceptions import UsageError
    from studio.workbook import media

    try:
        return media.current()
    except UsageError:
        return media.init(project, name)


def flatten(params: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested mappings become dotted keys; values JSON cannot hold become their repr."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + sep, sep))
            continue
        out[name] = jsonable(value)
    return out


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return jsonable(value.item())
    if isinstance(value, (list, tuple)) and len(value) <= 64:
        items = [jsonable(v) for v in value]
        try:
            json.dumps(items)
            return items
        except (TypeError, ValueError):
            pass
    return repr(value)[:1000]


def log_params(params: Mapping[str, Any], exp: WorkbookExperiment | None = None) -> dict[str, Any]:
    """Merge `params` (flattened) into the experiment's params, as `workbook` params are."""
    exp = exp or experiment()
    flat = flatten(params)
    if not flat:
        return {}
    session = exp._session
    meta = session.ctx.meta
    current = meta.get_experiment(exp.tag).params
    meta.update_experiment(exp.tag, params={**current, **flat})
    return flat


def numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The entries of `values` that are numbers (0-d tensors included)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            continue
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if isinstance(value, (int, float)):
            out[str(key)] = float(value)
    return out


def log_metrics(values: Mapping[str, Any], step: int | None = None) -> None:
    import studio

    found = numbers(values)
    if found:
        studio.log(step, **found)


def model_directory() -> Path:
    """The experiment's `modeldir` (stored at every checkpoint and at the end)."""
    from studio import fs_tracker

    path = Path(fs_tracker.get_model_directory())
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_checkpoint(source: str | os.PathLike[str], name: str | None = None) -> Path:
    """Copy a checkpoint file or folder into `modeldir` (atomically for files)."""
    from studio.workbook import saving

    src = Path(source)
    dest = model_directory() / (name or src.name)
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    else:
        saving.atomic_copy(src, dest)
    return dest
