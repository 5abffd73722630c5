"""Experiments: the table page, one experiment, live status, output tail, and actions.

The table asks for one page (server-side filter, sort and paging: one query plus one query
for the page's metric summaries), then polls `/api/status` with the keys it shows; upstream
polled once per row and did not scale past a few hundred runs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from typing import Any, Literal

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, Field

from studio.api import experiments as exps
from studio.api.context import Context
from studio.api.query_parser import parse_filter, parse_sort
from studio.entities import Experiment, ExperimentQuery, Status
from studio.exceptions import ConflictError, NotFoundError, StudioError, UsageError
from studio.keys import check_key, new_key
from studio.server.auth import auth_of, current_principal
from studio.server.responses import (
    ERRORS,
    command_line,
    experiment_row,
    note_html,
    status_row,
    summary_dict,
)
from studio.server.rules import RULES, Principal, authorize

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["experiments"], responses=ERRORS)

MAX_KEYS = 500
MAX_BATCH = 100  # keys per /api/batch request: each may stop a process or queue a run
DEFAULT_RERUN_QUEUE = "default"
REFRESH_EVERY = 5.0  # seconds between lease sweeps triggered by reads
DELETE_WAIT = 10.0  # seconds a delete waits for a running experiment to stop


def context(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


def me(request: Request) -> str:
    """The caller's name: whose experiments "mine" lists."""
    who = current_principal(request)
    return who.name if who else ""


def audit(request: Request, who: Principal | None, action: str, target: str, detail: str | None = None) -> None:
    """Record a destructive action in the audit log (servers with accounts keep one)."""
    accounts = auth_of(request).accounts
    if accounts is not None and RULES[action].audit:
        accounts.record(who.name if who else "?", action, target, detail)


def refresh(request: Request) -> None:
    """Mark experiments whose supervisor vanished (a write), at most every few seconds."""
    state = request.app.state
    now = time.monotonic()
    if now - getattr(state, "last_refresh", -REFRESH_EVERY) >= REFRESH_EVERY:
        state.last_refresh = now
        exps.refresh_lost(context(request))


def load(ctx: Context, key: str) -> Experiment:
    """The experiment `key`; NotFoundError for unknown or impossible keys."""
    try:
        check_key(key)
    except UsageError:
        raise NotFoundError(f"no experiment {key!r}: keys are letters, digits, '_', '-' and '.'") from None
    try:
        return ctx.meta.get_experiment(key)
    except NotFoundError:
        raise NotFoundError(f"no experiment {key!r}; it may have been deleted") from None


def split_keys(keys: str | list[str]) -> list[str]:
    items = keys.split(",") if isinstance(keys, str) else keys
    out = [k.strip() for k in items if k.strip()]
    if len(out) > MAX_KEYS:
        raise UsageError(f"at most {MAX_KEYS} keys per request, got {len(out)}")
    return out


def parse_statuses(text: str | None) -> tuple[Status, ...]:
    if not text:
        return ()
    chosen = []
    for word in text.split(","):
        word = word.strip().lower()
        if not word:
            continue
        try:
            chosen.append(Status(word))
        except ValueError:
            names = ", ".join(s.value for s in Status)
            raise UsageError(f"unknown status {word!r}; statuses are {names}") from None
    return tuple(chosen)


def build_query(
    ctx: Context, me: str, scope: str, project: str | None, owner: str | None, status: str | None,
    text: str | None, filter: str | None, sort: str | None, limit: int, offset: int,
) -> ExperimentQuery:
    if scope == "mine":
        owner = me
    q = ExperimentQuery(
        project=project or None, owner=owner or None, status=parse_statuses(status),
        text=text.strip() if text and text.strip() else None, order_by=parse_sort(sort),
        limit=limit, offset=offset,
    )
    return parse_filter(filter).apply(q)


def param_columns(rows: list[dict[str, Any]], most: int = 8) -> list[str]:
    """The params worth a column: those most rows of the page have."""
    counts: dict[str, int] = {}
    for row in rows:
        for name in row["params"]:
            counts[name] = counts.get(name, 0) + 1
    return sorted(counts, key=lambda n: (-counts[n], n))[:most]


