"""Rich results from a script: images, tables, figures, and artifacts saved from code.

    import studio
    studio.init(project="mnist")                       # plain python; automatic under `studio run`
    studio.log_image("samples", array, step=epoch)     # numpy HxW/HxWxC/CxHxW, PIL, torch tensor
    studio.log_table("confusion", df)                  # DataFrame, dict of columns, list of dicts
    studio.log_figure("roc", fig, step=epoch)          # matplotlib or plotly figure
    studio.save("checkpoints/", "ckpt")                # a file or folder as the artifact `ckpt`

Everything goes to the experiment's workbook folder, and from there into the object store with
the `workbook` artifact (content-addressed: an unchanged file is never stored twice), in open
formats a reader needs no studio for:

    media/<name>/<step>.png                   images (8-bit grayscale, RGB or RGBA PNG)
    tables/<name>.parquet                     tables
    figures/<name>/<step>.plotly.json         plotly figures (plotly's own JSON)
    figures/<name>/<step>.png, <step>.svg     matplotlib figures

`<step>` is zero-padded to ten digits so names sort by step; without a step each name counts
0, 1, 2, ... on its own, as `studio.log` does. `name` may have ``/`` folders (``val/samples``).
`ExperimentRepository()[tag]` lists them like any workbook file and loads PNGs as PIL images
(`images(name)`, `table(name)`, `figures(name)` collect them); the dashboard shows them on
the experiment page.

Which experiment: the newest `workbook.new_experiment()`/`studio.init()` of this process;
under `studio run` or a worker, the running experiment (joined on first use). In a plain
process with neither, these raise `UsageError` naming `studio.init()`.
"""

from __future__ import annotations

import io
import operator
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.exceptions import MissingDependencyError, UsageError
from studio.workbook import saving

if TYPE_CHECKING:
    from studio.workbook.training import WorkbookExperiment

MEDIA, TABLES, FIGURES = "media", "tables", "figures"
STEP_DIGITS = 10

_lock = threading.Lock()
_counters: dict[tuple[str, str, str], int] = {}


# -- which experiment ----------------------------------------------------------------------------
def init(project: str | None = None, name: str | None = None, **kwargs: Any) -> WorkbookExperiment:
    """Start recording this process as an experiment (``workbook.new_experiment``); under
    `studio run` it joins the running one. Returns the experiment (``exp.tag``, ``exp.close()``)."""
    from studio.workbook.training import new_experiment

    return new_experiment(project, name, **kwargs)


def current() -> WorkbookExperiment:
    """The experiment rich results go to (see the module docstring)."""
    import os

    from studio.workbook.session import HOOKS
    from studio.workbook.training import WorkbookExperiment, new_experiment

    with _lock:
        open_sessions = [s for s in HOOKS.sessions if not s.closed]
        if open_sessions:
            return WorkbookExperiment(open_sessions[-1])
        if os.environ.get("STUDIOML_EXPERIMENT"):
            return new_experiment(echo=False)
    raise UsageError(
        "no experiment is recording in this process: call studio.init() (or "
        "workbook.new_experiment()) first, or run the script with `studio run`"
    )


def _step_file(exp: WorkbookExperiment, kind: str, name: str, step: int | None, suffix: str) -> Path:
    parts = [saving.artifact_name(p) for p in _split(name)]
    folder = exp.directory.joinpath(kind, *parts)
    folder.mkdir(parents=True, exist_ok=True)
    with _lock:
        counter = (exp.tag, kind, name)
        if step is None:
            step = _counters.get(counter, 0)
        elif isinstance(step, bool):
            raise TypeError(f"step must be an integer, got {step!r}")
        else:
            try:
                step = operator.index(step)
            except TypeError:
                raise TypeError(f"step must be an integer, got {step!r}") from None
        if step < 0:
            raise ValueError(f"step must not be negative, got {step}")
        _counters[counter] = max(_counters.get(counter, 0), step + 1)
    return folder / f"{step:0{STEP_DIGITS}d}{suffix}"


def _split(name: str) -> list[str]:
    if not isinstance(name, str) or not name.strip("/ "):
        raise ValueError(f"name {name!r} must be a non-empty string like 'samples' or 'val/samples'")
    return [p for p in name.split("/") if p]


# -- images ------------------------------------------------------------------------------------
def log_image(name: str, image: Any, step: int | None = None) -> Path:
    """Store `image` as a PNG at `step`: a PIL image; a numpy array or torch tensor shaped
    HxW, HxWxC or CxHxW (C = 1, 3 or 4; a tensor with 1, 3 or 4 rows first is CxHxW, as
    torchvision lays images out), uint8 0-255 or floats in [0, 1] (clipped)."""
    exp = current()
    path = _step_file(exp, MEDIA, name, step, ".png")
    data = encode_image(image)
    saving.atomic_write(path, lambda f: f.write(data))
    exp._saved(path)
    return path


def encode_image(image: Any) -> bytes:
    """PNG bytes of a PIL image, numpy array or tensor (see `log_image`)."""
    if type(image).__module__.startswith("PIL."):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    return png_bytes(image_array(image))


