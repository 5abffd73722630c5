"""Who may do what on a studio server: one table, consulted by every route and store method.

    from studio.server.rules import Principal, authorize, allowed

    authorize(principal, "delete", owner=exp.owner)   # raises, or returns None
    allowed(principal, "read")                         # -> bool

The API (what other server modules use):

- ``Principal(name, role)``: who calls; ``role`` is one of ``ROLES`` (admin, user, worker,
  guest). ``None`` stands for "nobody authenticated".
- ``RULES: dict[str, Rule]``: action -> rule. ``Rule(roles, owner, public, audit)`` lets the
  ``roles`` act on anything, the record's ``owner`` act on their own records (a guest never
  owns), anybody (even unauthenticated) act when ``public``; ``audit`` marks actions written
  to the audit log (`studio audit`).
- ``allowed(principal, action, owner=None) -> bool`` and ``authorize(...)``, which raises
  `AuthenticationError` (HTTP 401) when nobody is authenticated and the rule is not public,
  else `PermissionDeniedError` (HTTP 403) naming what would be needed.
- ``STORE_METHODS``: MetaStore method -> action, for ``POST /api/store/<method>``; a method
  absent from it is not exposed (``SERVER_ONLY``).
- ``ROUTES``: (HTTP method, path template) -> action for every route that is not a plain
  read; ``route_action(method, path)`` answers for any route (GET/HEAD default to "read").

The policy (the seed's "anyone can read any experiment, and only the user who created the
experiment can delete / overwrite it"): anyone authenticated reads, guests included; users
and admins create; only the owner or an admin changes, stops, deletes or reruns a record;
a worker claims queued work and records what it runs (status, heartbeats, output, artifacts,
metric summaries) on anybody's experiments, but stops, deletes and reruns nothing that is not
its own; owner changes, garbage collection and the audit log are an admin's.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.exceptions import AuthenticationError, PermissionDeniedError

ROLES = ("admin", "user", "worker", "guest")


@dataclass(frozen=True)
class Principal:
    """Who calls: an account's name and role (admin | user | worker | guest)."""

    name: str
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}: roles are {', '.join(ROLES)}")


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str] = frozenset()
    owner: bool = False
    public: bool = False
    audit: bool = False


def _rule(*roles: str, owner: bool = False, public: bool = False, audit: bool = False) -> Rule:
    return Rule(frozenset(roles), owner, public, audit)


RULES: dict[str, Rule] = {
    "public": _rule(public=True),  # health, login, logout, static files
    "read": _rule("admin", "user", "worker", "guest"),
    "create": _rule("admin", "user"),
    "change": _rule("admin", owner=True),  # rename, tag, overwrite params and fields
    "record": _rule("admin", "worker", owner=True),  # a supervisor's writes on a run
    "stop": _rule("admin", owner=True, audit=True),
    "delete": _rule("admin", owner=True, audit=True),
    "rerun": _rule("admin", owner=True, audit=True),
    "claim": _rule("admin", "worker"),
    "maintain": _rule("admin", "user", "worker"),  # requeue lapsed leases (server's clock)
    "sweep": _rule("admin", "user"),  # sweep checkpoints
    "batch": _rule("admin", "user", "worker"),  # then each key by its own action
    "tensorboard": _rule("admin", "user"),
    "store": _rule("admin", "user", "worker", "guest"),  # then each method by STORE_METHODS
    "change-owner": _rule("admin", audit=True),
    "admin": _rule("admin"),  # garbage collection, the audit log, accounts
}

#: MetaStore method -> action. Every abstract method of MetaStore is listed (a test checks),
#: and the concrete ones `HttpMetaStore` sends as one call; methods mapped to SERVER_ONLY are
#: not callable through the store API at all.
SERVER_ONLY = "server-only"
STORE_METHODS: dict[str, str] = {
    "create_experiment": "create",  # the server sets the owner to the caller
    "get_experiment": "read",
    "get_experiments": "read",
    "query": "read",
    "update_experiment": "record",  # "change" for fields a run does not record, "change-owner" for owner
    "set_status": "record",
    "delete_experiment": "delete",
    "status_history": "read",
    "put_artifact": "record",
    "put_checkpoint": "record",  # not abstract (put_artifact each, then the time): one call over HTTP
    "referenced_trees": "admin",
    "heartbeat": "record",
    "request_stop": "stop",
    "claim": "claim",
    "requeue_expired": "maintain",
    "queue_counts": "read",
    "append_output": "record",
    "read_output": "read",
    "put_metric_summaries": "record",
    "metric_summaries": "read",
    "put_sweep": "sweep",
    "get_sweep": "read",
    "sweeps": "read",
    "projects": "read",
    "metric_extremes": "read",
    "users": "read",
    "worker_seen": "claim",  # a worker says it serves a queue (the queues page)
    "worker_gone": "claim",
    "workers": "read",
}

