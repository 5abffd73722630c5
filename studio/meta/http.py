"""`HttpMetaStore`: the metadata store of a `studio ui` server, for `http(s)://` database URLs.

    STUDIOML_DATABASE_URL=https://studio.example.org STUDIOML_API_TOKEN=... studio run train.py

Every MetaStore method is one POST to the server's store API (`studio.server.api_store`),
which runs it on the server's own store: the guarantees are that store's (one transaction per
call, exactly-once claims). Machines then need neither database credentials nor a route to
the database, only the server's address and its token. Needs `httpx` (``studio-experiments[remote]``).

Errors come back as the same StudioError classes the server raised; a server that cannot be
reached, or answers with something else than its store API, is a StoreError naming the URL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from studio import exceptions
from studio.entities import (
    ArtifactSpec,
    Experiment,
    ExperimentQuery,
    MetricSummary,
    Status,
    StatusEvent,
)
from studio.exceptions import StoreError, UsageError
from studio.meta import wire
from studio.meta.base import MetaStore, OutputChunk, Page

TIMEOUT_S = 60.0
RETRIES = 3  # connection failures only: a call that reached the server is never repeated
KEEPALIVE_S = 2.0


def open_http_store(url: str, *, create: bool = True, token: str | None = None) -> HttpMetaStore:
    del create  # the server's database is the server's business
    return HttpMetaStore(url, token)


class HttpMetaStore(MetaStore):
    """See the module docstring. Thread-safe (one pooled httpx client)."""

    def __init__(self, url: str, token: str | None) -> None:
        httpx = exceptions.require("httpx", "remote")
        if not token:
            raise UsageError(
                f"database {url} is a studio server: run `studio login {url}` (or set STUDIOML_API_TOKEN)"
            )
        self.url = url.rstrip("/")
        self._old_server = False  # it lacks the batched calls (put_checkpoint)
        self._client = httpx.Client(
            base_url=f"{self.url}/api/store/",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=TIMEOUT_S,
            # Drop idle connections well before the server does (uvicorn: after 5 s), or a
            # request may go out on a connection the server is closing and get no answer.
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_S),
        )

    def __repr__(self) -> str:
        return f"HttpMetaStore({self.url!r})"

    def _call(self, method: str, *args: Any, _timeout: float | None = None, **kwargs: Any) -> Any:
        import httpx

        body = wire.dumps({"args": list(args), "kwargs": kwargs})
        timeout = httpx.USE_CLIENT_DEFAULT if _timeout is None else _timeout
        for attempt in range(RETRIES + 1):
            try:
                # The server judges leases by its own clock and moves the times this client
                # records by the difference (see studio.server.api_store).
                response = self._client.post(
                    method, content=body, headers={"X-Studio-Clock": repr(time.time())}, timeout=timeout
                )
                break
            except httpx.ConnectError as exc:  # nothing reached the server: safe to retry
                if attempt == RETRIES:
                    raise StoreError(f"cannot reach the studio server at {self.url}: {exc}") from exc
                time.sleep(0.2 * 2**attempt)
            except httpx.HTTPError as exc:
                raise StoreError(f"studio server at {self.url}: {exc}") from exc
        try:
            payload = wire.loads(response.content)
        except ValueError:
            raise StoreError(
                f"{self.url} answered {response.status_code} without a store reply: is it a studio server?"
            ) from None
        if not isinstance(payload, dict):
            raise StoreError(f"{self.url} answered {response.status_code} without a store reply")
        if "error" in payload:
            cls = getattr(exceptions, str(payload["error"]), None)
            if not (isinstance(cls, type) and issubclass(cls, exceptions.StudioError)):
                cls = StoreError
            raise cls(str(payload.get("detail") or payload["error"]))
        return payload.get("result")

    # -- every method: one call ------------------------------------------------------------
    def create_experiment(self, exp: Experiment) -> Experiment:
        return self._call("create_experiment", exp)  # type: ignore[no-any-return]

    def get_experiment(self, key: str) -> Experiment:
        return self._call("get_experiment", key)  # type: ignore[no-any-return]

    def get_experiments(self, keys: Sequence[str]) -> list[Experiment]:
        return self._call("get_experiments", list(keys))  # type: ignore[no-any-return]

    def query(self, q: ExperimentQuery) -> Page:
        return self._call("query", q)  # type: ignore[no-any-return]

    def update_experiment(self, key: str, **fields: Any) -> Experiment:
        return self._call("update_experiment", key, **fields)  # type: ignore[no-any-return]

    def set_status(
        self,
        key: str,
        status: Status,
        *,
        expect: Iterable[Status] | None = None,
        reason: str | None = None,
        worker: str | None = None,
        **fields: Any,
    ) -> Experiment:
        expected = None if expect is None else [Status(x) for x in expect]
        return self._call(  # type: ignore[no-any-return]
            "set_status", key, Status(status), expect=expected, reason=reason, worker=worker, **fields
        )

    def delete_experiment(self, key: str) -> None:
        self._call("delete_experiment", key)

    def status_history(self, key: str) -> list[StatusEvent]:
        return self._call("status_history", key)  # type: ignore[no-any-return]

    def put_artifact(self, key: str, artifact: ArtifactSpec) -> None:
        self._call("put_artifact", key, artifact)

    def put_checkpoint(
        self, key: str, artifacts: Sequence[ArtifactSpec], at: float, *, fields: Mapping[str, Any] | None = None
    ) -> None:
        # One call (the server's store does it in one transaction), not one per artifact; a
        # server older than this call gets them one by one.
        if not self._old_server:
            try:
                self._call("put_checkpoint", key, list(artifacts), at, fields=dict(fields) if fields else None)
                return
            except UsageError as exc:
                if "no store method" not in str(exc):
                    raise
                self._old_server = True
        super().put_checkpoint(key, artifacts, at, fields=fields)

    def referenced_trees(self) -> set[str]:
        return set(self._call("referenced_trees"))

    def heartbeat(self, key: str, worker: str, lease_seconds: float) -> bool:
        # A heartbeat that cannot get through within a third of the lease is a failed one (the
        # caller tries again at its next beat), not a minute-long stall of the supervisor's loop
        # while the network is down; renewing a lease twice is harmless.
        wait = max(1.0, min(TIMEOUT_S, lease_seconds / 3))
        return bool(self._call("heartbeat", key, worker, lease_seconds, _timeout=wait))

    def request_stop(
        self, key: str, *, status: Status = Status.STOPPED, reason: str | None = None
    ) -> Experiment:
        return self._call("request_stop", key, status=Status(status), reason=reason)  # type: ignore[no-any-return]

    def claim(
        self, queue: str, worker: str, lease_seconds: float, resources: dict[str, Any] | None = None
    ) -> Experiment | None:
        return self._call("claim", queue, worker, lease_seconds, resources)  # type: ignore[no-any-return]

    def requeue_expired(self, max_attempts: int) -> list[str]:
        return self._call("requeue_expired", max_attempts)  # type: ignore[no-any-return]

    def queue_counts(self) -> dict[str, dict[str, int]]:
        return self._call("queue_counts")  # type: ignore[no-any-return]

    def append_output(self, key: str, attempt: int, seq: int, text: str) -> None:
        self._call("append_output", key, attempt, seq, text)

    def read_output(self, key: str, after_seq: int = -1, attempt: int | None = None) -> list[OutputChunk]:
        return self._call("read_output", key, after_seq, attempt)  # type: ignore[no-any-return]

    def put_metric_summaries(self, key: str, summaries: Sequence[MetricSummary]) -> None:
        self._call("put_metric_summaries", key, list(summaries))

    def metric_summaries(self, keys: Sequence[str]) -> dict[str, list[MetricSummary]]:
        return self._call("metric_summaries", list(keys))  # type: ignore[no-any-return]

    def put_sweep(self, project: str, state: str) -> None:
        self._call("put_sweep", project, state)

    def get_sweep(self, project: str) -> str:
        return str(self._call("get_sweep", project))

    def sweeps(self) -> list[str]:
        return self._call("sweeps")  # type: ignore[no-any-return]

    def worker_seen(self, worker: str, queue: str, state: str, experiment: str | None = None,
                    host: str = "") -> None:
        self._call("worker_seen", worker, queue, state, experiment, host)

    def worker_gone(self, worker: str) -> None:
        self._call("worker_gone", worker)

    def workers(self) -> list[dict[str, Any]]:
        return self._call("workers")  # type: ignore[no-any-return]

    def metric_extremes(self) -> dict[str, tuple[Experiment, Experiment]]:
        return self._call("metric_extremes")  # type: ignore[no-any-return]

    def projects(self) -> list[dict[str, Any]]:
        return self._call("projects")  # type: ignore[no-any-return]

    def users(self) -> list[dict[str, Any]]:
        return self._call("users")  # type: ignore[no-any-return]

    def close(self) -> None:
        self._client.close()
