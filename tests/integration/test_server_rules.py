"""Who may do what on a team server: every write route and every store method, called by
each kind of caller against real servers on 127.0.0.1 (tests/fixtures/team_server.py).

The expected table is written out here, not derived from `studio.server.rules`, so a change
of the rules must change this table too. "allowed" means the server did not refuse the
caller (no 401/403) and the call did what it says; "denied" means 401 without a valid
identity, 403 with one, and nothing changed.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from studio.entities import ArtifactSpec, Experiment, ExperimentQuery, MetricSummary, Status
from studio.meta import wire
from studio.meta.base import MetaStore
from studio.meta.http import HttpMetaStore
from studio.server import rules
from tests.fixtures.team_server import PRINCIPALS, Team, team_servers

READERS = {"owner", "other", "admin", "worker", "guest"}
OWNER_OR_ADMIN = {"owner", "admin"}
RECORDERS = {"owner", "admin", "worker"}
CREATORS = {"owner", "other", "admin"}
_seq = itertools.count()


def fresh_key() -> str:
    return f"k{next(_seq)}-{time.monotonic_ns()}"


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    with team_servers(tmp_path_factory.mktemp("team")) as running:
        yield running


def call(team: Team, who: str, method: str, *args: Any, **kwargs: Any) -> tuple[int, Any]:
    with team.client(who) as c:
        r = c.post(f"/api/store/{method}", content=wire.dumps({"args": list(args), "kwargs": kwargs}))
    return r.status_code, wire.loads(r.content)


def seed(team: Team, *, status: Status = Status.QUEUED, tb: Path | None = None) -> str:
    """A new experiment owned by alice (the `owner` principal), with a stored workspace."""
    key = fresh_key()
    arts = {"workspace": ArtifactSpec(tag="workspace", tree="0" * 64, mutable=False)}
    if tb is not None:
        arts["tb"] = ArtifactSpec(tag="tb", local_path=str(tb))
    code, body = call(team, "owner", "create_experiment", Experiment(key=key, project="p", owner="mallory", artifacts=arts))
    assert code == 200, body
    assert body["result"].owner == "alice"  # the server sets the owner, whatever the client sent
    if status is Status.RUNNING:
        code, body = call(team, "owner", "set_status", key, Status.RUNNING, worker="w", lease_expires=time.time() + 600)
        assert code == 200, body
    return key


# -- store methods: method -> (who may, a call on a fresh experiment `key`) --------------------
Case = Callable[[str], tuple[tuple[Any, ...], dict[str, Any]]]
STORE_CASES: dict[str, tuple[set[str], Case, Status]] = {
    "create_experiment": (CREATORS, lambda k: ((Experiment(key=fresh_key(), project="p"),), {}), Status.QUEUED),
    "get_experiment": (READERS, lambda k: ((k,), {}), Status.QUEUED),
    "get_experiments": (READERS, lambda k: (([k],), {}), Status.QUEUED),
    "query": (READERS, lambda k: ((ExperimentQuery(limit=5),), {}), Status.QUEUED),
    "update_experiment": (RECORDERS, lambda k: ((k,), {"metric_value": 1.5}), Status.QUEUED),
    "update_experiment:rename": (OWNER_OR_ADMIN, lambda k: ((k,), {"project": "renamed"}), Status.QUEUED),
    "update_experiment:owner": ({"admin"}, lambda k: ((k,), {"owner": "bob"}), Status.QUEUED),
    "set_status": (RECORDERS, lambda k: ((k, Status.RUNNING), {"worker": "w"}), Status.QUEUED),
    "set_status:owner": ({"admin"}, lambda k: ((k, Status.RUNNING), {"worker": "w", "owner": "bob"}), Status.QUEUED),
    "delete_experiment": (OWNER_OR_ADMIN, lambda k: ((k,), {}), Status.QUEUED),
    "status_history": (READERS, lambda k: ((k,), {}), Status.QUEUED),
    "put_artifact": (RECORDERS, lambda k: ((k, ArtifactSpec(tag="extra")), {}), Status.QUEUED),
    "put_checkpoint": (RECORDERS, lambda k: ((k, [ArtifactSpec(tag="extra")], time.time()), {}), Status.QUEUED),
    "referenced_trees": ({"admin"}, lambda k: ((), {}), Status.QUEUED),
    "heartbeat": (RECORDERS, lambda k: ((k, "w", 600.0), {}), Status.RUNNING),
    "request_stop": (OWNER_OR_ADMIN, lambda k: ((k,), {}), Status.RUNNING),
    "claim": ({"admin", "worker"}, lambda k: ((f"q-{k}", "w", 30.0), {}), Status.QUEUED),
    "requeue_expired": ({"owner", "other", "admin", "worker"}, lambda k: ((3,), {}), Status.QUEUED),
    "queue_counts": (READERS, lambda k: ((), {}), Status.QUEUED),
    "append_output": (RECORDERS, lambda k: ((k, 1, 0, "hello\n"), {}), Status.QUEUED),
    "read_output": (READERS, lambda k: ((k,), {}), Status.QUEUED),
    "put_metric_summaries": (RECORDERS, lambda k: ((k, [MetricSummary(key="loss", last=1.0, min=1.0, max=1.0, count=1)]), {}), Status.QUEUED),
    "metric_summaries": (READERS, lambda k: (([k],), {}), Status.QUEUED),
    "put_sweep": (CREATORS, lambda k: ((f"sweep-{k}", "{}"), {}), Status.QUEUED),
    "get_sweep": (READERS, lambda k: (("no-such-sweep",), {}), Status.QUEUED),
    "sweeps": (READERS, lambda k: ((), {}), Status.QUEUED),
    "projects": (READERS, lambda k: ((), {}), Status.QUEUED),
    "metric_extremes": (READERS, lambda k: ((), {}), Status.QUEUED),
    "users": (READERS, lambda k: ((), {}), Status.QUEUED),
    "worker_seen": ({"admin", "worker"}, lambda k: ((f"w-{k}", "q", "idle"), {}), Status.QUEUED),
    "worker_gone": ({"admin", "worker"}, lambda k: ((f"w-{k}",), {}), Status.QUEUED),
    "workers": (READERS, lambda k: ((), {}), Status.QUEUED),
}


def test_every_store_method_has_a_rule_and_a_row_here() -> None:
    abstract = {n for n, m in vars(MetaStore).items() if getattr(m, "__isabstractmethod__", False)}
    assert abstract <= set(rules.STORE_METHODS), "a MetaStore method has no rule in rules.STORE_METHODS"
    assert all(callable(getattr(MetaStore, n, None)) for n in rules.STORE_METHODS), "a rule for no MetaStore method"
    assert set(rules.STORE_METHODS) == {c.split(":")[0] for c in STORE_CASES}, "a store method is missing from this table"
    # what HttpMetaStore sends is exactly what the server exposes
    sent = {n for n in vars(HttpMetaStore) if n in rules.STORE_METHODS}
    assert sent == {n for n, a in rules.STORE_METHODS.items() if a != rules.SERVER_ONLY}
    for action in rules.STORE_METHODS.values():
        assert action == rules.SERVER_ONLY or action in rules.RULES


@pytest.mark.parametrize("case", sorted(STORE_CASES))
def test_store_method_table(team: Team, case: str) -> None:
    may, build, status = STORE_CASES[case]
    method = case.split(":")[0]
    for who in PRINCIPALS:
        key = seed(team, status=status)
        args, kwargs = build(key)
        if method == "claim":  # something to claim on this caller's own queue
            call(team, "owner", "create_experiment", Experiment(key=fresh_key(), queue=args[0]))
        code, body = call(team, who, method, *args, **kwargs)
        if who in may:
            assert code == 200 or (method == "get_sweep" and code == 404), (case, who, code, body)
        else:
            expected = 403 if who in ("owner", "other", "admin", "worker", "guest") else 401
            assert code == expected, (case, who, code, body)
            assert body["error"] in ("PermissionDeniedError", "AuthenticationError")
            after = team.ctx.meta.get_experiment(key)  # nothing changed
            assert (after.status, after.owner, after.project, after.metric_value) == (status, "alice", "p", None)


# -- routes --------------------------------------------------------------------------------
def _route_case(team: Team, route: tuple[str, str], who: str, tmp: Path) -> tuple[int, dict[str, Any], str]:
    method, path = route
    key = seed(team, status=Status.RUNNING if path.endswith("tensorboard") else Status.QUEUED, tb=tmp)
    with team.client(who) as c:
        if path == "/api/experiments/{key}/stop":
            r = c.post(f"/api/experiments/{key}/stop")
        elif path == "/api/experiments/{key}" and method == "DELETE":
            r = c.delete(f"/api/experiments/{key}")
        elif path == "/api/experiments/{key}/rerun":
            r = c.post(f"/api/experiments/{key}/rerun", json={})
        elif path == "/api/batch":
            r = c.post("/api/batch", json={"action": "stop", "keys": [key, key, key]})
        elif path == "/api/experiments/{key}/tensorboard" and method == "POST":
            r = c.post(f"/api/experiments/{key}/tensorboard")
        elif path == "/api/experiments/{key}/tensorboard" and method == "DELETE":
            with team.client("owner") as starter:
                assert starter.post(f"/api/experiments/{key}/tensorboard").status_code == 200
            r = c.delete(f"/api/experiments/{key}/tensorboard")
        elif path == "/api/store/{method}":
            r = c.post("/api/store/delete_experiment", content=wire.dumps({"args": [key], "kwargs": {}}))
        elif path == "/api/experiments/{key}" and method == "PATCH":
            r = c.patch(f"/api/experiments/{key}", json={"note": f"by {who}"})
        elif path == "/api/tensorboard" and method == "POST":
            r = c.post("/api/tensorboard", json={"keys": [key]})
        elif path in ("/api/tensorboard/{bid}", "/tensorboard/{bid}/{path:path}"):
            with team.client("owner") as starter:
                started = starter.post("/api/tensorboard", json={"keys": [key]})
                assert started.status_code == 200, started.text
                bid = started.json()["board"]
            if method == "DELETE":
                r = c.delete(f"/api/tensorboard/{bid}")
            else:  # TensorBoard's own data requests, forwarded
                r = c.post(f"/tensorboard/{bid}/data/runs", headers={"X-XSRF-Protected": "1"})
        elif path.startswith("/api/blobs/"):
            blob = hashlib.sha256(b"a blob of " + who.encode()).hexdigest()
            body: dict[str, Any] = {"hash": blob, "size": 10, "experiment": key}
            if path in ("/api/blobs/stat", "/api/blobs/downloads"):
                r = c.post(path, json={"hashes": [blob], "experiment": key})
            elif path == "/api/blobs/uploads/parts":
                r = c.post(path, json={"hash": blob, "upload": "u", "numbers": [1], "experiment": key})
            elif path == "/api/blobs/uploads/{blob_hash}":
                r = c.put(f"/api/blobs/uploads/{blob}", params={"offset": 0, "experiment": key}, content=b"0123456789")
            else:
                r = c.post(path, json=body)
        else:
            raise AssertionError(f"no case for {route}")
    try:
        body = r.json()
    except ValueError:
        body = {}
    return r.status_code, body, key


ROUTE_CASES: dict[tuple[str, str], set[str]] = {
    ("POST", "/api/experiments/{key}/stop"): OWNER_OR_ADMIN,
    ("DELETE", "/api/experiments/{key}"): OWNER_OR_ADMIN,
    ("POST", "/api/experiments/{key}/rerun"): OWNER_OR_ADMIN,
    ("POST", "/api/batch"): OWNER_OR_ADMIN,
    ("POST", "/api/experiments/{key}/tensorboard"): CREATORS,
    ("DELETE", "/api/experiments/{key}/tensorboard"): OWNER_OR_ADMIN,  # its starter (alice) or an admin
    ("POST", "/api/store/{method}"): OWNER_OR_ADMIN,  # as delete_experiment
    ("PATCH", "/api/experiments/{key}"): OWNER_OR_ADMIN,  # name, tags, note
    ("POST", "/api/tensorboard"): CREATORS,
    ("DELETE", "/api/tensorboard/{bid}"): OWNER_OR_ADMIN,  # its starter (alice) or an admin
    ("POST", "/tensorboard/{bid}/{path:path}"): READERS,  # TensorBoard's reads, forwarded
    ("POST", "/api/blobs/stat"): READERS,
    ("POST", "/api/blobs/downloads"): READERS,
    ("POST", "/api/blobs/uploads"): RECORDERS,  # the artifacts of alice's experiment
    ("POST", "/api/blobs/uploads/parts"): RECORDERS,
    ("PUT", "/api/blobs/uploads/{blob_hash}"): RECORDERS,
    ("POST", "/api/blobs/uploads/complete"): RECORDERS,
}
#: Routes whose allowed callers get the route's own answer, not necessarily 200: the stand-in
#: TensorBoard answers what it answers, a streaming server refuses S3 part URLs (400), an
#: upload of bytes that do not match their hash is refused (422). What is checked is that the
#: rules let them through (no 401/403) and stop everyone else.
OWN_ANSWER = {
    ("POST", "/tensorboard/{bid}/{path:path}"), ("POST", "/api/blobs/uploads/parts"),
    ("PUT", "/api/blobs/uploads/{blob_hash}"), ("POST", "/api/blobs/uploads/complete"),
    ("POST", "/api/blobs/uploads"),
}
PUBLIC_WRITES = {("POST", "/login"), ("POST", "/logout")}


def app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route of the application, through included routers."""
    out: set[tuple[str, str]] = set()

    def walk(routes: Any) -> None:
        for route in routes:
            if hasattr(route, "effective_route_contexts"):
                for ctx in route.effective_route_contexts():
                    original = ctx.original_route
                    for m in getattr(original, "methods", None) or ():
                        out.add((m, ctx.path))
            elif hasattr(route, "methods") and route.methods:
                for m in route.methods:
                    out.add((m, route.path))

    walk(app.routes)
    return out


