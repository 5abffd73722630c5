"""The HTTP metadata store's edges: tokens, errors, servers that are not studio servers. Its
behaviour as a MetaStore is the contract suite's `http` backend."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from studio.entities import Experiment, Status
from studio.exceptions import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
    UsageError,
)
from studio.meta import open_meta_store, upgrade


@pytest.fixture
def served(tmp_path: Path, serve_store: Callable[[Path, str], tuple[str, str]]) -> tuple[str, str]:
    db = f"sqlite:///{tmp_path / 'server.db'}"
    upgrade(db)
    return serve_store(tmp_path / "home", db)


def test_errors_come_back_as_the_servers_exceptions(served: tuple[str, str]) -> None:
    url, token = served
    store = open_meta_store(url, token=token)
    store.create_experiment(Experiment(key="a", project="p", owner="o"))
    with pytest.raises(ConflictError, match="already exists"):
        store.create_experiment(Experiment(key="a", project="p", owner="o"))
    with pytest.raises(NotFoundError, match="no experiment 'zz'"):
        store.get_experiment("zz")
    with pytest.raises(ConflictError, match="not running"):
        store.set_status("a", Status.FINISHED, expect=[Status.RUNNING])
    store.close()


def test_tokens(served: tuple[str, str]) -> None:
    url, token = served
    with pytest.raises(UsageError, match="STUDIOML_API_TOKEN"):
        open_meta_store(url)
    wrong = open_meta_store(url, token="not-" + token)
    with pytest.raises(AuthenticationError, match="wrong, expired or revoked token"):
        wrong.projects()
    wrong.close()


def test_a_server_without_a_token_keeps_its_store_api_off(tmp_path: Path) -> None:
    import time

    import uvicorn

    from studio.api.context import Context
    from studio.config import load_settings
    from studio.server.app import create_app

    ctx = Context(load_settings(environ={"STUDIOML_HOME": str(tmp_path / "h")}))
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        store = open_meta_store(f"http://127.0.0.1:{port}", token="anything")
        with pytest.raises(PermissionDeniedError, match="store API is off"):
            store.projects()
        store.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        ctx.close()


@pytest.fixture
def not_studio() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_something_else_than_a_studio_server(not_studio: str) -> None:
    store = open_meta_store(not_studio, token="t")
    with pytest.raises(StoreError, match="is it a studio server"):
        store.projects()
    store.close()
    nobody = open_meta_store("http://127.0.0.1:9", token="t")  # the discard port: refused
    with pytest.raises(StoreError, match="cannot reach the studio server"):
        nobody.projects()
    nobody.close()


def test_db_commands_on_a_server_url_say_where_to_run_them(tmp_path: Path) -> None:
    from tests.e2e.helpers import studio

    proc = studio("db", "upgrade", env={"STUDIOML_HOME": str(tmp_path), "STUDIOML_DATABASE_URL": "http://127.0.0.1:9"})
    assert proc.returncode != 0 and "is a studio server: run `studio db` commands on the server itself" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_checkpoint_is_one_call_and_an_older_server_gets_it_piecewise(served: tuple[str, str]) -> None:
    import httpx

    from studio.entities import ArtifactSpec

    url, token = served
    store = open_meta_store(url, token=token)
    try:
        key = store.create_experiment(Experiment(key="k-ckpt", project="p")).key
        calls: list[str] = []
        original = httpx.Client.post

        def spy(self: httpx.Client, path: str, **kw: object) -> httpx.Response:
            calls.append(path)
            return original(self, path, **kw)  # type: ignore[arg-type]

        artifacts = [ArtifactSpec(tag="a", tree="1" * 64), ArtifactSpec(tag="b", tree="2" * 64)]
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(httpx.Client, "post", spy)
            store.put_checkpoint(key, artifacts, 1234.5)
            assert calls == ["put_checkpoint"]
            exp = store.get_experiment(key)
            assert exp.time_last_checkpoint is not None and {"a", "b"} <= set(exp.artifacts)
            # An older server answers "no store method": the calls it knows, one by one.
            calls.clear()
            mp.setattr("studio.server.api_store.METHODS", frozenset({"put_artifact", "update_experiment"}))
            store.put_checkpoint(key, [ArtifactSpec(tag="c", tree="3" * 64)], 1235.0)
            store.put_checkpoint(key, [ArtifactSpec(tag="d", tree="4" * 64)], 1236.0)
            assert calls == ["put_checkpoint", "put_artifact", "update_experiment", "put_artifact", "update_experiment"]
        assert {"c", "d"} <= set(store.get_experiment(key).artifacts)
    finally:
        store.close()