#: Fields of `update_experiment` a run's supervisor records (the "record" action); any other
#: field is a "change" (owner or admin), and `owner` is a "change-owner" (admin).
RECORDED_FIELDS = frozenset({
    "time_last_checkpoint", "metric_value", "returncode", "time_started", "time_finished",
    "heartbeat", "lease_expires", "worker", "attempts", "status_reason", "host",
    "python_version", "pythonenv", "python_pkgs",
})

#: (HTTP method, route path) -> action for every route that is not a plain read. A test
#: enumerates the application's routes and fails on a write route missing here.
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/api/health"): "public",
    ("GET", "/favicon.ico"): "public",
    ("GET", "/vendor/plotly.min.js"): "public",
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("POST", "/logout"): "public",
    ("GET", "/api/session"): "public",
    ("GET", "/api/audit"): "admin",
    ("GET", "/audit"): "admin",
    ("POST", "/api/experiments/{key}/stop"): "stop",
    ("DELETE", "/api/experiments/{key}"): "delete",
    ("POST", "/api/experiments/{key}/rerun"): "rerun",
    ("POST", "/api/batch"): "batch",
    ("POST", "/api/experiments/{key}/tensorboard"): "tensorboard",
    ("DELETE", "/api/experiments/{key}/tensorboard"): "tensorboard",
    ("POST", "/api/tensorboard"): "tensorboard",
    ("DELETE", "/api/tensorboard/{bid}"): "tensorboard",
    # TensorBoard's own data requests, forwarded: reads that TensorBoard's frontend makes as POSTs
    ("POST", "/tensorboard/{bid}/{path:path}"): "read",
    ("PATCH", "/api/experiments/{key}"): "change",
    # blobs (api_blobs.py): each route's hook then judges the experiment it names
    ("POST", "/api/blobs/stat"): "read",
    ("POST", "/api/blobs/downloads"): "read",
    ("POST", "/api/blobs/uploads"): "record",
    ("POST", "/api/blobs/uploads/parts"): "record",
    ("PUT", "/api/blobs/uploads/{blob_hash}"): "record",
    ("POST", "/api/blobs/uploads/complete"): "record",
    ("POST", "/api/store/{method}"): "store",
}


def route_action(method: str, path: str) -> str | None:
    """The action guarding route `path` (its template) for `method`: its ROUTES entry, else
    "read" for GET and HEAD, else None (a write route without a rule: refused)."""
    method = "GET" if method == "HEAD" else method
    action = ROUTES.get((method, path))
    if action is None and method == "GET":
        return "read"
    return action


def allowed(principal: Principal | None, action: str, owner: str | None = None) -> bool:
    rule = RULES.get(action)
    if rule is None:
        return False
    if rule.public:
        return True
    if principal is None:
        return False
    if principal.role in rule.roles:
        return True
    return rule.owner and principal.role != "guest" and owner is not None and owner == principal.name


def authorize(principal: Principal | None, action: str, owner: str | None = None, what: str = "") -> None:
    """Return if `principal` may do `action` (on a record owned by `owner`), else raise."""
    if allowed(principal, action, owner):
        return
    rule = RULES.get(action)
    if principal is None and not (rule and rule.public):
        raise AuthenticationError(
            "authentication required: log in with `studio login URL` (or send Authorization: Bearer TOKEN)"
        )
    target = f" {what}" if what else ""
    if rule is None:
        raise PermissionDeniedError(f"{action}{target} is not allowed through this server")
    who = principal.name if principal else "nobody"
    need = " or ".join(sorted(rule.roles)) or "nobody"
    if rule.owner:
        need = f"the owner{f' ({owner})' if owner else ''} or {need}"
    raise PermissionDeniedError(f"{who} may not {action}{target}: only {need} may")
