"""Artifacts of one experiment: list, browse a stored tree, download a file or a tar.gz.

Only stored trees are served (what `studio artifacts fetch` would give), never arbitrary
local folders. Paths are checked before lookup: absolute paths, `..`, backslashes and empty
parts are refused with 400, so no request can name anything outside the tree.
"""

from __future__ import annotations

import gzip
import mimetypes
import queue
import tarfile
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from studio.api.context import Context
from studio.entities import ArtifactSpec
from studio.exceptions import NotFoundError, UsageError
from studio.objects import ObjectStore, Tree, TreeEntry
from studio.server.api_runs import context, load
from studio.server.responses import ERRORS

router = APIRouter(prefix="/api/experiments", tags=["artifacts"], responses=ERRORS)
CHUNK = 1 << 20
MAX_LISTED = 20_000


def artifact_info(art: ArtifactSpec) -> dict[str, Any]:
    return {
        "tag": art.tag, "mutable": art.mutable, "stored": bool(art.tree), "tree": art.tree,
        "size": art.size, "files": art.files, "updated": art.updated, "source": art.source,
        "local_path": art.local_path,
    }


def stored_tree(ctx: Context, key: str, tag: str) -> tuple[Tree, ArtifactSpec]:
    exp = load(ctx, key)
    art = exp.artifacts.get(tag)
    if art is None:
        tags = ", ".join(sorted(exp.artifacts)) or "none"
        raise NotFoundError(f"experiment {key} has no artifact {tag!r} (it has: {tags})")
    if not art.tree:
        raise NotFoundError(f"artifact {tag!r} of {key} has not been stored yet (captured at checkpoints and at the end)")
    return ctx.objects.get_tree(art.tree), art


def check_path(path: str) -> str:
    """A relative POSIX path inside a tree, or UsageError."""
    if not path or path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise UsageError(f"artifact path {path!r} must be relative to the artifact (no leading / or drive)")
    if "\\" in path or "\x00" in path:
        raise UsageError(f"artifact path {path!r} must use / and no control characters")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise UsageError(f"artifact path {path!r} must not contain '..', '.' or empty parts")
    return path


def find_entry(tree: Tree, path: str, key: str, tag: str) -> TreeEntry:
    if tree.kind == "file" and path in (tree.entries[0].path, "."):
        return tree.entries[0]
    for e in tree.entries:
        if e.path == path:
            return e
    raise NotFoundError(f"artifact {tag!r} of {key} has no file {path!r}")


def attachment(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


@router.get("/{key}/artifacts", summary="The experiment's artifacts")
def artifacts(request: Request, key: str) -> dict[str, Any]:
    exp = load(context(request), key)
    return {"artifacts": [artifact_info(a) for _, a in sorted(exp.artifacts.items())]}


@router.get("/{key}/artifacts/{tag}/files", summary="Files of a stored artifact")
def files(
    request: Request,
    key: str,
    tag: str,
    prefix: str = Query("", max_length=4096, description="Only paths under this folder"),
    limit: int = Query(5000, ge=1, le=MAX_LISTED),
) -> dict[str, Any]:
    ctx = context(request)
    tree, art = stored_tree(ctx, key, tag)
    if prefix:
        check_path(prefix.rstrip("/"))
        under = prefix.rstrip("/") + "/"
        entries = [e for e in tree.entries if e.path.startswith(under)]
    else:
        entries = list(tree.entries)
    shown = entries[:limit]
    return {
        "tag": tag, "kind": tree.kind, "tree": tree.hash, "total": len(entries), "size": tree.size,
        "truncated": len(entries) > len(shown),
        "entries": [{"path": e.path, "size": e.size, "mode": e.mode} for e in shown],
    }


def _blob_chunks(objects: ObjectStore, blob_hash: str) -> Iterator[bytes]:
    with objects.open_blob(blob_hash) as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


@router.get(
    "/{key}/artifacts/{tag}/file",
    summary="Download one file of a stored artifact",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def file(
    request: Request,
    key: str,
    tag: str,
    path: str = Query(..., max_length=4096, description="Relative path inside the artifact"),
    inline: bool = Query(False, description="Show in the browser instead of downloading"),
) -> StreamingResponse:
    ctx = context(request)
    check_path(path)
    tree, _ = stored_tree(ctx, key, tag)
    entry = find_entry(tree, path, key, tag)
    name = entry.path.rsplit("/", 1)[-1]
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {"Content-Length": str(entry.size), "X-Content-Type-Options": "nosniff"}
    if inline:
        # Shown as text whatever it is: a stored .html must not run scripts on our origin.
        media = "text/plain; charset=utf-8"
        headers["Content-Disposition"] = "inline"
    else:
        headers["Content-Disposition"] = attachment(name)
    return StreamingResponse(_blob_chunks(ctx.objects, entry.hash), media_type=media, headers=headers)


class _QueueWriter:
    """A file-like sink handing written bytes to a consumer thread through a bounded queue."""

    def __init__(self, q: queue.Queue[bytes | BaseException | None], stop: threading.Event) -> None:
        self.q = q
        self.stop = stop
        self.buf: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        if self.stop.is_set():
            raise BrokenPipeError("client went away")
        self.buf.append(bytes(data))
        self.size += len(data)
        if self.size >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buf:
            self.q.put(b"".join(self.buf))
            self.buf, self.size = [], 0


def archive_chunks(objects: ObjectStore, tree: Tree, root: str) -> Iterator[bytes]:
    """A tar.gz of `tree` under folder `root`, produced while it is sent (bounded memory)."""
    q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)
    stop = threading.Event()

    def produce() -> None:
        sink = _QueueWriter(q, stop)
        try:
            with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0) as gz:  # type: ignore[call-overload]
                with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    for e in tree.entries:
                        info = tarfile.TarInfo(f"{root}/{e.path}")
                        info.size, info.mode = e.size, e.mode
                        with objects.open_blob(e.hash) as fh:
                            tar.addfile(info, fh)
            sink.flush()
            q.put(None)
        except BaseException as exc:  # handed to the consumer, which re-raises
            if not stop.is_set():
                q.put(exc)

    thread = threading.Thread(target=produce, name="studio-archive", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


@router.get(
    "/{key}/artifacts/{tag}/archive",
    summary="Download a whole stored artifact as tar.gz (streamed)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/gzip": {}}}},
)
def archive(request: Request, key: str, tag: str) -> StreamingResponse:
    ctx = context(request)
    tree, _ = stored_tree(ctx, key, tag)
    name = f"{key}-{tag}"
    return StreamingResponse(
        archive_chunks(ctx.objects, tree, name), media_type="application/gzip",
        headers={"Content-Disposition": attachment(name + ".tar.gz")},
    )
