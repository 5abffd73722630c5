"""Accounts and the audit log on PostgreSQL (the team server's usual database), and the
`studio users` commands against it."""

from __future__ import annotations

import time

from studio.meta import open_meta_store
from studio.server.accounts import TOKEN_CACHE_S, Accounts
from studio.server.rules import Principal
from tests.e2e.helpers import studio


def test_accounts_on_postgresql(postgres_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"STUDIOML_HOME": str(tmp_path / "home"), "STUDIOML_DATABASE_URL": postgres_url}
    token = studio("users", "add", "alice", "--admin", env=env, check=True).stdout.strip()
    store = open_meta_store(postgres_url)
    try:
        accounts = Accounts.for_store(store)
        assert accounts.principal_for(token) == Principal("alice", "admin")
        studio("users", "revoke", "alice", env=env, check=True)
        # Revoked from another process: a server stops trusting it within TOKEN_CACHE_S.
        time.sleep(TOKEN_CACHE_S + 0.1)
        assert accounts.principal_for(token) is None
        accounts.record("alice", "delete", "k1", "detail")
        assert [(a["action"], a["target"]) for a in accounts.audit(limit=2)] == [("delete", "k1"), ("revoke", "alice")]
    finally:
        store.close()
    listed = studio("users", "list", "--json", env=env, check=True)
    assert '"alice"' in listed.stdout
