"""The pure parts of artifacts through a studio server: configuration, keys, part sizes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from studio.config import load_settings
from studio.exceptions import IntegrityError, UsageError
from studio.objects import backend_for_url, open_object_store
from studio.objects.backends.http import HttpBackend, hash_of
from studio.progress import Display
from studio.server.transfers import MAX_PARTS, MIN_PART, part_size_for


def test_a_client_of_a_studio_server_stores_its_objects_there(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("database:\n  type: http\n  serverUrl: https://studio.example.org\n")
    env = {"STUDIOML_HOME": str(tmp_path), "STUDIOML_API_TOKEN": "t"}
    settings = load_settings(environ=env)
    assert settings.database_url == settings.storage_url == "https://studio.example.org"
    explicit = load_settings(environ={**env, "STUDIOML_STORAGE_URL": "s3://bucket/x"})
    assert explicit.storage_url == "s3://bucket/x"  # a configured store wins
    local = load_settings(environ={"STUDIOML_HOME": str(tmp_path / "other")})
    assert local.storage_url == str(tmp_path / "other" / "objects")


def test_signed_url_lifetime_is_configurable(tmp_path: Path) -> None:
    assert load_settings(environ={"STUDIOML_HOME": str(tmp_path)}).signed_url_seconds == 900
    (tmp_path / "config.yaml").write_text("server:\n  signedUrlSeconds: 5m\n")
    assert load_settings(environ={"STUDIOML_HOME": str(tmp_path)}).signed_url_seconds == 300
    env = {"STUDIOML_HOME": str(tmp_path), "STUDIOML_SIGNED_URL_SECONDS": "30"}
    assert load_settings(environ=env).signed_url_seconds == 30


def test_http_urls_pick_the_studio_server_backend(tmp_path: Path) -> None:
    backend = backend_for_url("http://127.0.0.1:1", token="t")
    assert isinstance(backend, HttpBackend) and backend.experiment is None
    assert backend.for_experiment("k1").experiment == "k1"
    with pytest.raises(UsageError, match="STUDIOML_API_TOKEN"):
        backend_for_url("https://studio.example.org")
    store = open_object_store("http://127.0.0.1:1", tmp_path / "cache", token="t")
    scoped = store.for_experiment("k1")
    assert scoped is not store and scoped.backend.experiment == "k1"  # type: ignore[attr-defined]
    local = open_object_store(str(tmp_path / "objects"), tmp_path / "cache")
    assert local.for_experiment("k1") is local


def test_only_content_addressed_keys_are_served() -> None:
    h = hashlib.sha256(b"x").hexdigest()
    assert hash_of(f"objects/{h[:2]}/{h[2:]}") == h
    for bad in ["tmp/put-1", f"objects/{h}", f"objects/{h[:2]}/{h[2:]}/x", "../objects/ab/cd"]:
        with pytest.raises(UsageError):
            hash_of(bad)
    with pytest.raises(IntegrityError):
        hash_of("objects/zz/" + "z" * 62)


def test_parts_are_large_enough_and_few_enough() -> None:
    assert part_size_for(0) == part_size_for(1 << 30) == MIN_PART
    huge = 5 << 40  # 5 TiB, S3's largest object
    assert -(-huge // part_size_for(huge)) <= MAX_PARTS


def test_progress_is_quiet_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with Display().bar("upload", 1 << 30) as advance:
        advance(1 << 29)
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
