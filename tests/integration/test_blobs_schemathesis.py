"""Schemathesis on the blob API (`/api/blobs`) of a server with a token, in process: with the
token no generated request produces a 5xx; without it every request is refused (4xx)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from studio.api.context import Context
from studio.config import load_settings
from studio.server.app import create_app
from studio.server.auth import Auth

TOKEN = "schema-token"
MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def blob_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    home = tmp_path_factory.mktemp("blobs") / "home"
    home.mkdir()
    ctx = Context(load_settings(environ={"STUDIOML_HOME": str(home), "STUDIOML_SERVER_TOKEN": TOKEN}))
    ctx.objects.put_bytes(b"a stored blob")
    # the in-process client calls the app "testserver": a name to allow besides loopback
    yield create_app(ctx, auth=Auth.local(ctx.settings.owner, shared_token=TOKEN, hosts=["testserver"]))
    ctx.close()


@pytest.fixture(scope="module")
def blob_schema(blob_app: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", blob_app)


schema = schemathesis.pytest.from_fixture("blob_schema").include(path_regex=r"^/api/blobs")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_with_the_token(case: Any) -> None:
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"


@schema.parametrize()
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
def test_nothing_without_the_token(case: Any) -> None:
    response = case.call()
    # 401, or a 4xx for a malformed request before any work: never an answer, never a 5xx.
    assert 400 <= response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