@router.get("/experiments", summary="One page of experiments (filtered, sorted, paged in the database)")
def list_experiments(
    request: Request,
    scope: Literal["all", "mine"] = "all",
    project: str | None = Query(None, max_length=255),
    owner: str | None = Query(None, max_length=255),
    status: str | None = Query(None, max_length=200, description="Comma-separated statuses"),
    text: str | None = Query(None, max_length=500, description="Substring of key, script or project"),
    filter: str | None = Query(None, max_length=4000, description="e.g. `lr < 0.01 and status = finished`"),
    sort: str | None = Query(None, max_length=300, description="Column, params.x or metrics.x; `-` descends"),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> dict[str, Any]:
    ctx = context(request)
    q = build_query(ctx, me(request), scope, project, owner, status, text, filter, sort, limit, offset)
    refresh(request)
    page = ctx.meta.query(q)
    summaries = ctx.meta.metric_summaries([e.key for e in page.items]) if page.items else {}
    rows = [experiment_row(e, summaries.get(e.key)) for e in page.items]
    metric_names = sorted({name for r in rows for name in r["metrics"]})
    return {
        "items": rows, "total": page.total, "offset": offset, "limit": limit, "sort": q.order_by,
        "param_columns": param_columns(rows), "metric_columns": metric_names[:8], "owner": me(request),
    }


@router.get("/status", summary="Status of several experiments at once (the table's live updates)")
def statuses(request: Request, keys: str = Query("", max_length=100_000, description="Comma-separated keys")) -> dict[str, Any]:
    ctx = context(request)
    wanted = split_keys(keys)
    refresh(request)
    found = ctx.meta.get_experiments(wanted) if wanted else []
    return {"statuses": {e.key: status_row(e) for e in found}, "missing": sorted(set(wanted) - {e.key for e in found})}


@router.get("/experiments/{key}", summary="Everything recorded about one experiment")
def show(request: Request, key: str) -> dict[str, Any]:
    ctx = context(request)
    exp = load(ctx, key)
    refresh(request)
    data = exps.show(ctx, exp.key)
    data["command"] = command_line(exp)
    data["note_html"] = note_html(data["note"])
    data["metrics"] = {s.key: summary_dict(s) for s in ctx.meta.metric_summaries([key]).get(key, [])}
    return data


@router.get("/experiments/{key}/output", summary="Output (stdout and stderr) after a sequence number")
def output(
    request: Request,
    key: str,
    after_seq: int = Query(-1, ge=-1, le=2**62),
    attempt: int | None = Query(None, ge=0, le=1_000_000),
    max_chars: int = Query(200_000, ge=1, le=10_000_000),
) -> dict[str, Any]:
    """New output since `after_seq`. A first read (`after_seq=-1`) of a long log returns its
    last `max_chars` characters with `truncated: true`."""
    ctx = context(request)
    exp = load(ctx, key)
    chunks = ctx.meta.read_output(key, after_seq=after_seq, attempt=attempt)
    text = "".join(c.text for c in chunks)
    truncated = len(text) > max_chars
    if truncated:
        text = text[-max_chars:]
    return {
        "text": text, "last_seq": chunks[-1].seq if chunks else after_seq,
        "attempt": chunks[-1].attempt if chunks else attempt, "truncated": truncated,
        "status": exp.status.value, "terminal": exp.status.terminal,
    }


class Annotation(BaseModel):
    """What a person writes about a run; fields left out stay as they are."""

    name: str | None = Field(None, max_length=200, description="Display name; '' restores the default")
    note: str | None = Field(None, max_length=100_000, description="Markdown")
    tags: list[str] | None = Field(None, max_length=50, description="The whole tag list")
    add_tags: list[str] = Field(default_factory=list, max_length=50)
    remove_tags: list[str] = Field(default_factory=list, max_length=50)


@router.patch("/experiments/{key}", summary="Set a run's display name, tags or markdown note")
def annotate(request: Request, key: str, body: Annotation) -> dict[str, Any]:
    from studio.api.annotate import annotate as annotate_

    ctx, who = context(request), current_principal(request)
    old = load(ctx, key)
    authorize(who, "change", owner=old.owner, what=f"experiment {key}")
    exp = annotate_(ctx, old.key, name=body.name, note=body.note, tags=body.tags,
                    add_tags=body.add_tags, remove_tags=body.remove_tags)
    return {**experiment_row(exp), "note": exp.note, "note_html": note_html(exp.note)}


class ActionResult(BaseModel):
    key: str
    ok: bool
    detail: str = ""
    status: str | None = None
    new_key: str | None = None


class Batch(BaseModel):
    action: Literal["stop", "delete", "rerun"]
    keys: list[str] = Field(min_length=1, max_length=MAX_BATCH)


class RerunRequest(BaseModel):
    queue: str | None = Field(None, max_length=255, description="Submit to this queue instead of running here")


def do_stop(request: Request, key: str) -> ActionResult:
    ctx, who = context(request), current_principal(request)
    old = load(ctx, key)
    authorize(who, "stop", owner=old.owner, what=f"experiment {key}")
    exp = exps.stop(ctx, old.key)
    if exp.status != old.status or exp.stop_requested != old.stop_requested:
        audit(request, who, "stop", key, f"was {old.status.value}")
    detail = "stopping" if not exp.status.terminal else f"already {exp.status.value}"
    if exp.status == Status.STOPPED:
        detail = "stopped"
    return ActionResult(key=key, ok=True, detail=detail, status=exp.status.value)


def do_delete(request: Request, key: str) -> ActionResult:
    ctx, who = context(request), current_principal(request)
    old = load(ctx, key)
    authorize(who, "delete", owner=old.owner, what=f"experiment {key}")
    exps.kill(ctx, old.key, timeout=DELETE_WAIT)
    audit(request, who, "delete", key, f"owner {old.owner}, project {old.project}, was {old.status.value}")
    return ActionResult(key=key, ok=True, detail="deleted")


def do_rerun(request: Request, key: str, queue: str | None = None) -> ActionResult:
    """Queue a copy for a worker. Only a single-user `studio ui` (no accounts) may instead run
    it in a background `studio rerun` process on its own machine, which is the user's; a team
    server never runs user code in its process or on its host."""
    from studio.api.rerun import clone

    ctx, who = context(request), current_principal(request)
    old = load(ctx, key)
    authorize(who, "rerun", owner=old.owner, what=f"experiment {key}")
    ws = old.artifacts.get("workspace")
    if ws is None or not ws.tree:
        raise NotFoundError(f"experiment {key} has no stored workspace to rerun")
    if auth_of(request).team_mode and not queue:
        queue = old.queue or DEFAULT_RERUN_QUEUE
    if queue:
        exp = clone(ctx, key, queue=queue, owner=who.name if who else None)
        audit(request, who, "rerun", key, f"as {exp.key} on queue {queue}")
        return ActionResult(key=key, ok=True, detail=f"queued on {queue}", status=exp.status.value, new_key=exp.key)
    nk = new_key()
    cmd = [sys.executable, "-m", "studio", "rerun", key, "--experiment", nk]
    if ctx.settings.config_path is not None:
        cmd += ["--config", str(ctx.settings.config_path)]
    env = dict(os.environ, STUDIOML_HOME=str(ctx.settings.home))
    log_dir = ctx.settings.experiment_dir(nk)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "rerun.log", "ab") as log_file:
        subprocess.Popen(  # noqa: S603 - our own CLI, arguments are validated keys
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=str(log_dir),
        )
    return ActionResult(key=key, ok=True, detail="started", status=Status.QUEUED.value, new_key=nk)


