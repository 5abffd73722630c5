"""A team server's accounts and audit log, in the server's own SQL database (migration 0007).

    accounts = Accounts.for_store(ctx.meta)          # the SQL store `studio server` serves
    token = accounts.add_user("alice", "user")       # shown once; only its SHA-256 is stored
    accounts.principal_for(token)                    # Principal("alice", "user") or None
    accounts.record("alice", "delete", key)          # the audit log of destructive actions

Tokens are 256 random bits (`secrets.token_urlsafe`), so a plain SHA-256 is a sound verifier
(no salt or slow hash is needed for high-entropy secrets; those protect guessable passwords).
Lookup is by hash, then the stored hash is compared again with `hmac.compare_digest`.
Revoking a user disables all of their tokens at once; `rotate` revokes every token of a user
and issues a new one; a token may expire (`--expires 90d`). A server trusts a verified token
for up to `TOKEN_CACHE_S` (1 s) before asking the database again, so a token revoked from
another process (`studio users revoke`) stops working within that second. Imports neither
FastAPI nor anything else heavy: the `studio users` commands use it on the server machine.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from typing import Any

from sqlalchemy import Engine, insert, or_, select, update

from studio.exceptions import ConflictError, NotFoundError, UsageError
from studio.meta.base import MetaStore
from studio.meta.sql.engine import Transactions
from studio.meta.sql.tables import AUDIT, TOKENS, USERS
from studio.server.rules import Principal

#: Roles a stored account may have (a guest is whoever calls a `--guest` server without a token).
ACCOUNT_ROLES = ("admin", "user", "worker")
TOKEN_PREFIX = "studio_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise UsageError(
            f"bad user name {name!r}: use up to 64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit"
        )
    return name


def sql_engine(meta: MetaStore) -> Engine:
    """The SQLAlchemy engine under `meta` (a SQL store, or the SQLite fast path over one)."""
    from studio.meta.lite import LiteSqliteStore
    from studio.meta.sql.store import SqlMetaStore

    store: Any = meta
    if isinstance(store, LiteSqliteStore):
        store = store._full_store()
    if not isinstance(store, SqlMetaStore):
        raise UsageError(
            f"accounts live in the server's own database, not in {meta!r}: "
            "run `studio users` and `studio server` with a sqlite:// or postgresql:// database URL"
        )
    return store.engine


def _expiry(now: float, expires_in: float | None) -> float | None:
    if expires_in is None:
        return None
    if expires_in <= 0:
        raise UsageError("a token's lifetime must be positive, e.g. --expires 90d")
    return now + expires_in


#: A verified token is trusted this long before the database is asked again: a server then
#: costs no query per request, and a revoked token stops working within this time.
TOKEN_CACHE_S = 1.0
TOKEN_CACHE_SIZE = 10_000


class Accounts:
    """Users, token hashes and the audit log (see the module docstring). Thread-safe."""

    def __init__(self, engine: Engine, cache_seconds: float = TOKEN_CACHE_S) -> None:
        self._tx = Transactions(engine)
        self._cache_seconds = cache_seconds
        self._verified: dict[str, tuple[Principal, float]] = {}  # token hash -> (who, until)
        self._cache_lock = threading.Lock()

    @classmethod
    def for_store(cls, meta: MetaStore) -> Accounts:
        return cls(sql_engine(meta))

    # -- users -----------------------------------------------------------------------------
    def add_user(self, name: str, role: str = "user", expires_in: float | None = None) -> str:
        """Create `name` with `role` and return its first token (the only time it is seen),
        valid for `expires_in` seconds (None: until revoked)."""
        check_name(name)
        if role not in ACCOUNT_ROLES:
            raise UsageError(f"unknown role {role!r}: use one of {', '.join(ACCOUNT_ROLES)}")
        token = new_token()

        def add(s: Any) -> None:
            if s.execute(select(USERS.c.name).where(USERS.c.name == name)).first() is not None:
                raise ConflictError(
                    f"user {name!r} exists: give them a new token with `studio users rotate {name}`"
                )
            now = time.time()
            s.execute(insert(USERS).values(name=name, role=role, created=now, revoked=None))
            s.execute(insert(TOKENS).values(hash=token_hash(token), user_name=name, created=now,
                                            expires=_expiry(now, expires_in)))

        self._tx.write(add)
        return token

    def users(self) -> list[dict[str, Any]]:
        def read(s: Any) -> list[dict[str, Any]]:
            rows = s.execute(select(USERS).order_by(USERS.c.name)).mappings().all()
            live = {
                user: (created, expires)
                for user, created, expires in s.execute(
                    select(TOKENS.c.user_name, TOKENS.c.created, TOKENS.c.expires).where(TOKENS.c.revoked.is_(None))
                ).all()
            }
            return [
                {"name": r["name"], "role": r["role"], "created": r["created"], "revoked": r["revoked"],
                 "token_created": live.get(r["name"], (None, None))[0],
                 "token_expires": live.get(r["name"], (None, None))[1]}
                for r in rows
            ]

        return self._tx.read(read)

    def _user(self, s: Any, name: str) -> Any:
        row = s.execute(select(USERS).where(USERS.c.name == name)).mappings().first()
        if row is None:
            raise NotFoundError(f"no user {name!r}: list users with `studio users list`")
        return row

    def revoke(self, name: str, actor: str) -> None:
        """Disable `name` and every token of theirs (at once, on the next request)."""

        def revoke(s: Any) -> None:
            self._user(s, name)
            now = time.time()
            s.execute(update(USERS).where(USERS.c.name == name).values(revoked=now))
            s.execute(
                update(TOKENS).where(TOKENS.c.user_name == name, TOKENS.c.revoked.is_(None)).values(revoked=now)
            )
            self._record(s, actor, "revoke", name, "user and all tokens revoked")

        self._tx.write(revoke)
        self._forget_verified()

    def rotate(self, name: str, actor: str, expires_in: float | None = None) -> str:
        """Revoke every token of `name` and return a new one (re-enables a revoked user)."""
        token = new_token()

        def rotate(s: Any) -> None:
            self._user(s, name)
            now = time.time()
            s.execute(
                update(TOKENS).where(TOKENS.c.user_name == name, TOKENS.c.revoked.is_(None)).values(revoked=now)
            )
            s.execute(update(USERS).where(USERS.c.name == name).values(revoked=None))
            s.execute(insert(TOKENS).values(hash=token_hash(token), user_name=name, created=now,
                                            expires=_expiry(now, expires_in)))
            self._record(s, actor, "rotate", name, "old tokens revoked, new token issued")

        self._tx.write(rotate)
        self._forget_verified()
        return token

    def principal_for(self, token: str) -> Principal | None:
        """The live account holding `token`; None for an unknown or revoked token."""
        if not token or len(token) > 512:
            return None
        return self.principal_for_hash(token_hash(token))

    def cached(self, digest: str) -> Principal | None:
        """The account verified for this token hash within the last TOKEN_CACHE_S, or None."""
        with self._cache_lock:
            found = self._verified.get(digest)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def _forget_verified(self) -> None:
        with self._cache_lock:
            self._verified.clear()

    def principal_for_hash(self, digest: str) -> Principal | None:
        """As `principal_for`, from the token's hash (a browser session keeps only that)."""
        who = self.cached(digest)
        if who is not None:
            return who
        now = time.time()

        def read(s: Any) -> Any:
            return s.execute(
                select(TOKENS.c.hash, USERS.c.name, USERS.c.role, TOKENS.c.expires)
                .join(USERS, USERS.c.name == TOKENS.c.user_name)
                .where(
                    TOKENS.c.hash == digest, TOKENS.c.revoked.is_(None), USERS.c.revoked.is_(None),
                    or_(TOKENS.c.expires.is_(None), TOKENS.c.expires > now),
                )
            ).first()

        row = self._tx.read(read)
        if row is None or not hmac.compare_digest(str(row[0]), digest):
            return None
        who = Principal(str(row[1]), str(row[2]))
        if self._cache_seconds > 0:
            # Never trusted past the token's own expiry.
            expires = row[3] if row[3] is not None else float("inf")
            until = time.monotonic() + min(self._cache_seconds, expires - now)
            with self._cache_lock:
                if len(self._verified) >= TOKEN_CACHE_SIZE:
                    self._verified.clear()
                self._verified[digest] = (who, until)
        return who

    def has_users(self) -> bool:
        return self._tx.read(lambda s: s.execute(select(USERS.c.name).limit(1)).first() is not None)

    # -- audit -----------------------------------------------------------------------------
    @staticmethod
    def _record(s: Any, actor: str, action: str, target: str, detail: str | None) -> None:
        s.execute(
            insert(AUDIT).values(time=time.time(), actor=actor, action=action, target=target[:255], detail=detail)
        )

    def record(self, actor: str, action: str, target: str, detail: str | None = None) -> None:
        """Append one entry to the audit log: who did what to which record, now."""
        self._tx.write(lambda s: self._record(s, actor, action, target, detail))

    def audit(self, limit: int = 100, actor: str | None = None, action: str | None = None) -> list[dict[str, Any]]:
        """The newest `limit` audit entries, newest first."""

        def read(s: Any) -> list[dict[str, Any]]:
            stmt = select(AUDIT).order_by(AUDIT.c.id.desc()).limit(limit)
            if actor:
                stmt = stmt.where(AUDIT.c.actor == actor)
            if action:
                stmt = stmt.where(AUDIT.c.action == action)
            return [dict(r) for r in s.execute(stmt).mappings().all()]

        return self._tx.read(read)
