"""The rules table, caller resolution helpers and accounts, without a server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from studio.exceptions import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UsageError,
)
from studio.server.rules import RULES, Principal, allowed, authorize, route_action

ALICE = Principal("alice", "user")
ROOT = Principal("root", "admin")
W = Principal("w", "worker")
GUEST = Principal("guest", "guest")


def test_owner_rules() -> None:
    for action in ("stop", "delete", "rerun", "change"):
        assert allowed(ALICE, action, owner="alice") and allowed(ROOT, action, owner="alice")
        assert not allowed(ALICE, action, owner="bob") and not allowed(W, action, owner="bob")
        assert not allowed(GUEST, action, owner="guest")  # a guest owns nothing
        assert not allowed(None, action, owner=None)
    assert allowed(W, "record", owner="bob") and allowed(W, "claim") and not allowed(ALICE, "claim")
    assert allowed(GUEST, "read") and not allowed(GUEST, "create") and not allowed(None, "read")
    assert allowed(None, "public") and not allowed(ROOT, "no-such-action")
    assert allowed(ROOT, "change-owner") and not allowed(ALICE, "change-owner", owner="alice")


def test_authorize_says_who_may() -> None:
    with pytest.raises(AuthenticationError, match="studio login"):
        authorize(None, "read")
    with pytest.raises(PermissionDeniedError, match=r"alice may not delete experiment k: only the owner \(bob\) or admin"):
        authorize(ALICE, "delete", owner="bob", what="experiment k")
    authorize(ALICE, "delete", owner="alice")


def test_route_actions() -> None:
    assert route_action("GET", "/api/experiments") == "read"
    assert route_action("HEAD", "/api/experiments") == "read"
    assert route_action("DELETE", "/api/experiments/{key}") == "delete"
    assert route_action("GET", "/api/audit") == "admin"
    assert route_action("PUT", "/api/anything-new") is None  # a write route without a rule
    assert all(a in RULES for a in __import__("studio.server.rules", fromlist=["ROUTES"]).ROUTES.values())
    with pytest.raises(ValueError):
        Principal("x", "superuser")


def test_host_names() -> None:
    from studio.server.auth import host_name

    assert host_name("Example.org:5000") == "example.org"
    assert host_name("[::1]:5000") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"


def test_accounts(tmp_path: Path) -> None:
    from studio.meta import open_meta_store
    from studio.server.accounts import Accounts, token_hash

    store = open_meta_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        accounts = Accounts.for_store(store)
        assert not accounts.has_users()
        token = accounts.add_user("alice", "user")
        assert accounts.principal_for(token) == ALICE
        assert accounts.principal_for(token + "x") is None and accounts.principal_for("") is None
        raw = (tmp_path / "db.sqlite").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("db.sqlite-*"))
        assert token.encode() not in raw and token_hash(token).encode() in raw  # only the hash is kept
        with pytest.raises(ConflictError):
            accounts.add_user("alice")
        with pytest.raises(UsageError):
            accounts.add_user("bad name")
        with pytest.raises(UsageError):
            accounts.add_user("x", "superuser")
        with pytest.raises(NotFoundError):
            accounts.revoke("nobody", "t")
        short = accounts.add_user("brief", "worker", expires_in=0.3)
        assert accounts.principal_for(short) == Principal("brief", "worker")
        time.sleep(0.4)
        assert accounts.principal_for(short) is None  # expired
        with pytest.raises(UsageError, match="positive"):
            accounts.add_user("never", expires_in=0)
        new = accounts.rotate("alice", "root")
        assert accounts.principal_for(token) is None and accounts.principal_for(new) == ALICE
        accounts.revoke("alice", "root")
        assert accounts.principal_for(new) is None
        assert [(u["name"], u["revoked"] is not None) for u in accounts.users()] == [("alice", True), ("brief", False)]
        assert [(a["actor"], a["action"], a["target"]) for a in accounts.audit()] == [
            ("root", "revoke", "alice"), ("root", "rotate", "alice"),
        ]
    finally:
        store.close()


def test_a_verified_token_is_trusted_for_at_most_the_cache_time(tmp_path: Path) -> None:
    from studio.meta import open_meta_store
    from studio.server.accounts import Accounts, token_hash

    store = open_meta_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        server = Accounts.for_store(store)  # the server's
        cli = Accounts(server._tx.engine)  # `studio users revoke`, another process
        token = cli.add_user("alice", "user")
        assert server.cached(token_hash(token)) is None
        assert server.principal_for(token) == ALICE and server.cached(token_hash(token)) == ALICE
        cli.revoke("alice", "root")
        assert server.principal_for(token) == ALICE  # trusted for up to TOKEN_CACHE_S more
        time.sleep(1.1)
        assert server.principal_for(token) is None and server.cached(token_hash(token)) is None
        # a revocation through the same Accounts (the server's own process) counts at once
        again = server.rotate("alice", "root")
        assert server.principal_for(again) == ALICE
        server.revoke("alice", "root")
        assert server.principal_for(again) is None
        # a token is never trusted past its own expiry
        brief = server.add_user("brief", "user", expires_in=0.3)
        assert server.principal_for(brief) == Principal("brief", "user")
        time.sleep(0.4)
        assert server.principal_for(brief) is None
    finally:
        store.close()


def test_a_checkpoints_fields_are_judged_as_update_experiment_judges_them() -> None:
    from studio.server.api_store import _action

    assert _action("put_checkpoint", ["k", [], 1.0], {}) == "record"
    assert _action("put_checkpoint", ["k", [], 1.0], {"fields": {"time_last_checkpoint": 2.0}}) == "record"
    assert _action("put_checkpoint", ["k", [], 1.0], {"fields": {"git": {"commit": "x"}}}) == "change"
    assert _action("put_checkpoint", ["k", [], 1.0], {"fields": {"owner": "mallory"}}) == "change-owner"
    with pytest.raises(UsageError):
        _action("put_checkpoint", ["k", [], 1.0], {"fields": ["owner"]})
