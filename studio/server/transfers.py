"""How a studio server moves blobs for its clients: presigned S3 URLs, or streaming.

`transfers_for(store, settings)` picks one for the server's object store:

- `S3Transfers` (s3:// storage, boto3): clients upload parts straight to a staging key
  `<prefix>/tmp/uploads/<hash>/<id>` with presigned URLs and download `objects/<hash>` with
  presigned URLs. The server assembles an upload, reads it back once, and only if its SHA-256
  is the announced hash copies it to `objects/<hash>` (an S3-side copy) and drops the staging
  key. The staging key is a function of the hash, so an interrupted upload is found again by
  listing the multipart uploads under it: resuming needs no state on the client or here.
- `GcsTransfers` (gs:// storage with a service-account key): the same with V4 signed URLs,
  an upload being one signed PUT to a staging key (see the class).
- `StreamTransfers` (a local folder, or any store it cannot sign for: gs:// without a
  service-account key, other fsspec stores): bytes go
  through the server in chunks written at an offset to `<staging>/upload-<hash>` (the store's
  `tmp/`, whose leftovers `studio gc` purges); the completed file is hashed and moved into
  the store only if it matches.

Either way a client can name only content hashes: every key is built here from a checked hash
(or a server-made id), never taken from the request, so no URL for another bucket path can be
asked for. Neither class checks who calls: `api_blobs` does, before calling them.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any, BinaryIO, cast

from studio.config import Settings
from studio.exceptions import ConflictError, IntegrityError, NotFoundError, StoreError, UsageError
from studio.objects import ObjectStore
from studio.objects.hashing import CHUNK, check_hash, hash_file, object_key

log = logging.getLogger(__name__)

MIN_PART = 8 << 20  # S3 wants at least 5 MiB per part but the last
MAX_PARTS = 10_000
STREAM_CHUNK = 8 << 20
_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def part_size_for(size: int) -> int:
    """Parts of at least 8 MiB, and never more than S3's 10,000 of them."""
    return max(MIN_PART, -(-size // MAX_PARTS))


class Transfers:
    mode: str
    store: ObjectStore

    def sizes(self, hashes: list[str]) -> dict[str, int | None]:
        raise NotImplementedError

    def freshen(self, sizes: dict[str, int | None], older_than: float) -> dict[str, int | None]:
        """Freshen the stored blobs among `sizes` (their age for `studio gc` restarts: a client
        relies on them instead of sending them); one collected meanwhile becomes None."""
        fresh = getattr(self.store.backend, "freshen", None)
        if fresh is None:  # a backend without ages for the collector
            return sizes
        return {h: (s if s is not None and fresh(object_key(h), s, older_than) else None) for h, s in sizes.items()}

    def start(self, h: str, size: int) -> dict[str, Any]:
        """Begin or resume an upload of blob `h` of `size` bytes: `{"present": True}` if stored."""
        raise NotImplementedError

    def complete(self, h: str, size: int, upload: str | None, parts: list[dict[str, Any]] | None) -> None:
        raise NotImplementedError

    def download(self, h: str) -> dict[str, Any]:
        raise NotImplementedError


class StreamTransfers(Transfers):
    """Bytes through the server (see the module docstring)."""

    mode = "stream"

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.staging = Path(store.backend.staging_dir or store.cache.staging_dir)

    def sizes(self, hashes: list[str]) -> dict[str, int | None]:
        return {h: self.store.backend.size(object_key(h)) for h in hashes}

    def _staged(self, h: str) -> Path:
        return self.staging / f"upload-{check_hash(h)}"

    def start(self, h: str, size: int) -> dict[str, Any]:
        if self.store.backend.size(object_key(h)) == size:
            return {"present": True}
        try:
            offset = min(os.stat(self._staged(h)).st_size, size)
        except FileNotFoundError:
            offset = 0
        return {"present": False, "mode": self.mode, "offset": offset, "part_size": STREAM_CHUNK}

    def write(self, h: str, offset: int, chunks: Any, whole: bool = False) -> int:
        """Write the bytes of `chunks` at `offset` of the staged upload; the new size. `whole`:
        they are the whole blob (at offset 0), so whatever an earlier attempt left after them goes."""
        path = self._staged(h)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            have = os.fstat(fd).st_size
            if offset > have:
                raise ConflictError(f"upload of {h[:12]} holds {have} bytes, not {offset}: resume from {have}")
            os.lseek(fd, offset, os.SEEK_SET)
            end = offset
            for chunk in chunks:
                view = memoryview(chunk)
                end += len(view)
                while view:
                    view = view[os.write(fd, view) :]
            if whole:
                os.ftruncate(fd, end)
            return os.fstat(fd).st_size
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                path.unlink(missing_ok=True)  # give the space back; a later upload starts over
            raise
        finally:
            os.close(fd)

    async def write_async(self, h: str, offset: int, stream: Any, whole: bool = False) -> int:
        from starlette.concurrency import run_in_threadpool

        buffered: list[bytes] = []
        total = 0
        async for chunk in stream:  # a client sends STREAM_CHUNK at a time
            total += len(chunk)
            if total > 2 * STREAM_CHUNK:
                raise UsageError(f"send chunks of at most {2 * STREAM_CHUNK} bytes")
            buffered.append(chunk)
        return cast(int, await run_in_threadpool(self.write, h, offset, buffered, whole))

    def complete(self, h: str, size: int, upload: str | None, parts: list[dict[str, Any]] | None) -> None:
        path = self._staged(h)
        if self.store.backend.size(object_key(h)) == size:
            path.unlink(missing_ok=True)
            return
        try:
            actual, got = hash_file(path)
        except FileNotFoundError:
            raise ConflictError(f"no upload of {h[:12]} to complete: send it again") from None
        if actual != h or got != size:
            path.unlink(missing_ok=True)
            raise IntegrityError(
                f"uploaded bytes hash to {actual[:12]} ({got} bytes), not {h[:12]} ({size}): refused, send it again"
            )
        try:
            self.store.backend.put_file(path, object_key(h), move=True)
        except FileNotFoundError:  # a concurrent uploader of the same blob moved it first
            if self.store.backend.size(object_key(h)) != size:
                raise

    def download(self, h: str) -> dict[str, Any]:
        size = self.store.backend.size(object_key(h))
        if size is None:
            raise NotFoundError(f"object {h} is not stored here")
        return {"url": f"/api/blobs/{h}", "size": size}

    def open(self, h: str) -> tuple[Path | None, BinaryIO | None]:
        """The local object file (served with ranges), or a reader for remote stores."""
        path = self.store.backend.local_path(object_key(h))
        if path is not None:
            if not path.is_file():
                raise NotFoundError(f"object {h} is not stored here")
            return path, None
        return None, self.store.open_blob(h)


class S3Transfers(Transfers):
    """Presigned URLs on the server's bucket (see the module docstring)."""

    mode = "s3"

    def __init__(self, store: ObjectStore, expiry: float) -> None:
        from studio.objects.backends.remote import storage_options_from_env

        boto3 = _require_boto3()
        Config = _require_botocore().config.Config

        self.store = store
        rest = store.url.split("://", 1)[1]
        self.bucket, _, prefix = rest.partition("/")
        self.prefix = prefix.strip("/")
        endpoint = storage_options_from_env("s3").get("endpoint_url")
        self.client = boto3.client("s3", endpoint_url=endpoint, config=Config(signature_version="s3v4"))
        self.expiry = int(max(1, expiry))

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _staging_prefix(self, h: str) -> str:
        return self._key(f"tmp/uploads/{check_hash(h)}/")

    def _staging_key(self, h: str, upload_id: str) -> str:
        if not _ID_RE.match(upload_id):
            raise UsageError("malformed upload id")
        return self._staging_prefix(h) + upload_id

    def _head(self, key: str) -> int | None:
        ClientError = _require_botocore().exceptions.ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StoreError(f"storage s3://{self.bucket}: {exc}") from exc

    def sizes(self, hashes: list[str]) -> dict[str, int | None]:
        from concurrent.futures import ThreadPoolExecutor

        if len(hashes) <= 1:
            return {h: self._head(self._key(object_key(h))) for h in hashes}
        with ThreadPoolExecutor(min(16, len(hashes))) as pool:  # S3 has no bulk HEAD
            return dict(zip(hashes, pool.map(lambda h: self._head(self._key(object_key(h))), hashes), strict=True))

    def start(self, h: str, size: int) -> dict[str, Any]:
        if self._head(self._key(object_key(h))) == size:
            return {"present": True}
        part_size = part_size_for(size)
        if size <= part_size:  # one part: a single presigned PUT, no multipart bookkeeping
            upload_id = uuid.uuid4().hex
            url = self.client.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": self._staging_key(h, upload_id)},
                ExpiresIn=self.expiry,
            )  # fmt: skip
            return {"present": False, "mode": self.mode, "upload": f"{upload_id}:", "url": url, "part_size": part_size}
        found = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self._staging_prefix(h))
        for upload in found.get("Uploads") or []:
            upload_id = str(upload["Key"]).rsplit("/", 1)[1]
            if not _ID_RE.match(upload_id):
                continue
            parts = self._parts(upload["Key"], upload["UploadId"], part_size, size)
            return {"present": False, "mode": self.mode, "upload": f"{upload_id}:{upload['UploadId']}",
                    "part_size": part_size, "parts_done": parts}  # fmt: skip
        upload_id = uuid.uuid4().hex
        created = self.client.create_multipart_upload(Bucket=self.bucket, Key=self._staging_key(h, upload_id))
        return {"present": False, "mode": self.mode, "upload": f"{upload_id}:{created['UploadId']}",
                "part_size": part_size, "parts_done": []}  # fmt: skip

    def _parts(self, key: str, s3_upload: str, part_size: int, size: int) -> list[dict[str, Any]]:
        """Parts already uploaded whole (a part of the wrong size is sent again)."""
        done: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "UploadId": s3_upload}
        while True:
            page = self.client.list_parts(**kwargs)
            for p in page.get("Parts") or []:
                n = int(p["PartNumber"])
                if int(p["Size"]) == min(part_size, size - (n - 1) * part_size):
                    done.append({"number": n, "etag": p["ETag"]})
            if not page.get("IsTruncated"):
                return done
            kwargs["PartNumberMarker"] = page["NextPartNumberMarker"]

    def _upload(self, h: str, upload: str | None) -> tuple[str, str]:
        upload_id, _, s3_upload = str(upload or "").partition(":")
        return self._staging_key(h, upload_id), s3_upload

    def part_urls(self, h: str, upload: str, numbers: list[int]) -> dict[str, str]:
        key, s3_upload = self._upload(h, upload)
        urls = {}
        for n in numbers:
            if not (isinstance(n, int) and 1 <= n <= MAX_PARTS):
                raise UsageError(f"part numbers run from 1 to {MAX_PARTS}")
            urls[str(n)] = self.client.generate_presigned_url(
                "upload_part", Params={"Bucket": self.bucket, "Key": key, "UploadId": s3_upload, "PartNumber": n},
                ExpiresIn=self.expiry,
            )  # fmt: skip
        return urls

    def complete(self, h: str, size: int, upload: str | None, parts: list[dict[str, Any]] | None) -> None:
        ClientError = _require_botocore().exceptions.ClientError

        final = self._key(object_key(h))
        key, s3_upload = self._upload(h, upload)
        try:
            if not s3_upload:  # a single PUT: nothing to assemble
                if self._head(key) is None:
                    raise ConflictError(f"no upload of {h[:12]} to complete: send it again")
            else:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=s3_upload,
                    MultipartUpload={"Parts": [{"PartNumber": int(p["number"]), "ETag": str(p["etag"])}
                                               for p in parts or []]},
                )  # fmt: skip
        except ClientError as exc:
            if self._head(final) == size:  # a concurrent uploader of the same blob finished it
                return
            raise ConflictError(f"upload of {h[:12]} could not be assembled ({exc}); send it again") from exc
        try:
            actual, got = self._hash_object(key)
            if actual != h or got != size:
                raise IntegrityError(
                    f"uploaded bytes hash to {actual[:12]} ({got} bytes), not {h[:12]} ({size}): refused, send it again"
                )
            self.client.copy({"Bucket": self.bucket, "Key": key}, self.bucket, final)
        finally:
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def _hash_object(self, key: str) -> tuple[str, int]:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        hasher = hashlib.sha256()
        size = 0
        try:
            while chunk := body.read(CHUNK):
                hasher.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        return hasher.hexdigest(), size

    def download(self, h: str) -> dict[str, Any]:
        key = self._key(object_key(h))
        size = self._head(key)
        if size is None:
            raise NotFoundError(f"object {h} is not stored here")
        url = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.expiry
        )
        return {"url": url, "size": size}


