"""TensorBoard on one or several experiments' `tb` artifacts, served under the dashboard's own
address (`/tensorboard/<board>/`), so it works wherever the dashboard does: behind a reverse
proxy, through an SSH tunnel, on a machine whose other ports are closed.

One TensorBoard process per set of experiments (the board id is a hash of their keys), started
on demand on a free loopback port with `--path_prefix /tensorboard/<board>`, reused while it
lives, ended when the app stops; the dashboard forwards `/tensorboard/<board>/...` to it.
Several runs are one TensorBoard with `--logdir_spec key1:dir1,key2:dir2` (runs named by key).
Launches are capped (`limits`: at most so many in all and per user): a user at their cap
replaces their oldest; a server at its cap refuses until one is stopped. Each board belongs to
whoever started it, who (or an admin) may stop it.
A run's log folder is the live `tb` folder of a running local experiment, else the stored tree
unpacked in the local tree cache (`studio.objects.cache`).
"""

from __future__ import annotations

import importlib.util
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from studio.api.context import Context
from studio.entities import Experiment
from studio.exceptions import ConflictError, NotFoundError, StoreError
from studio.server.responses import ERRORS

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/experiments", tags=["tensorboard"], responses=ERRORS)
runs_router = APIRouter(prefix="/api", tags=["tensorboard"], responses=ERRORS)
proxy = APIRouter(include_in_schema=False)
INSTALL_HINT = "TensorBoard is not installed: run `pip install tensorboard`"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def tensorboard_installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def tb_dir(ctx: Context, exp: Experiment) -> Path:
    art = exp.artifacts.get("tb")
    if art is None:
        raise NotFoundError(f"experiment {exp.key} has no `tb` artifact")
    local = Path(art.local_path) if art.local_path else None
    if local is not None and local.is_dir() and (not art.tree or not exp.status.terminal):
        return local
    if art.tree:
        from studio.runner.materialize import cached_tree

        out = cached_tree(ctx, art.tree)
        return out if out.is_dir() else out.parent
    if local is not None and local.is_dir():
        return local
    raise NotFoundError(f"experiment {exp.key} has no TensorBoard files yet (its `tb` folder is empty)")


def board_id(keys: list[str]) -> str:
    import hashlib

    return hashlib.sha256(",".join(sorted(keys)).encode()).hexdigest()[:16]


