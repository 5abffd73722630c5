"""`/api/blobs/...`: the object store of a studio server, for clients without storage credentials.

The client side is `studio.objects.backends.http.HttpBackend`; how bytes move (presigned S3
URLs or streaming through here) is `studio.server.transfers`. Every route calls
`authorize_blob_access` once, first, with the action it performs:

    POST /api/blobs/stat              read artifact of experiment K   sizes of blobs (which ones are missing)
    POST /api/blobs/downloads         read artifact of experiment K   a URL per blob (presigned, or GET below)
    GET  /api/blobs/{hash}            read artifact of experiment K   the bytes (stream mode), with Range
    POST /api/blobs/uploads           write artifact of experiment K  begin or resume an upload
    POST /api/blobs/uploads/parts     write artifact of experiment K  presigned URLs for parts (S3)
    PUT  /api/blobs/uploads/{hash}    write artifact of experiment K  a chunk at ?offset= (stream mode);
                                                                    with ?size= a whole small blob, stored at once
    POST /api/blobs/uploads/complete  write artifact of experiment K  verify the hash, then store

K is the `experiment` field of the body (query parameter for GET/PUT). A capture uploads a
new experiment's workspace before its record exists, so K may name an experiment not created
yet. Like the store API, this API is off unless the server has a token.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from studio.exceptions import (
    AuthenticationError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    UsageError,
)
from studio.keys import check_key
from studio.objects.hashing import is_hash
from studio.server.responses import SafeJSONResponse
from studio.server.transfers import (
    STREAM_CHUNK,
    S3Transfers,
    StreamTransfers,
    Transfers,
    transfers_for,
)

router = APIRouter(prefix="/api/blobs", tags=["blobs"])

MAX_STAT = 1000


def authorize_blob_access(request: Request, action: Literal["read", "write"], experiment: str | None) -> None:
    """THE authorization hook of this module: may the caller `action` the artifacts of
    `experiment` (None: a read not tied to one experiment, e.g. a reused tree)?

    The rules of `studio.server.rules`, as the store API applies them: anyone authenticated
    reads; writing an existing experiment's artifacts is a "record" (its owner, an admin, or a
    worker running it); writing those of an experiment not recorded yet (a new run's workspace
    is stored before its record) is a "create". A single-user `studio ui` serves this API only
    with its shared token. Writes must name their experiment. Raises AccessError (401/403).
    """
    from studio.server.auth import auth_of, bearer, current_principal
    from studio.server.rules import authorize

    auth = auth_of(request)
    if not auth.team_mode:
        if not auth.shared_token:
            raise PermissionDeniedError(
                "this server's blob API is off: start it with STUDIOML_SERVER_TOKEN set, or run `studio server`"
            )
        if bearer(request) is None:
            raise AuthenticationError("wrong or missing token: set STUDIOML_API_TOKEN to the server's token")
    who = current_principal(request)
    if experiment is not None:
        check_key(experiment)
    elif action == "write":
        raise UsageError("a write must name the experiment whose artifact it stores")
    if action == "read":
        authorize(who, "read", what="stored artifacts")
        return
    assert experiment is not None
    from studio.server.api_store import owner_of

    try:
        owner = owner_of(request, experiment)
    except NotFoundError:
        authorize(who, "create", what=f"the artifacts of new experiment {experiment}")
        return
    authorize(who, "record", owner=owner, what=f"the artifacts of experiment {experiment}")


def _transfers(request: Request) -> Transfers:
    found = getattr(request.app.state, "blob_transfers", None)
    if found is None:
        ctx = request.app.state.ctx
        found = transfers_for(ctx.objects, ctx.settings)
        request.app.state.blob_transfers = found
    return found  # type: ignore[no-any-return]


def _experiment(value: str | None) -> str | None:
    return value or None


def check_hash(value: str) -> str:
    """A content hash, or a 400: clients name blobs by hash only, never by path."""
    if not is_hash(value):
        raise UsageError(f"{value[:80]!r} is not a sha256 hash (64 lowercase hex digits)")
    return value


class StatBody(BaseModel):
    hashes: list[str] = Field(max_length=MAX_STAT)  # up to 1,000 a request
    experiment: str | None = None
    freshen_after: float | None = Field(default=None, ge=0)


class UploadBody(BaseModel):
    hash: str
    size: int = Field(ge=0)
    experiment: str | None = None


class PartsBody(BaseModel):
    hash: str
    upload: str
    numbers: list[int] = Field(max_length=1000)
    experiment: str | None = None


class CompleteBody(BaseModel):
    hash: str
    size: int = Field(ge=0)
    upload: str | None = None
    parts: list[dict[str, Any]] | None = None
    experiment: str | None = None


@router.post("/stat")
async def stat(body: StatBody, request: Request) -> dict[str, Any]:
    """Read artifact of experiment K: the stored size of each blob, null if missing (and,
    with `freshen_after`, their age for the collector restarted: see ObjectBackend.freshen)."""
    authorize_blob_access(request, "read", _experiment(body.experiment))
    hashes = [check_hash(h) for h in body.hashes]
    transfers = _transfers(request)

    def sizes() -> dict[str, int | None]:
        found = transfers.sizes(hashes)
        if body.freshen_after is not None:  # the client will rely on these instead of sending them
            found = transfers.freshen(found, body.freshen_after)
        return found

    return {"sizes": await run_in_threadpool(sizes)}


@router.post("/downloads")
async def downloads(body: StatBody, request: Request) -> dict[str, Any]:
    """Read artifact of experiment K: a URL for each stored blob (short-lived if presigned)."""
    authorize_blob_access(request, "read", _experiment(body.experiment))
    hashes = [check_hash(h) for h in body.hashes]
    transfers = _transfers(request)

    def urls() -> dict[str, Any]:
        found: dict[str, Any] = {}
        for h in hashes:
            try:
                found[h] = transfers.download(h)
            except NotFoundError:
                found[h] = None
        return found

    return {"urls": await run_in_threadpool(urls)}


@router.get("/{blob_hash}")
async def blob(blob_hash: str, request: Request, experiment: str = "") -> Response:
    """Read artifact of experiment K: the blob's bytes, for servers that stream (Range works)."""
    authorize_blob_access(request, "read", _experiment(experiment))
    transfers = _transfers(request)
    if not isinstance(transfers, StreamTransfers):
        raise UsageError("this server hands out signed URLs: ask POST /api/blobs/downloads")
    path, reader = await run_in_threadpool(transfers.open, check_hash(blob_hash))
    if path is not None:
        return FileResponse(path, media_type="application/octet-stream")
    assert reader is not None

    def chunks() -> Any:
        with reader:
            while data := reader.read(1 << 20):
                yield data

    return StreamingResponse(chunks(), media_type="application/octet-stream")