def _require_boto3() -> Any:
    from studio import exceptions

    return exceptions.require("boto3", "aws")


def _require_botocore() -> Any:
    import importlib

    from studio import exceptions

    botocore = exceptions.require("botocore", "aws")
    for sub in ("config", "exceptions"):  # submodules, for the attribute access
        importlib.import_module(f"botocore.{sub}")
    return botocore


def gcs_signer() -> tuple[Any, str]:
    """Service-account credentials that can sign V4 URLs (from GOOGLE_APPLICATION_CREDENTIALS),
    or (None, why not)."""
    import json

    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        return None, "GOOGLE_APPLICATION_CREDENTIALS names no service-account key"
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        return None, f"cannot read GOOGLE_APPLICATION_CREDENTIALS ({exc})"
    if info.get("type") != "service_account":
        return None, f"GOOGLE_APPLICATION_CREDENTIALS holds {info.get('type')!r} credentials, not a service-account key"
    try:
        from google.oauth2 import service_account
    except ImportError:
        return None, "google-auth is not installed (pip install 'studio-experiments[gcs]')"
    try:
        return service_account.Credentials.from_service_account_info(info), ""
    except ValueError as exc:
        return None, f"the service-account key cannot sign ({exc})"


def transfers_for(store: ObjectStore, settings: Settings) -> Transfers:
    url = store.url
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("s3", "s3a"):
        return S3Transfers(store, settings.signed_url_seconds)
    if scheme in ("gs", "gcs"):
        signer, why = gcs_signer()
        if signer is not None:
            try:
                from studio.server.gcs_transfers import GcsTransfers
            except ImportError as exc:
                from studio.exceptions import MissingDependencyError

                raise MissingDependencyError.for_extra("google-cloud-storage (to sign GCS URLs)", "gcs") from exc
            return GcsTransfers(store, settings.signed_url_seconds, signer)
        # A key that was meant to sign but cannot is worth a warning; no key at all is a choice.
        level = logging.WARNING if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") else logging.INFO
        log.log(level, "storage %s: blobs stream through this server (no signed URLs: %s)", url, why)
    return StreamTransfers(store)