ACTIONS = {"stop": do_stop, "delete": do_delete, "rerun": do_rerun}


@router.post("/experiments/{key}/stop", summary="Ask a running experiment to stop; a queued one stops at once")
def stop(request: Request, key: str) -> ActionResult:
    return do_stop(request, key)


@router.delete("/experiments/{key}", summary="Delete an experiment (stopping it first if it runs)")
def delete(request: Request, key: str) -> ActionResult:
    return do_delete(request, key)


@router.post("/experiments/{key}/rerun", summary="Queue the same stored workspace and args as a new experiment")
def rerun(request: Request, key: str, body: RerunRequest | None = Body(None)) -> ActionResult:
    return do_rerun(request, key, body.queue if body else None)


@router.post("/batch", summary="Stop, delete or rerun up to 100 experiments; one result per distinct key")
def batch(request: Request, body: Batch) -> dict[str, list[ActionResult]]:
    results = []
    # Each key once: a repeated key would stop, delete or rerun the same experiment again.
    for key in dict.fromkeys(split_keys(body.keys)):
        try:
            results.append(ACTIONS[body.action](request, key))
        except StudioError as exc:
            results.append(ActionResult(key=key, ok=False, detail=str(exc)))
    return {"results": results}


@router.get("/queues", summary="Experiments per queue and status, and the workers serving each", tags=["lists"])
def queues(request: Request) -> dict[str, Any]:
    """`queues`: queue -> status -> count; `workers`: the live workers; `served`: queue ->
    how many live workers serve it (0 for a queue nobody serves)."""
    from studio.queue.admin import list_queues

    infos = list_queues(context(request))
    return {
        "queues": {q.name: dict(q.counts) for q in infos if q.counts},
        "workers": [w for q in infos for w in q.workers],
        "served": {q.name: len(q.workers) for q in infos},
    }


__all__ = ["router", "load", "context", "ConflictError"]