@router.post("/uploads")
async def start_upload(body: UploadBody, request: Request) -> dict[str, Any]:
    """Write artifact of experiment K: begin an upload, or say how far an earlier one got."""
    transfers = _transfers(request)

    def start() -> dict[str, Any]:
        authorize_blob_access(request, "write", _experiment(body.experiment))
        return transfers.start(check_hash(body.hash), body.size)

    return await run_in_threadpool(start)


@router.post("/uploads/parts")
async def part_urls(body: PartsBody, request: Request) -> dict[str, Any]:
    """Write artifact of experiment K: presigned URLs for parts of a staged upload."""
    transfers = _transfers(request)

    def urls() -> dict[str, str]:
        authorize_blob_access(request, "write", _experiment(body.experiment))
        if not isinstance(transfers, S3Transfers):
            raise UsageError("this server streams uploads: PUT /api/blobs/uploads/{hash}")
        return transfers.part_urls(check_hash(body.hash), body.upload, body.numbers)

    return {"urls": await run_in_threadpool(urls)}


@router.put("/uploads/{blob_hash}")
async def upload_chunk(
    blob_hash: str, request: Request, offset: int = 0, experiment: str = "", size: int | None = Query(None, ge=0)
) -> Response:
    """Write artifact of experiment K: bytes at `offset` of a streamed upload. With `size`
    (the blob's whole size) and the whole blob in this one chunk, the upload is also completed
    here (checked against the hash, then stored: `{"offset", "stored"}`; wrong bytes get 422):
    a small blob in one round trip instead of three."""
    await run_in_threadpool(authorize_blob_access, request, "write", _experiment(experiment))
    transfers = _transfers(request)
    if not isinstance(transfers, StreamTransfers):
        raise UsageError("this server takes uploads through signed URLs: ask POST /api/blobs/uploads/parts")
    length = int(request.headers.get("content-length") or 0)
    if offset < 0 or length > 2 * STREAM_CHUNK:
        raise UsageError(f"send chunks of at most {2 * STREAM_CHUNK} bytes at an offset >= 0")
    h = check_hash(blob_hash)
    whole = size is not None and offset == 0
    written = await transfers.write_async(h, offset, request.stream(), whole=whole)
    if not whole or written != size:
        return SafeJSONResponse({"offset": written})
    try:
        await run_in_threadpool(transfers.complete, h, written, None, None)
    except IntegrityError as exc:  # the client's bytes, not the server's data
        return SafeJSONResponse({"detail": str(exc), "error": "IntegrityError"}, status_code=422)
    return SafeJSONResponse({"offset": written, "stored": h})


@router.post("/uploads/complete")
async def complete_upload(body: CompleteBody, request: Request) -> Response:
    """Write artifact of experiment K: check the uploaded bytes against their hash, then store
    them as the object (wrong bytes are dropped and refused with 422)."""
    transfers = _transfers(request)

    def complete() -> None:
        authorize_blob_access(request, "write", _experiment(body.experiment))
        transfers.complete(check_hash(body.hash), body.size, body.upload, body.parts)

    try:
        await run_in_threadpool(complete)
    except IntegrityError as exc:  # the client's bytes, not the server's data
        return SafeJSONResponse({"detail": str(exc), "error": "IntegrityError"}, status_code=422)
    return SafeJSONResponse({"stored": body.hash})
