"""Schemathesis against the dashboard's OpenAPI schema, in process: no generated request may
produce a server error (5xx). Examples per operation are bounded so the run stays short."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from studio.api.context import Context
from studio.config import load_settings
from studio.server.app import create_app
from studio.server.auth import Auth
from tests.fixtures.dashboard import populate

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    root = tmp_path_factory.mktemp("schema")
    home = root / "home"
    home.mkdir()
    ctx = Context(load_settings(environ={"STUDIOML_HOME": str(home)}))
    populate(ctx, root / "data")
    # Generated requests must not start real processes: TensorBoard is a harmless stand-in.
    stand_in = root / "tb.py"
    stand_in.write_text("import sys\n")
    app = create_app(ctx, tensorboard_command=[__import__("sys").executable, str(stand_in)],
                     auth=Auth.local(ctx.settings.owner, hosts=["testserver"]))
    yield app
    app.state.tensorboards.stop_all()
    ctx.close()


@pytest.fixture(scope="module")
def api_schema(dashboard: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", dashboard)


# Deleting and rerunning change the data the other operations read (schemathesis reuses keys
# it saw in responses), so they are covered one by one in test_server_api.py.
schema = (
    schemathesis.pytest.from_fixture("api_schema")
    .exclude(method="DELETE")
    .exclude(path_regex=r".*/(rerun|batch)$")
)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any, dashboard: FastAPI) -> None:
    # Random keys only reach the 404 branch: send most cases to real records instead.
    params = case.path_parameters or {}
    salt = hash(repr(case.query)) % 4
    if "key" in params and salt:
        params["key"] = ["exp-best", "exp-running", "exp-odd"][salt - 1]
    if "tag" in params and salt:
        params["tag"] = ["workspace", "metrics", "output"][salt - 1]
    if "name" in params and salt:
        params["name"] = "vision"
    response = case.call(headers={"X-CSRF-Token": dashboard.state.auth.csrf_for("local")})
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} {case.query}: {response.text[:500]}"
    )


def test_schema_names_every_api_route(dashboard: FastAPI, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    paths = TestClient(dashboard, base_url="http://127.0.0.1").get("/openapi.json").json()["paths"]
    for route in [
        "/api/experiments",
        "/api/status",
        "/api/experiments/{key}",
        "/api/experiments/{key}/output",
        "/api/experiments/{key}/series",
        "/api/experiments/{key}/artifacts/{tag}/file",
        "/api/experiments/{key}/artifacts/{tag}/archive",
        "/api/projects",
        "/api/users",
        "/api/compare",
        "/api/batch",
        "/api/experiments/{key}/tensorboard",
    ]:
        assert route in paths
