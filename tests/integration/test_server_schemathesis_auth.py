"""Schemathesis against a team server (accounts) on 127.0.0.1: with a user's token no
generated request produces a server error; without a token every write, and every read,
is refused with 401 or 403 and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from studio.entities import ArtifactSpec, Experiment
from studio.meta import wire
from tests.fixtures.team_server import Team, team_servers

MAX_EXAMPLES = 10
KEYS = ["sx-mine", "sx-theirs"]


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    root: Path = tmp_path_factory.mktemp("schema-team")
    with team_servers(root) as running:
        for who, key in zip(("owner", "other"), KEYS, strict=True):
            exp = Experiment(key=key, project="p", artifacts={"workspace": ArtifactSpec(tag="workspace", tree="0" * 64)})
            with running.client(who) as c:
                assert c.post("/api/store/create_experiment", content=wire.dumps({"args": [exp], "kwargs": {}})).status_code == 200
        yield running


@pytest.fixture(scope="module")
def api_schema(team: Team) -> Any:
    raw = httpx.get(f"{team.url}/openapi.json", headers=team.headers("owner")).json()
    return schemathesis.openapi.from_dict(raw)


schema = schemathesis.pytest.from_fixture("api_schema")


def send(case: Any, team: Team, headers: dict[str, str]) -> Any:
    """The response; None when uvicorn's HTTP parser refused the bytes schemathesis made up
    (it drops the connection, or with httptools answers its own plain-text 400, as for any
    malformed request: nothing reached the application) and the server is still well."""
    import requests

    try:
        response = case.call(base_url=team.url, headers=headers)
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError):
        response = None
    if response is None or (response.status_code == 400 and response.text == "Invalid HTTP request received."):
        assert httpx.get(f"{team.url}/api/health").status_code == 200
        return None
    return response


def _aim(case: Any) -> None:
    params = case.path_parameters or {}
    salt = hash(repr(case.query)) % 3
    if "key" in params and salt:
        params["key"] = KEYS[salt - 1]


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_authenticated_no_server_errors(case: Any, team: Team) -> None:
    _aim(case)
    response = send(case, team, team.headers("owner"))
    assert response is None or response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_unauthenticated_only_401_or_403(case: Any, team: Team) -> None:
    _aim(case)
    if case.formatted_path in ("/api/health", "/api/session"):
        return  # public by design
    for headers in ({}, {"Authorization": f"Bearer {team.tokens['wrong']}"}, {"Authorization": f"Bearer {team.tokens['revoked']}"}):
        response = send(case, team, headers)
        if response is None:
            continue
        if response.status_code == 405:  # a method the route does not have (schemathesis tries TRACE...)
            assert case.method.upper() != case.operation.method.upper()
            continue
        assert response.status_code in (401, 403), f"{case.method} {case.formatted_path}: {response.status_code}"
