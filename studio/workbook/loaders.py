"""How `experiment[name]` turns a file into a Python object, chosen by the name's ending.

    .json                   dict / list (json)
    .csv, .tsv              pandas DataFrame indexed by its first column, `Date` parsed
    .npy / .npz             numpy array / dict of arrays
    .pkl, .pickle           the unpickled object (pickle runs code: load only what you trust)
    .pt, .pth               torch.load(..., map_location="cpu") (same caveat as pickle)
    .parquet, .feather, .arrow   pandas DataFrame
    .png, .jpg, .jpeg, .gif, .webp   PIL image (needs Pillow)
    anything else           text (str) when it is UTF-8, else bytes

The longest matching ending wins, case-insensitively (``.tar.gz`` before ``.gz``). Add or
replace one with ``workbook.register_loader(".ext", fn)``, where ``fn(path) -> object``
receives the path of a local, read-only copy of the file, named like the artifact.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

Loader = Callable[[Path], Any]


def load_json(path: Path) -> Any:
    with open(path, "rb") as f:
        return json.load(f)


def load_csv(path: Path) -> Any:
    """The DataFrame of a CSV file (see `studio.workbook.tables.csv_frame`)."""
    from studio.workbook import tables

    return tables.frame(tables.read_csv_table(path))


def load_tsv(path: Path) -> Any:
    from studio.workbook import tables

    return tables.frame(tables.read_csv_table(path, delimiter="\t"))


def load_npy(path: Path) -> Any:
    import numpy as np

    return np.load(path, allow_pickle=False)


def load_npz(path: Path) -> dict[str, Any]:
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_pickle(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def load_torch(path: Path) -> Any:
    from studio.exceptions import MissingDependencyError

    try:
        import torch
    except ImportError:
        raise MissingDependencyError(
            f"{path.name} was saved with torch, which is not installed: `pip install torch`"
        ) from None
    return torch.load(path, map_location="cpu", weights_only=False)


def load_table(path: Path) -> Any:
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1":
        return pq.read_table(path).to_pandas()
    return feather.read_table(path).to_pandas()


def load_image(path: Path) -> Any:
    """A PIL image (loaded into memory, so the file may go away)."""
    from studio.exceptions import MissingDependencyError

    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError(
            f"{path.name} is an image; loading it needs Pillow: pip install pillow"
        ) from None
    with Image.open(path) as img:
        img.load()
        return img.copy()


def load_text(path: Path) -> str | bytes:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


_REGISTRY: dict[str, Loader] = {
    ".json": load_json,
    ".csv": load_csv,
    ".tsv": load_tsv,
    ".npy": load_npy,
    ".npz": load_npz,
    ".pkl": load_pickle,
    ".pickle": load_pickle,
    ".pt": load_torch,
    ".pth": load_torch,
    ".parquet": load_table,
    ".feather": load_table,
    ".arrow": load_table,
    ".png": load_image,
    ".jpg": load_image,
    ".jpeg": load_image,
    ".gif": load_image,
    ".webp": load_image,
}


def register_loader(suffix: str, loader: Loader | None) -> None:
    """Load files whose name ends with `suffix` (e.g. ``".yaml"``) with ``loader(path)``;
    None removes the loader (such files then load as text)."""
    if not isinstance(suffix, str) or not suffix:
        raise ValueError(f"loader suffix {suffix!r} must be a non-empty string like '.yaml'")
    key = suffix.lower()
    if loader is None:
        _REGISTRY.pop(key, None)
        return
    if not callable(loader):
        raise TypeError(f"loader for {suffix!r} must be callable as loader(path)")
    _REGISTRY[key] = loader


def registered() -> dict[str, Loader]:
    """A copy of the registry: suffix -> loader."""
    return dict(_REGISTRY)


def loader_for(name: str) -> Loader:
    """The loader of the longest registered suffix `name` ends with (text if none)."""
    low = name.lower()
    best: tuple[int, Loader] | None = None
    for suffix, loader in _REGISTRY.items():
        if low.endswith(suffix) and (best is None or len(suffix) > best[0]):
            best = (len(suffix), loader)
    return best[1] if best is not None else load_text
