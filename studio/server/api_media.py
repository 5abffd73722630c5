"""Rich results of one experiment (`studio.log_image/log_table/log_figure`), read-only.

They live in the experiment's stored `workbook` artifact under ``media/``, ``tables/`` and
``figures/`` (see `studio.workbook.media`). This lists them grouped by name and step, serves
images with their own content type (PNG, JPEG, GIF, WebP only: an SVG or HTML file could run
script on our origin, so those stay downloads), plotly figures as JSON, and a page of a table
as rows for the dashboard's sortable view.
"""

from __future__ import annotations

import io
import mimetypes
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from studio.exceptions import NotFoundError, UsageError
from studio.objects import Tree
from studio.server.api_files import check_path, find_entry, stored_tree
from studio.server.api_runs import context, load
from studio.server.responses import ERRORS

router = APIRouter(prefix="/api/experiments", tags=["media"], responses=ERRORS)
TAG = "workbook"
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}
MAX_TABLE_BYTES = 64 << 20


def _tree(request: Request, key: str) -> Tree | None:
    ctx = context(request)
    exp = load(ctx, key)
    art = exp.artifacts.get(TAG)
    if art is None or not art.tree:
        return None
    return ctx.objects.get_tree(art.tree)


def group(paths: list[str]) -> dict[str, Any]:
    """media/<name>/<step>.png -> images[name] = [{step, path}], likewise figures; tables."""
    images: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, list[dict[str, Any]]] = {}
    tables: list[dict[str, str]] = []
    for path in sorted(paths):
        kind, _, rest = path.partition("/")
        if kind == "tables" and rest.endswith((".parquet", ".csv")):
            tables.append({"name": rest.rsplit(".", 1)[0], "path": path})
            continue
        name, _, leaf = rest.rpartition("/")
        stem = leaf.split(".", 1)[0]
        if not name or not stem.isdigit():
            continue
        if kind == "media" and leaf.endswith(tuple(IMAGE_TYPES)):
            images.setdefault(name, []).append({"step": int(stem), "path": path})
        elif kind == "figures" and leaf.endswith((".plotly.json", ".png")):
            fmt = "plotly" if leaf.endswith(".plotly.json") else "image"
            figures.setdefault(name, []).append({"step": int(stem), "path": path, "format": fmt})
    return {"images": images, "figures": figures, "tables": tables}


@router.get("/{key}/media", summary="Images, figures and tables the experiment logged")
def media(request: Request, key: str) -> dict[str, Any]:
    tree = _tree(request, key)
    return group([e.path for e in tree.entries] if tree is not None else [])


@router.get(
    "/{key}/media/file",
    summary="One logged image (its own content type) or plotly figure (JSON)",
    responses={200: {"content": {"image/png": {}, "application/json": {}}}},
)
def media_file(
    request: Request, key: str, path: str = Query(..., max_length=4096, description="Path inside the workbook artifact")
) -> Response:
    check_path(path)
    ctx = context(request)
    tree, _ = stored_tree(ctx, key, TAG)
    entry = find_entry(tree, path, key, TAG)
    suffix = "." + entry.path.rsplit(".", 1)[-1].lower()
    if entry.path.endswith(".plotly.json"):
        media_type = "application/json"
    elif suffix in IMAGE_TYPES:
        media_type = IMAGE_TYPES[suffix]
    else:
        raise UsageError(
            f"{path!r} is not an image or a plotly figure; download it from the artifacts list instead"
        )
    with ctx.objects.open_blob(entry.hash) as fh:
        data = fh.read()
    return Response(
        data, media_type=media_type or mimetypes.guess_type(entry.path)[0],
        headers={"Cache-Control": "private, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"},
    )  # fmt: skip


@router.get("/{key}/media/table", summary="Rows of a logged table")
def media_table(
    request: Request,
    key: str,
    name: str = Query(..., max_length=1024),
    offset: int = Query(0, ge=0),
    limit: int = Query(500, ge=1, le=10_000),
) -> dict[str, Any]:
    ctx = context(request)
    tree, _ = stored_tree(ctx, key, TAG)
    entry = None
    for suffix in (".parquet", ".csv"):
        candidate = f"tables/{name}{suffix}"
        check_path(candidate)
        entry = next((e for e in tree.entries if e.path == candidate), None)
        if entry is not None:
            break
    if entry is None:
        names = [t["name"] for t in group([e.path for e in tree.entries])["tables"]]
        raise NotFoundError(f"experiment {key} has no table {name!r} (it has: {', '.join(names) or 'none'})")
    if entry.size > MAX_TABLE_BYTES:
        raise UsageError(f"table {name!r} is {entry.size} bytes; load it in a notebook instead")
    with ctx.objects.open_blob(entry.hash) as fh:
        data = fh.read()
    table = _read_table(entry.path, data)
    columns = [str(c) for c in table.column_names]
    page = table.slice(offset, limit).to_pylist()
    rows = [[_cell(row[c]) for c in table.column_names] for row in page]
    return {"name": name, "columns": columns, "rows": rows, "total": table.num_rows, "offset": offset}


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _read_table(path: str, data: bytes) -> Any:
    """A pyarrow Table (pyarrow is a core dependency; pandas is not in the `ui` extra)."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data))
    import pyarrow.csv as pcsv

    return pcsv.read_csv(io.BytesIO(data))