def test_every_route_has_a_rule_and_every_write_route_a_row_here(team: Team) -> None:
    routes = app_routes(team.apps[0])
    assert ("DELETE", "/api/experiments/{key}") in routes and ("GET", "/api/experiments") in routes
    writes = {(m, p) for m, p in routes if m not in ("GET", "HEAD")}
    for route in routes:
        assert rules.route_action(*route) in rules.RULES, f"{route} has no rule"
    missing = writes - set(rules.ROUTES)
    assert not missing, f"write routes without an entry in rules.ROUTES: {missing}"
    assert writes - PUBLIC_WRITES == set(ROUTE_CASES), "a write route is missing from this table"


@pytest.mark.parametrize("route", sorted(ROUTE_CASES), ids=lambda r: f"{r[0]} {r[1]}")
def test_write_route_table(team: Team, route: tuple[str, str], tmp_path: Path) -> None:
    may = ROUTE_CASES[route]
    for who in PRINCIPALS:
        code, body, key = _route_case(team, route, who, tmp_path)
        if who in may:
            if route in OWN_ANSWER:
                assert code not in (401, 403) and code < 500, (route, who, code, body)
            else:
                assert code == 200, (route, who, code, body)
            if route == ("POST", "/api/batch"):
                assert [r["ok"] for r in body["results"]] == [True]  # the key once, not three times
        elif route == ("POST", "/api/batch") and who in ("other", "worker"):
            # A batch is taken from any non-guest; each key is then checked on its own.
            assert code == 200 and not body["results"][0]["ok"], (who, body)
            assert "may not stop" in body["results"][0]["detail"]
        else:
            expected = 403 if who in ("owner", "other", "admin", "worker", "guest") else 401
            assert code == expected, (route, who, code, body)
        if who not in may:
            exp = team.ctx.meta.get_experiment(key)
            assert exp.status in (Status.QUEUED, Status.RUNNING) and not exp.stop_requested, (route, who)


def test_destructive_actions_are_audited(team: Team) -> None:
    key = seed(team, status=Status.RUNNING)
    with team.client("admin") as c:
        assert c.post(f"/api/experiments/{key}/stop").status_code == 200
        assert c.post("/api/store/update_experiment", content=wire.dumps({"args": [key], "kwargs": {"owner": "bob"}})).status_code == 200
        rows = c.get("/api/audit", params={"actor": "root"}).json()["items"]
    actions = [(r["action"], r["target"]) for r in rows if r["target"] == key]
    assert ("stop", key) in actions and ("change-owner", key) in actions
    assert any(r["action"] == "revoke" and r["target"] == "carol" for r in team.accounts.audit(limit=1000))
    for who in ("owner", "worker", "guest", "none"):
        with team.client(who) as c:
            assert c.get("/api/audit").status_code in (401, 403), who
