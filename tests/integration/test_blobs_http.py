"""Artifacts through a studio server (`/api/blobs`), for clients with a URL and a token only.

Real servers on 127.0.0.1: the studio app under uvicorn (in this process), in front of a
local object folder (bytes stream through the server) or the moto S3 server (presigned URLs).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from studio.exceptions import StoreError, UsageError
from studio.objects import open_object_store
from studio.objects.backends.http import HttpBackend
from studio.objects.hashing import object_key
from tests.fixtures.s3 import S3Storage

TOKEN = "blob-test-token"
KEY = "202612041000-BLOBTEST01"

Serve = Callable[..., str]


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """serve(home, storage_url, **env) -> URL of a studio server with that object store."""
    import uvicorn

    from studio.api.context import Context
    from studio.config import load_settings
    from studio.server.app import create_app

    running: list[tuple[Any, threading.Thread, Context]] = []

    def start(home: Path, storage_url: str, **env: str) -> str:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        settings = load_settings(environ={
            "STUDIOML_HOME": str(home), "STUDIOML_DATABASE_URL": f"sqlite:///{home / 'studio.db'}",
            "STUDIOML_STORAGE_URL": storage_url, "STUDIOML_SERVER_TOKEN": TOKEN, **env,
        })  # fmt: skip
        ctx = Context(settings)
        server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        running.append((server, thread, ctx))
        return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

    yield start
    for server, thread, ctx in running:
        server.should_exit = True
        thread.join(timeout=10)
        ctx.close()


def client_store(url: str, tmp_path: Path, name: str = "client", token: str = TOKEN):  # type: ignore[no-untyped-def]
    home = tmp_path / name
    return open_object_store(url, home / "blobcache", home / "statcache.db", token=token).for_experiment(KEY)


def make_tree(root: Path, big: int = 0) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(3000))
    if big:
        (root / "big.bin").write_bytes(os.urandom(big))
    return root


def same_files(a: Path, b: Path) -> None:
    for p in a.rglob("*"):
        if p.is_file():
            assert (b / p.relative_to(a)).read_bytes() == p.read_bytes(), p


def call(url: str, method: str, path: str, token: str | None = TOKEN, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"{url}/api/blobs/{path}", headers=headers, timeout=30, **kw)


# -- streaming through the server (local store) ----------------------------------------------
def test_stream_upload_download_and_dedup(serve: Serve, tmp_path: Path) -> None:
    url = serve(tmp_path / "server", str(tmp_path / "server-objects"))
    src = make_tree(tmp_path / "src", big=20 << 20)  # 3 chunks of 8 MiB
    store = client_store(url, tmp_path)
    first = store.put_tree(src)
    assert first.uploaded_files == 3 and first.files == 3
    server_objects = tmp_path / "server-objects"
    assert (server_objects / object_key(first.tree)).is_file()
    assert not list((server_objects / "tmp").iterdir())  # no half-made blob left

    again = client_store(url, tmp_path, "other-machine").put_tree(src)
    assert again.tree == first.tree and again.uploaded_files == 0  # never sent twice

    out = client_store(url, tmp_path, "reader").materialize(first.tree, tmp_path / "out")
    same_files(src, out)


def test_stream_upload_resumes_from_what_the_server_holds(serve: Serve, tmp_path: Path) -> None:
    url = serve(tmp_path / "server", str(tmp_path / "server-objects"))
    data = os.urandom(10 << 20)
    h = hashlib.sha256(data).hexdigest()
    # An earlier attempt sent the first 8 MiB, then the connection broke.
    call(url, "PUT", f"uploads/{h}", params={"offset": 0, "experiment": KEY}, content=data[: 8 << 20])
    start = call(url, "POST", "uploads", json={"hash": h, "size": len(data), "experiment": KEY}).json()
    assert start["offset"] == 8 << 20

    sent: list[int] = []
    original = httpx.Client.request

    def spy(self: httpx.Client, method: str, path: Any, **kw: Any) -> httpx.Response:
        if method == "PUT":
            sent.append(len(kw.get("content") or b""))
        return original(self, method, path, **kw)

    f = tmp_path / "blob"
    f.write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(httpx.Client, "request", spy)
        HttpBackend(url, TOKEN, experiment=KEY).put_file(f, object_key(h))
    assert sent == [len(data) - (8 << 20)]
    assert (tmp_path / "server-objects" / object_key(h)).read_bytes() == data


def test_small_blobs_go_in_one_request_once_the_client_knows_the_server_streams(serve: Serve, tmp_path: Path) -> None:
    url = serve(tmp_path / "server", str(tmp_path / "server-objects"))
    backend = HttpBackend(url, TOKEN, experiment=KEY)
    sent: list[str] = []
    original = httpx.Client.request

    def spy(self: httpx.Client, method: str, path: Any, **kw: Any) -> httpx.Response:
        sent.append(f"{method} {str(path).split('/')[0]}")
        return original(self, method, path, **kw)

    blobs = []
    for i in range(3):
        data = os.urandom(1000 + i)
        f = tmp_path / f"blob{i}"
        f.write_bytes(data)
        blobs.append((f, data, hashlib.sha256(data).hexdigest()))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(httpx.Client, "request", spy)
        for f, _, h in blobs:
            backend.for_experiment(KEY).put_file(f, object_key(h), move=True)
    # the first: begin, chunk, complete; then one request each
    assert sent == ["POST uploads", "PUT uploads", "POST uploads", "PUT uploads", "PUT uploads"]
    for f, data, h in blobs:
        assert (tmp_path / "server-objects" / object_key(h)).read_bytes() == data and not f.exists()
    assert not list((tmp_path / "server-objects" / "tmp").iterdir())
    # Wrong bytes in one request: refused, nothing stored; a stale longer staging file is cut.
    claimed = hashlib.sha256(b"the real content").hexdigest()
    call(url, "PUT", f"uploads/{claimed}", params={"offset": 0, "experiment": KEY}, content=b"x" * 100)
    answer = call(url, "PUT", f"uploads/{claimed}", params={"offset": 0, "size": 16, "experiment": KEY},
                  content=b"something else!!")  # fmt: skip
    assert answer.status_code == 422 and answer.json()["error"] == "IntegrityError"
    assert not (tmp_path / "server-objects" / object_key(claimed)).exists()
    assert not list((tmp_path / "server-objects" / "tmp").iterdir())
    answer = call(url, "PUT", f"uploads/{claimed}", params={"offset": 0, "size": 16, "experiment": KEY},
                  content=b"the real content")  # fmt: skip
    assert answer.json() == {"offset": 16, "stored": claimed}
    # ... and the one-request form needs the same rights as any upload
    refused = call(url, "PUT", f"uploads/{claimed}", token="wrong", params={"offset": 0, "size": 16, "experiment": KEY},
                   content=b"the real content")  # fmt: skip
    assert refused.status_code == 401


def test_wrong_bytes_are_refused_and_nothing_is_stored(serve: Serve, tmp_path: Path) -> None:
    url = serve(tmp_path / "server", str(tmp_path / "server-objects"))
    claimed = hashlib.sha256(b"the real content").hexdigest()
    call(url, "PUT", f"uploads/{claimed}", params={"offset": 0, "experiment": KEY}, content=b"something else!!")
    answer = call(url, "POST", "uploads/complete", json={"hash": claimed, "size": 16, "experiment": KEY})
    assert answer.status_code == 422 and answer.json()["error"] == "IntegrityError"
    assert not (tmp_path / "server-objects" / object_key(claimed)).exists()
    assert not list((tmp_path / "server-objects" / "tmp").iterdir())


def test_who_may_not_call_and_what_may_not_be_named(serve: Serve, tmp_path: Path) -> None:
    url = serve(tmp_path / "server", str(tmp_path / "server-objects"))
    h = hashlib.sha256(b"x").hexdigest()
    body = {"hash": h, "size": 1, "experiment": KEY}
    for route, method, kw in [
        ("stat", "POST", {"json": {"hashes": [h]}}),
        ("downloads", "POST", {"json": {"hashes": [h]}}),
        (h, "GET", {}),
        ("uploads", "POST", {"json": body}),
        ("uploads/parts", "POST", {"json": {**body, "upload": "x", "numbers": [1]}}),
        (f"uploads/{h}", "PUT", {"params": {"experiment": KEY}, "content": b"x"}),
        ("uploads/complete", "POST", {"json": body}),
    ]:
        # no token: 401, or 403 where a token-less POST is first refused for its missing CSRF token
        assert call(url, method, route, token=None, **kw).status_code in (401, 403), route
        assert call(url, method, route, token="wrong", **kw).status_code == 401, route
    # Writes name their experiment; keys are content hashes only, never paths.
    assert call(url, "POST", "uploads", json={"hash": h, "size": 1}).status_code == 400
    for bad in ["../../etc/passwd", "objects/ab/cd", h.upper(), h[:-1]]:
        answer = call(url, "POST", "uploads", json={"hash": bad, "size": 1, "experiment": KEY})
        assert answer.status_code == 400, bad
        assert "hash" in answer.json()["detail"]
    assert call(url, "GET", "..%2F..%2Fstudio.db").status_code in (400, 404)
    assert call(url, "POST", "downloads", json={"hashes": [h]}).json() == {"urls": {h: None}}

    with pytest.raises(UsageError, match="refused"):
        client_store(url, tmp_path, token="wrong").put_tree(make_tree(tmp_path / "src"))


def test_an_unreachable_server_is_one_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = client_store(f"http://127.0.0.1:{port}", tmp_path)
    with pytest.raises(StoreError, match="cannot reach the studio server"):
        store.put_tree(make_tree(tmp_path / "src"))


# -- presigned URLs (S3 behind the server) ----------------------------------------------------
def s3_server_env(s3_storage: S3Storage, endpoint: str | None = None, **extra: str) -> dict[str, str]:
    env = dict(s3_storage.env)
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return {**env, **extra}


def test_s3_presigned_upload_download_and_dedup(serve: Serve, tmp_path: Path, s3_storage: S3Storage) -> None:
    url = serve(tmp_path / "server", s3_storage.url, **s3_server_env(s3_storage))
    src = make_tree(tmp_path / "src", big=20 << 20)  # 3 parts of 8 MiB
    store = client_store(url, tmp_path)
    first = store.put_tree(src)
    assert first.uploaded_files == 3
    keys = s3_storage.keys()
    assert f"studio/{object_key(first.tree)}" in keys
    assert not [k for k in keys if "/tmp/" in k]  # staging keys are gone once verified
    assert client_store(url, tmp_path, "again").put_tree(src).uploaded_files == 0
    same_files(src, client_store(url, tmp_path, "reader").materialize(first.tree, tmp_path / "out"))


def test_s3_multipart_upload_resumes_after_an_interruption(
    serve: Serve, tmp_path: Path, s3_storage: S3Storage
) -> None:
    url = serve(tmp_path / "server", s3_storage.url, **s3_server_env(s3_storage))
    data = os.urandom(20 << 20)
    h = hashlib.sha256(data).hexdigest()
    # An earlier client sent part 1 of 3 and died.
    start = call(url, "POST", "uploads", json={"hash": h, "size": len(data), "experiment": KEY}).json()
    part_url = call(url, "POST", "uploads/parts",
                    json={"hash": h, "upload": start["upload"], "numbers": [1], "experiment": KEY}).json()["urls"]["1"]
    assert httpx.put(part_url, content=data[: 8 << 20]).status_code == 200
    assert "Authorization" not in part_url  # the URL is its own authority

    put_sizes: list[int] = []
    original = httpx.Client.put

    def spy(self: httpx.Client, u: Any, **kw: Any) -> httpx.Response:
        put_sizes.append(len(kw.get("content") or b""))
        return original(self, u, **kw)

    f = tmp_path / "blob"
    f.write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(httpx.Client, "put", spy)
        HttpBackend(url, TOKEN, experiment=KEY).put_file(f, object_key(h))
    assert put_sizes == [8 << 20, 4 << 20]  # parts 2 and 3 only
    body = s3_storage.server.client().get_object(Bucket=s3_storage.bucket, Key=f"studio/{object_key(h)}")["Body"]
    assert body.read() == data


def test_s3_wrong_bytes_never_become_the_object(serve: Serve, tmp_path: Path, s3_storage: S3Storage) -> None:
    url = serve(tmp_path / "server", s3_storage.url, **s3_server_env(s3_storage))
    h = hashlib.sha256(b"the real content").hexdigest()
    start = call(url, "POST", "uploads", json={"hash": h, "size": 16, "experiment": KEY}).json()
    assert httpx.put(start["url"], content=b"something else!!").status_code == 200  # one PUT: small
    answer = call(url, "POST", "uploads/complete",
                  json={"hash": h, "size": 16, "upload": start["upload"], "experiment": KEY})
    assert answer.status_code == 422
    assert s3_storage.keys() == []  # neither the object nor the staging key
    # An upload id cannot point anywhere else in the bucket.
    for forged in ["../../other:abc", "x" * 32 + ":abc"]:
        answer = call(url, "POST", "uploads/parts",
                      json={"hash": h, "upload": forged, "numbers": [1], "experiment": KEY})
        assert answer.status_code == 400


def test_an_expired_url_is_refused_by_the_storage_and_asked_again(
    serve: Serve, tmp_path: Path, s3_storage: S3Storage, expiring_s3: str
) -> None:
    url = serve(tmp_path / "server", s3_storage.url,
                **s3_server_env(s3_storage, expiring_s3, STUDIOML_SIGNED_URL_SECONDS="3"))  # fmt: skip
    src = make_tree(tmp_path / "src")
    tree = client_store(url, tmp_path).put_tree(src).tree
    h = hashlib.sha256(b"alpha\n").hexdigest()
    entry = call(url, "POST", "downloads", json={"hashes": [h]}).json()["urls"][h]
    assert httpx.get(entry["url"]).content == b"alpha\n"
    time.sleep(4.2)
    refused = httpx.get(entry["url"])
    assert refused.status_code == 403 and b"expired" in refused.content

    # A client that waited too long between getting a URL and using it asks again.
    asked: list[str] = []
    original = HttpBackend._download_url

    def slow(self: HttpBackend, blob: str) -> tuple[str, int, bool]:
        found = original(self, blob)
        asked.append(blob)
        if len(asked) == 1:
            time.sleep(4.2)
        return found

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HttpBackend, "_download_url", slow)
        out = client_store(url, tmp_path, "late-reader").materialize(tree, tmp_path / "out")
    same_files(src, out)
    assert len(asked) > len(set(asked))  # one URL was refused and renewed


def test_a_broken_download_resumes_with_a_range(serve: Serve, tmp_path: Path) -> None:
    url = serve(tmp_path / "server", str(tmp_path / "server-objects"))
    data = os.urandom(5 << 20)
    h = client_store(url, tmp_path).put_bytes(data)

    ranges: list[str | None] = []
    original_send = httpx.Client.send
    original_iter = httpx.Response.iter_bytes
    broken: list[bool] = []

    def send(self: httpx.Client, request: httpx.Request, **kw: Any) -> httpx.Response:
        if request.method == "GET":
            ranges.append(request.headers.get("range"))
        return original_send(self, request, **kw)

    def iter_bytes(self: httpx.Response, chunk_size: int | None = None) -> Iterator[bytes]:
        for i, chunk in enumerate(original_iter(self, chunk_size)):
            if i == 1 and not broken:  # the connection drops after the first MiB
                broken.append(True)
                raise httpx.ReadError("connection reset")
            yield chunk

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(httpx.Client, "send", send)
        mp.setattr(httpx.Response, "iter_bytes", iter_bytes)
        got = client_store(url, tmp_path, "reader").read_blob(h)
    assert got == data
    assert ranges[0] is None and ranges[1] == f"bytes={1 << 20}-"


def test_a_blob_relied_on_is_freshened_for_the_collector(serve: Serve, tmp_path: Path) -> None:
    url = serve(tmp_path / "server", str(tmp_path / "server-objects"))
    h = client_store(url, tmp_path).put_bytes(b"kept by reuse")
    answer = call(url, "POST", "stat", json={"hashes": [h], "freshen_after": 0, "experiment": KEY})
    assert answer.json() == {"sizes": {h: 13}}
    backend = HttpBackend(url, TOKEN, experiment=KEY)
    assert backend.freshen(object_key(h), 13, 3600.0) and not backend.freshen(object_key(h), 12, 3600.0)
    with pytest.raises(UsageError, match="studio gc"):
        backend.delete_if_older(object_key(h), time.time())


def test_blobs_confirmed_lately_are_not_asked_about_again(serve: Serve, tmp_path: Path) -> None:
    url = serve(tmp_path / "server", str(tmp_path / "server-objects"))
    backend = HttpBackend(url, TOKEN, experiment=KEY)
    data = b"content relied on by many captures"
    h = hashlib.sha256(data).hexdigest()
    other = hashlib.sha256(b"not stored").hexdigest()
    asked: list[dict[str, Any]] = []
    original = httpx.Client.request

    def spy(self: httpx.Client, method: str, path: Any, **kw: Any) -> httpx.Response:
        if str(path) == "stat":
            asked.append(kw["json"])
        return original(self, method, path, **kw)

    f = tmp_path / "blob"
    f.write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(httpx.Client, "request", spy)
        backend.put_file(f, object_key(h))
        # just stored: a capture relying on it (freshening at 60 s or more) need not ask
        assert backend.sizes([h], freshen_after=60) == {h: len(data)} and asked == []
        # one not stored is asked about, and the server freshens at half the caller's age
        assert backend.sizes([h, other], freshen_after=60) == {h: len(data), other: None}
        assert asked[-1]["hashes"] == [other] and asked[-1]["freshen_after"] == 30
        # a stricter caller, or one not freshening (plain existence), asks the server
        backend.sizes([h], freshen_after=10)
        assert asked[-1] == {"hashes": [h], "freshen_after": 5, "experiment": KEY}
        backend.sizes([h])
        assert asked[-1] == {"hashes": [h], "experiment": KEY}
        count = len(asked)
        backend.for_experiment(KEY).sizes([h], freshen_after=10)  # confirmed at 10 s just now: shared
        assert len(asked) == count