class TensorBoards:
    """The TensorBoard processes this app started: board id -> (process, port)."""

    def __init__(self, ctx: Context, command: list[str] | None = None, limits: tuple[int, int] = (8, 2)) -> None:
        self.ctx = ctx
        self.command = command
        self.limit, self.per_user = limits
        self._running: dict[str, tuple[subprocess.Popen[bytes], int, str]] = {}
        self._lock = threading.Lock()

    def available(self) -> bool:
        return self.command is not None or tensorboard_installed()

    def owner(self, bid: str) -> str | None:
        with self._lock:
            current = self._running.get(bid)
        return current[2] if current is not None else None

    def stop(self, bid: str) -> bool:
        with self._lock:
            current = self._running.pop(bid, None)
        if current is None:
            return False
        _end(current[0])
        return True

    def start(self, exps: list[Experiment], host: str = "127.0.0.1", user: str = "") -> tuple[str, int]:
        """(board id, port) of a TensorBoard serving the `tb` folders of `exps`, starting one if
        needed. It listens on loopback only: the dashboard forwards to it."""
        dirs = {e.key: tb_dir(self.ctx, e) for e in exps}
        bid = board_id(list(dirs))
        ended: list[subprocess.Popen[bytes]] = []
        with self._lock:
            current = self._running.get(bid)
            if current is not None and current[0].poll() is None:
                return bid, current[1]
            self._running = {k: v for k, v in self._running.items() if v[0].poll() is None}
            mine = [k for k, v in self._running.items() if v[2] == user]
            while mine and len(mine) >= self.per_user:  # dicts keep order: the oldest first
                ended.append(self._running.pop(mine.pop(0))[0])
            if len(self._running) >= self.limit:
                raise ConflictError(
                    f"{len(self._running)} TensorBoards are running, the most this server starts: "
                    "stop one (DELETE /api/experiments/KEY/tensorboard) or try later"
                )
            port = free_port(host)
            base = self.command or [sys.executable, "-m", "tensorboard.main"]
            if len(dirs) == 1:
                logs = ["--logdir", str(next(iter(dirs.values())))]
            else:  # keys are letters, digits, _ - and .: never the spec's `:` or `,`
                logs = ["--logdir_spec", ",".join(f"{k}:{d}" for k, d in sorted(dirs.items()))]
            cmd = [*base, *logs, "--port", str(port), "--host", host, "--path_prefix", f"/tensorboard/{bid}"]
            proc = subprocess.Popen(  # noqa: S603 - fixed program, our own arguments
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._running[bid] = (proc, port, user)
        for old in ended:
            _end(old)
        log.info("started TensorBoard %s for %s on port %d (pid %d)", bid, ", ".join(dirs), port, proc.pid)
        return bid, port

    def port(self, bid: str) -> int | None:
        with self._lock:
            current = self._running.get(bid)
        return current[1] if current is not None and current[0].poll() is None else None

    def wait_ready(self, port: int, host: str, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.2)
        return False

    def stop_all(self) -> None:
        with self._lock:
            running, self._running = self._running, {}
        for proc, _, _ in running.values():
            if proc.poll() is None:
                proc.terminate()
        for proc, _, _ in running.values():
            _end(proc)


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


MAX_BOARD_RUNS = 50


def open_board(request: Request, keys: list[str]) -> dict[str, Any]:
    from studio.server.api_runs import context, load, me

    boards: TensorBoards = request.app.state.tensorboards
    if not boards.available():
        return {"available": False, "message": INSTALL_HINT, "url": None}
    ctx = context(request)
    exps = [load(ctx, k) for k in dict.fromkeys(keys)]
    # TensorBoard has no login: it listens on loopback only, reached through this server.
    bid, port = boards.start(exps, "127.0.0.1", me(request))
    ready = boards.wait_ready(port, "127.0.0.1")
    return {
        "available": True, "url": f"/tensorboard/{bid}/", "ready": ready, "board": bid,
        "message": "TensorBoard is running" if ready else "TensorBoard is starting; try the link in a moment",
    }


@router.post("/{key}/tensorboard", summary="Start (or find) TensorBoard on the experiment's `tb` artifact")
def tensorboard(request: Request, key: str) -> dict[str, Any]:
    """`{"available": false, "message": ...}` when TensorBoard is not installed; otherwise the
    `url` (under this server: `/tensorboard/<board>/`) of a TensorBoard on the experiment's
    `tb` folder."""
    return open_board(request, [key])


@router.delete("/{key}/tensorboard", summary="Stop the TensorBoard of an experiment (its starter or an admin)")
def stop_tensorboard(request: Request, key: str) -> dict[str, Any]:
    return stop_board(request, board_id([key]), f"the TensorBoard of {key}")


def stop_board(request: Request, bid: str, what: str) -> dict[str, Any]:
    from studio.server.auth import current_principal
    from studio.server.rules import authorize

    boards: TensorBoards = request.app.state.tensorboards
    started_by = boards.owner(bid)
    if started_by is None:
        raise NotFoundError(f"no {what} is running")
    authorize(current_principal(request), "stop", owner=started_by, what=what)
    boards.stop(bid)
    return {"stopped": True}


class BoardRequest(BaseModel):
    keys: list[str] = Field(min_length=1, max_length=MAX_BOARD_RUNS)


@runs_router.post("/tensorboard", summary="Start (or find) one TensorBoard over several experiments")
def tensorboard_many(request: Request, body: BoardRequest) -> dict[str, Any]:
    """One TensorBoard with every run's `tb` folder (runs named by key); 404 names a run
    without one."""
    return open_board(request, body.keys)


@runs_router.delete("/tensorboard/{bid}", summary="Stop a TensorBoard (its starter or an admin)")
def stop_tensorboard_board(request: Request, bid: str) -> dict[str, Any]:
    return stop_board(request, bid, f"TensorBoard {bid}")


#: Response headers passed back from TensorBoard (hop-by-hop and encoding ones are not).
PASSED = ("content-type", "cache-control", "etag", "last-modified", "location", "content-disposition")


@proxy.get("/tensorboard/{bid}")
def board_root(bid: str) -> Response:
    return RedirectResponse(f"/tensorboard/{bid}/")


@proxy.api_route("/tensorboard/{bid}/{path:path}", methods=["GET", "HEAD", "POST"])
async def forward(request: Request, bid: str, path: str) -> Response:
    """Everything under `/tensorboard/<board>/`, forwarded to that TensorBoard."""
    import httpx

    boards: TensorBoards = request.app.state.tensorboards
    port = boards.port(bid)
    if port is None:
        raise NotFoundError(f"no TensorBoard {bid} runs here (it stops with `studio ui`): "
                            "open it again from the experiment's page")
    url = f"http://127.0.0.1:{port}/tensorboard/{bid}/{path}"
    headers = {k: v for k, v in request.headers.items() if k.lower() in ("accept", "content-type", "x-xsrf-protected")}
    async with httpx.AsyncClient(timeout=60) as client:
        try:
            r = await client.request(request.method, url, params=list(request.query_params.multi_items()),
                                     content=await request.body(), headers=headers)
        except httpx.HTTPError as exc:
            raise StoreError(f"TensorBoard {bid} did not answer: {exc}") from None
    return Response(r.content, status_code=r.status_code,
                    headers={k: v for k, v in r.headers.items() if k.lower() in PASSED})
