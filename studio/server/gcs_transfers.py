"""`GcsTransfers`: V4 signed URLs on a GCS bucket behind a studio server (see `transfers`).

Imported only by a server whose storage is gs:// (`transfers.transfers_for`); it needs the
`gcs` extra (google-cloud-storage, google-auth); `transfers.gcs_signer()` says first whether
the server holds credentials that can sign (a service-account key), else the server streams.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any

from google.api_core.exceptions import NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from studio.exceptions import ConflictError, IntegrityError, NotFoundError, UsageError
from studio.objects import ObjectStore
from studio.objects.hashing import CHUNK, check_hash, object_key
from studio.server.transfers import _ID_RE, Transfers


class GcsTransfers(Transfers):
    """V4 signed URLs on the server's GCS bucket (see the module docstring), signed with the
    service-account key of GOOGLE_APPLICATION_CREDENTIALS. An upload is one signed PUT of the
    whole blob to a staging key (GCS takes objects of up to 5 TiB in one PUT); the server then
    hashes the staged object and, if it matches, copies it to `objects/<hash>` (a GCS-side
    copy). An interrupted upload is sent again from the start (no resumable sessions yet)."""

    mode = "gcs"

    def __init__(self, store: ObjectStore, expiry: float, signer: Any) -> None:
        self.store = store
        rest = store.url.split("://", 1)[1]
        self.bucket_name, _, prefix = rest.partition("/")
        self.prefix = prefix.strip("/")
        self.signer = signer
        self.expiry = int(max(1, expiry))
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        # An emulator takes no credentials; the signed URLs then point at it too.
        self.endpoint = emulator.rstrip("/") if emulator else "https://storage.googleapis.com"
        self.client = storage.Client(
            project=getattr(signer, "project_id", None) or "studio",
            credentials=AnonymousCredentials() if emulator else signer,
        )
        self.bucket = self.client.bucket(self.bucket_name)

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _staging_key(self, h: str, upload_id: str) -> str:
        if not _ID_RE.match(upload_id):
            raise UsageError("malformed upload id")
        return self._key(f"tmp/uploads/{check_hash(h)}/{upload_id}")

    def _size(self, key: str) -> int | None:
        blob = self.bucket.get_blob(key)
        return None if blob is None else int(blob.size or 0)

    def _sign(self, key: str, method: str) -> str:
        import datetime

        return str(self.bucket.blob(key).generate_signed_url(
            version="v4", expiration=datetime.timedelta(seconds=self.expiry), method=method,
            credentials=self.signer, api_access_endpoint=self.endpoint,
        ))  # fmt: skip

    def sizes(self, hashes: list[str]) -> dict[str, int | None]:
        from concurrent.futures import ThreadPoolExecutor

        if len(hashes) <= 1:
            return {h: self._size(self._key(object_key(h))) for h in hashes}
        with ThreadPoolExecutor(min(16, len(hashes))) as pool:  # GCS has no bulk metadata read
            return dict(zip(hashes, pool.map(lambda h: self._size(self._key(object_key(h))), hashes), strict=True))

    def start(self, h: str, size: int) -> dict[str, Any]:
        if self._size(self._key(object_key(h))) == size:
            return {"present": True}
        upload_id = uuid.uuid4().hex
        url = self._sign(self._staging_key(h, upload_id), "PUT")
        return {"present": False, "mode": self.mode, "upload": f"{upload_id}:", "url": url, "part_size": size}

    def complete(self, h: str, size: int, upload: str | None, parts: list[dict[str, Any]] | None) -> None:
        final = self._key(object_key(h))
        key = self._staging_key(h, str(upload or "").partition(":")[0])
        staged = self.bucket.get_blob(key)
        if staged is None:
            if self._size(final) == size:  # a concurrent uploader of the same blob finished it
                return
            raise ConflictError(f"no upload of {h[:12]} to complete: send it again")
        try:
            hasher = hashlib.sha256()
            got = 0
            with staged.open("rb", chunk_size=CHUNK) as body:
                while chunk := body.read(CHUNK):
                    hasher.update(chunk)
                    got += len(chunk)
            if hasher.hexdigest() != h or got != size:
                raise IntegrityError(
                    f"uploaded bytes hash to {hasher.hexdigest()[:12]} ({got} bytes), not {h[:12]} ({size}): "
                    "refused, send it again"
                )
            # Content-addressed: a copy repeated after a dropped connection writes the same bytes.
            self.bucket.copy_blob(staged, self.bucket, final, retry=DEFAULT_RETRY)
        finally:
            try:
                staged.delete(retry=DEFAULT_RETRY)
            except NotFound:
                pass

    def download(self, h: str) -> dict[str, Any]:
        key = self._key(object_key(h))
        size = self._size(key)
        if size is None:
            raise NotFoundError(f"object {h} is not stored here")
        return {"url": self._sign(key, "GET"), "size": size}