def image_array(image: Any) -> Any:
    """An HxWxC uint8 numpy array (C = 1, 3 or 4) of `image`."""
    import numpy as np

    channels_first = False
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # a torch tensor: CxHxW by convention
        image = image.detach().cpu().numpy()
        channels_first = True
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"an image is HxW, HxWxC or CxHxW; got an array of shape {arr.shape}")
    if arr.shape[0] in (1, 3, 4) and (channels_first or arr.shape[2] not in (1, 3, 4)):
        arr = np.transpose(arr, (1, 2, 0))
    if arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"an image has 1, 3 or 4 channels; got an array of shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype.kind == "f":
        arr = (np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(
                f"integer image values must be within 0-255 (got {arr.min()}..{arr.max()}); "
                "scale them, or pass floats in [0, 1]"
            )
        arr = arr.astype(np.uint8)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"an image needs at least one pixel; got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def png_bytes(arr: Any) -> bytes:
    """A PNG (no filter, zlib level 6) of an HxWxC uint8 array: no imaging library needed."""
    height, width, channels = arr.shape
    color = {1: 0, 3: 2, 4: 6}[channels]
    rows = arr.reshape(height, width * channels)
    import numpy as np

    raw = np.zeros((height, width * channels + 1), dtype=np.uint8)  # filter byte 0 per row
    raw[:, 1:] = rows

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


# -- tables ------------------------------------------------------------------------------------
def log_table(name: str, table: Any) -> Path:
    """Store `table` (a pandas DataFrame, a dict of columns or a list of row dicts) as
    ``tables/<name>.parquet``. Logging a name again replaces it; every
    version stays in the stored history of the `workbook` artifact."""
    exp = current()
    parts = [saving.artifact_name(p) for p in _split(name)]
    folder = exp.directory.joinpath(TABLES, *parts[:-1])
    folder.mkdir(parents=True, exist_ok=True)
    frame = _frame(table)
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / f"{parts[-1]}.parquet"
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    saving.atomic_write(path, lambda f: pq.write_table(arrow, f))
    exp._saved(path)
    return path


def _frame(table: Any) -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise MissingDependencyError(
            "studio.log_table needs pandas: pip install 'studio-experiments[workbook]'"
        ) from None
    if isinstance(table, pd.DataFrame):
        frame = table
    elif isinstance(table, (dict, list)):
        frame = pd.DataFrame(table)
    else:
        raise TypeError(
            f"log_table takes a pandas DataFrame, a dict of columns or a list of row dicts; "
            f"got {type(table).__name__}"
        )
    frame = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame
    frame.columns = [str(c) for c in frame.columns]
    return frame


# -- figures -----------------------------------------------------------------------------------
def log_figure(name: str, figure: Any, step: int | None = None) -> Path:
    """Store a plotly figure as its JSON (interactive on the dashboard) or a matplotlib
    figure as PNG plus SVG, at `step`."""
    exp = current()
    module = type(figure).__module__
    if module.startswith("plotly."):
        path = _step_file(exp, FIGURES, name, step, ".plotly.json")
        text = figure.to_json().encode()
        saving.atomic_write(path, lambda f: f.write(text))
    elif module.startswith("matplotlib.") and hasattr(figure, "savefig"):
        path = _step_file(exp, FIGURES, name, step, ".png")
        saving.atomic_write(path.with_suffix(".svg"), lambda f: figure.savefig(f, format="svg"))
        saving.atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=100))
    else:
        raise TypeError(
            f"log_figure takes a matplotlib Figure or a plotly Figure; got {type(figure).__name__}"
            " (for an Axes, pass ax.figure)"
        )
    exp._saved(path)
    return path


# -- artifacts from code -----------------------------------------------------------------------
def save(path: str | Any, tag: str | None = None) -> str:
    """Store the file or folder `path` now as the artifact `tag` (default: its name) of the
    experiment, immutable and content-addressed, as `--capture-once` would; it is then
    ``fs_tracker.get_artifact(tag)`` in reruns, ``--reuse KEY/tag`` elsewhere and
    ``ExperimentRepository()[KEY][tag]`` in a notebook. Returns the stored tree's hash."""
    from studio.entities import DEFAULT_ARTIFACTS, ArtifactSpec

    source = Path(path).expanduser()
    if not source.exists():
        raise UsageError(f"studio.save: {source} does not exist; save a file or folder that does")
    tag = tag or source.name
    if not tag or "/" in tag or tag.startswith(".") or tag in (*DEFAULT_ARTIFACTS, "workbook", "metrics"):
        raise UsageError(
            f"studio.save: {tag!r} cannot be an artifact tag here; pass another tag "
            f"(not one of {', '.join((*DEFAULT_ARTIFACTS, 'workbook', 'metrics'))})"
        )
    exp = current()
    ctx = exp._session.ctx
    result = ctx.objects_for(exp.tag).put_tree(source)  # a studio server authorizes by experiment
    spec = ArtifactSpec(
        tag=tag, mutable=False, local_path=str(source.resolve()), tree=result.tree,
        size=result.size, files=result.files, updated=time.time(),
    )  # fmt: skip
    ctx.meta.put_artifact(exp.tag, spec)
    return result.tree


__all__ = [
    "current",
    "encode_image",
    "init",
    "log_figure",
    "log_image",
    "log_table",
    "png_bytes",
    "save",
]
