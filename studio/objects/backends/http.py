"""`HttpBackend`: the object store of a studio server, for clients holding only a URL and a token.

    STUDIOML_DATABASE_URL=https://studio.example.org STUDIOML_API_TOKEN=... studio run train.py

When the metadata store is a studio server and no storage is configured, the server is the
object store too (`Settings.storage_url` defaults to the database URL). The bytes move as
the server says (`studio.server.api_blobs`):

- with S3 (or GCS, signed with a service-account key) behind the server: straight to and
  from the bucket with short-lived presigned URLs
  the server issues after checking the caller's rights. Uploads go in parts to a staging key;
  the server verifies the hash of the assembled object before it becomes `objects/<hash>`,
  so no client can store wrong bytes under a hash. An interrupted upload resumes: the server
  lists the parts already there and the client sends only the others. A URL that expired
  meanwhile (the storage answers 403) is asked for again;
- with a local store (or any store the server cannot sign URLs for): through the server, in
  chunks at an offset, resumed from the size the server already holds; once the client knows
  the server streams, a small blob (up to 4 MiB) goes in one request, stored at once;
- downloads resume with HTTP ranges, and the ObjectStore verifies every blob it reads.

Content addressing is kept: before sending anything the client asks whether the server has
the blob (`sizes`), so a blob the store already holds is never sent again.

The token goes only to the studio server, never to the storage's presigned URLs. Garbage
collection and listing are the server's business (`studio gc` runs there).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from studio import exceptions
from studio.exceptions import IntegrityError, NotFoundError, StoreError, UsageError
from studio.objects.backends.base import ObjectBackend
from studio.objects.hashing import check_hash
from studio.progress import DISPLAY

log = logging.getLogger(__name__)

TIMEOUT_S = 120.0
KEEPALIVE_S = 2.0
CONNECT_RETRIES = 4  # a connection that failed before reaching anyone: wait and try again
URL_RENEWALS = 3  # a presigned URL refused by the storage (expired): ask the server again
STAT_BATCH = 1000
SMALL_UPLOAD = 4 << 20  # to a streaming server, a blob up to this size goes in one request
KNOWN_BLOBS = 100_000  # blobs remembered as stored (see HttpBackend.sizes)
UPLOADED_TRUST = 60.0  # a blob just stored counts as confirmed for captures freshening at >= 60 s


def hash_of(key: str) -> str:
    """`objects/ab/cdef...` -> `abcdef...`; anything else is not an object this backend serves."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "objects":
        raise UsageError(f"{key!r} is not an object key; a studio server stores only content-addressed objects")
    return check_hash(parts[1] + parts[2])


class HttpBackend(ObjectBackend):
    """Objects of the studio server at `url` (see the module docstring). Thread-safe.

    `experiment` names the experiment whose artifacts this handle reads or writes; the server
    authorizes each request for it (`for_experiment` makes such a handle). Writes need one.
    """

    def __init__(self, url: str, token: str | None, *, experiment: str | None = None, _shared: Any = None) -> None:
        if not token:
            raise UsageError(
                f"storage {url} is a studio server: set STUDIOML_API_TOKEN (or `database: token:`) to its token"
            )
        self.url = url.rstrip("/")
        self.experiment = experiment
        self._token = token
        if _shared is None:
            httpx = exceptions.require("httpx", "remote")
            # Idle connections are dropped before the server drops them (see meta/http.py).
            limits = httpx.Limits(keepalive_expiry=KEEPALIVE_S)
            api = httpx.Client(
                base_url=f"{self.url}/api/blobs/",
                headers={"Authorization": f"Bearer {token}"},
                timeout=TIMEOUT_S,
                limits=limits,
            )
            # Presigned URLs carry their own authority: this client never sends the token.
            storage = httpx.Client(timeout=TIMEOUT_S, follow_redirects=False, limits=limits)
            _shared = (api, storage, {}, {})
        self._shared = _shared
        # `_learned["mode"]`: how the server took the last upload ("stream" or "s3");
        # `_known`: blob hash -> (size, trusted until, for freshen_after up to), see `sizes`
        self._api, self._storage, self._learned, self._known = _shared
        self._bars = DISPLAY  # per-blob bars on a terminal

    def __repr__(self) -> str:
        return f"HttpBackend({self.url!r}, experiment={self.experiment!r})"

    def for_experiment(self, key: str) -> HttpBackend:
        return HttpBackend(self.url, self._token, experiment=key, _shared=self._shared)

    # -- talking to the server -------------------------------------------------------------
    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        for attempt in range(CONNECT_RETRIES + 1):
            try:
                response = self._api.request(method, path, **kwargs)
                break
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                # Every blob request is idempotent (content-addressed; uploads resume), so one
                # that a closing or overloaded server dropped is simply sent again.
                if attempt == CONNECT_RETRIES:
                    raise StoreError(
                        f"cannot reach the studio server at {self.url}: {exc}; check the URL and that it runs"
                    ) from exc
                time.sleep(0.2 * 2**attempt)
            except httpx.HTTPError as exc:
                raise StoreError(f"studio server at {self.url}: {exc}") from exc
        return self._answer(response)

    def _answer(self, response: Any) -> Any:
        if response.status_code < 400:
            return response.json() if response.headers.get("content-type", "").startswith("application/json") else None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or "detail" not in payload:
            raise StoreError(f"{self.url} answered {response.status_code} without a studio reply: is it a studio server?")
        detail = str(payload["detail"])
        if response.status_code in (401, 403):
            raise UsageError(f"the studio server at {self.url} refused the request: {detail}")
        cls = getattr(exceptions, str(payload.get("error")), None)
        if not (isinstance(cls, type) and issubclass(cls, exceptions.StudioError)):
            cls = StoreError
        raise cls(detail)

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, json={**body, "experiment": self.experiment})

    # -- reading ---------------------------------------------------------------------------
    def sizes(self, hashes: Sequence[str], freshen_after: float | None = None) -> dict[str, int | None]:
        """The stored size of each blob, None for those the server lacks: one request per
        thousand hashes, so a capture asks once what it needs to send. With `freshen_after`,
        the server also freshens each stored blob older than that many seconds (the caller
        relies on it instead of sending it, so a concurrent `studio gc` must spare it).

        With `freshen_after`, a blob this process stored or had confirmed (and freshened)
        within the last `freshen_after / 2` seconds is not asked about again: the server is
        asked to freshen at half that age, so such a blob is never older than `freshen_after`
        when relied on (the collector's rule holds), and a worker's many captures of the
        same trees cost no round trip each."""
        found: dict[str, int | None] = {}
        ask = list(hashes)
        if freshen_after is not None:
            ask = []
            now = time.monotonic()
            for h in hashes:
                known = self._known.get(h)
                if known is not None and known[1] > now and known[2] <= freshen_after:
                    found[h] = known[0]
                else:
                    ask.append(h)
        for i in range(0, len(ask), STAT_BATCH):
            body: dict[str, Any] = {"hashes": ask[i : i + STAT_BATCH]}
            if freshen_after is not None:
                body["freshen_after"] = freshen_after / 2
            answer = self._post("stat", body)
            got = {h: (None if s is None else int(s)) for h, s in answer["sizes"].items()}
            found.update(got)
            if freshen_after is not None:
                for h, size in got.items():
                    if size is not None:
                        self._remember(h, size, freshen_after)
        return found

    def _remember(self, h: str, size: int, freshen_after: float) -> None:
        """Blob `h` is stored and at most `freshen_after / 2` old now (see `sizes`)."""
        if len(self._known) >= KNOWN_BLOBS:
            self._known.clear()
        self._known[h] = (size, time.monotonic() + freshen_after / 2, freshen_after)

    def size(self, key: str) -> int | None:
        h = hash_of(key)
        return self.sizes([h]).get(h)

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def freshen(self, key: str, size: int | None, older_than: float) -> bool:
        """True if the server stores `key` (with `size` bytes, when given); the server
        freshens it if it is older than `older_than` seconds."""
        h = hash_of(key)
        found = self.sizes([h], freshen_after=older_than).get(h)
        return found is not None and (size is None or found == size)

    def get_file(self, key: str, local_path: Path) -> None:
        h = hash_of(key)
        with open(local_path, "wb") as out:
            self._download(h, out)

    def open(self, key: str) -> BinaryIO:
        out = tempfile.TemporaryFile()
        try:
            self._download(hash_of(key), out)  # type: ignore[arg-type]
        except BaseException:
            out.close()
            raise
        out.seek(0)
        return out  # type: ignore[return-value]

    def _download_url(self, h: str) -> tuple[str, int, bool]:
        answer = self._post("downloads", {"hashes": [h]})
        entry = answer["urls"].get(h)
        if entry is None:
            raise NotFoundError(f"object {h} is not in store {self.url}")
        url = str(entry["url"])
        direct = url.startswith(("http://", "https://"))
        if not direct:  # served by the studio server itself: a path on it
            url = f"{self.url}/{url.lstrip('/')}"
        return url, int(entry["size"]), direct

    def _download(self, h: str, out: BinaryIO) -> None:
        """Write blob `h` to `out`, resuming with a Range request after a broken connection
        and asking for a new URL when the storage refuses an expired one."""
        import httpx

        url, size, direct = self._download_url(h)
        done = 0
        renewals = failures = 0
        with self._bars.bar(f"download {h[:12]}", size) as advance:
            while done < size or size == 0:
                headers = {"Range": f"bytes={done}-"} if done else {}
                client = self._storage if direct else self._api
                try:
                    with client.stream("GET", url, headers=headers) as response:
                        if response.status_code in (401, 403) and direct and renewals < URL_RENEWALS:
                            renewals += 1  # expired (or revoked) signature: ask the server again
                            url, size, direct = self._download_url(h)
                            continue
                        if response.status_code >= 400:
                            response.read()
                            if direct:
                                raise StoreError(
                                    f"storage refused the download of {h[:12]} ({response.status_code}); "
                                    "run the command again"
                                )
                            self._answer(response)
                        if done and response.status_code != 206:
                            out.seek(0)
                            out.truncate()
                            done = 0
                        for chunk in response.iter_bytes(1 << 20):
                            out.write(chunk)
                            done += len(chunk)
                            advance(len(chunk))
                except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
                    failures += 1
                    if failures > CONNECT_RETRIES:
                        raise StoreError(f"download of {h[:12]} from {self.url} kept failing: {exc}") from exc
                    time.sleep(0.2 * 2**failures)
                    continue
                if size == 0:
                    break
            if done != size:
                raise IntegrityError(f"object {h} from {self.url}: got {done} bytes of {size}")

    # -- writing ---------------------------------------------------------------------------
    def put_file(self, local_path: Path, key: str, *, move: bool = False) -> None:
        h = hash_of(key)
        size = os.stat(local_path).st_size
        if self._learned.get("mode") == "stream" and size <= SMALL_UPLOAD and self._put_whole(h, size, local_path):
            self._remember(h, size, UPLOADED_TRUST)
            if move:
                os.unlink(local_path)
            return
        for _attempt in range(URL_RENEWALS + 1):
            start = self._post("uploads", {"hash": h, "size": size})
            if start.get("present"):
                break
            self._learned["mode"] = start["mode"]
            try:
                if start["mode"] == "stream":
                    self._stream_upload(h, size, local_path, int(start["offset"]), int(start["part_size"]))
                else:
                    self._part_upload(h, size, local_path, start)
            except _Renew:
                continue
            self._post("uploads/complete", {"hash": h, "size": size, "upload": start.get("upload"),
                                            "parts": start.get("_etags")})  # fmt: skip
            break
        else:
            raise StoreError(f"upload of {h[:12]} to {self.url} did not complete; run the command again")
        self._remember(h, size, UPLOADED_TRUST)
        if move:
            os.unlink(local_path)

    def _put_whole(self, h: str, size: int, path: Path) -> bool:
        """A small blob to a streaming server in one request (the server stores it at once);
        False if the server did not (an older server, or a broken connection): then the
        caller goes the long way, which resumes from what the server holds."""
        import httpx

        data = path.read_bytes()
        if len(data) != size:
            return False
        try:
            answer = self._request(
                "PUT", f"uploads/{h}", params={"offset": 0, "size": size, "experiment": self.experiment or ""},
                content=data, headers={"Content-Type": "application/octet-stream"},
            )  # fmt: skip
        except StoreError as exc:
            if isinstance(exc.__cause__, httpx.TransportError):
                return False
            raise
        return bool(answer.get("stored"))

    def _stream_upload(self, h: str, size: int, path: Path, offset: int, chunk: int) -> None:
        import httpx

        failures = 0
        with open(path, "rb") as src, self._bars.bar(f"upload {h[:12]}", size, offset) as advance:
            while offset < size:
                src.seek(offset)
                data = src.read(min(chunk, size - offset))
                try:
                    answer = self._request(
                        "PUT", f"uploads/{h}", params={"offset": offset, "experiment": self.experiment or ""},
                        content=data, headers={"Content-Type": "application/octet-stream"},
                    )  # fmt: skip
                except StoreError as exc:
                    if not isinstance(exc.__cause__, httpx.TransportError) or failures >= CONNECT_RETRIES:
                        raise
                    failures += 1  # resume from what the server holds
                    answer = self._post("uploads", {"hash": h, "size": size})
                    if answer.get("present"):
                        return
                    offset = int(answer["offset"])
                    continue
                advance(int(answer["offset"]) - offset)
                offset = int(answer["offset"])

    def _part_upload(self, h: str, size: int, path: Path, start: dict[str, Any]) -> None:
        """Send the parts the storage lacks with presigned URLs; record every part's ETag in
        `start["_etags"]` for the server to assemble."""
        if start.get("url"):  # one PUT of the whole blob (small on S3; any size on GCS)
            with self._bars.bar(f"upload {h[:12]}", size) as advance:
                self._put_part(str(start["url"]), path, size)
                advance(size)
            return
        part_size = int(start["part_size"])
        count = max(1, -(-size // part_size))
        etags: dict[int, str] = {int(p["number"]): str(p["etag"]) for p in start.get("parts_done") or []}
        todo = [n for n in range(1, count + 1) if n not in etags]
        done_bytes = sum(min(part_size, size - (n - 1) * part_size) for n in etags)
        with open(path, "rb") as src, self._bars.bar(f"upload {h[:12]}", size, done_bytes) as advance:
            while todo:
                batch = todo[:100]
                urls = self._post("uploads/parts", {"hash": h, "upload": start["upload"], "numbers": batch})["urls"]
                for n in batch:
                    src.seek((n - 1) * part_size)
                    data = src.read(min(part_size, size - (n - 1) * part_size))
                    etags[n] = self._put_part(str(urls[str(n)]), data)
                    todo.remove(n)
                    advance(len(data))
        start["_etags"] = [{"number": n, "etag": etags[n]} for n in sorted(etags)]

    def _put_part(self, url: str, data: bytes | Path, size: int = 0) -> str:
        """PUT `data` (bytes, or `size` bytes of a file, streamed) to a presigned URL; its ETag."""
        import httpx

        for attempt in range(CONNECT_RETRIES + 1):
            try:
                if isinstance(data, Path):
                    with open(data, "rb") as src:
                        response = self._storage.put(url, content=_chunks(src), headers={"Content-Length": str(size)})
                else:
                    response = self._storage.put(url, content=data)
            except httpx.TransportError as exc:
                if attempt == CONNECT_RETRIES:
                    raise StoreError(f"cannot reach the storage behind {self.url}: {exc}") from exc
                time.sleep(0.2 * 2**attempt)
                continue
            if response.status_code in (401, 403):
                log.info("storage refused a presigned URL (%s): asking for a new one", response.status_code)
                raise _Renew()
            if response.status_code >= 400:
                raise StoreError(f"storage refused an upload part ({response.status_code}): {response.text[:200]}")
            return str(response.headers.get("etag", ""))
        raise AssertionError("unreachable")

    # -- the server's business -------------------------------------------------------------
    def delete(self, key: str) -> None:
        raise UsageError(f"objects of {self.url} are deleted by the server: run `studio gc` on the server")

    def delete_if_older(self, key: str, cutoff: float) -> bool:
        raise UsageError(f"objects of {self.url} are deleted by the server: run `studio gc` on the server")

    def walk(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        raise UsageError(f"objects of {self.url} are listed by the server: run `studio gc` on the server")


def _chunks(src: BinaryIO) -> Iterator[bytes]:
    while chunk := src.read(1 << 20):
        yield chunk


class _Renew(Exception):
    """The storage refused a presigned URL: start over with fresh ones (parts already sent stay)."""


