"""TensorBoard on an experiment's `tb` artifact, started on demand on a free port.

One TensorBoard process per experiment, reused while it lives, ended when the app stops.
Launches are capped (`limits`: at most so many in all and per user): a user at their cap
replaces their oldest; a server at its cap refuses until one is stopped. Each board belongs to
whoever started it, who (or an admin) may stop it.
The log folder is the live `tb` folder of a running local experiment, else the stored tree
materialized under `$STUDIOML_HOME/cache/tb/<tree>`.
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

from studio.api.context import Context
from studio.entities import Experiment
from studio.exceptions import ConflictError, NotFoundError
from studio.server.responses import ERRORS

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/experiments", tags=["tensorboard"], responses=ERRORS)
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


class TensorBoards:
    """The TensorBoard processes this app started: experiment key -> (process, port)."""

    def __init__(self, ctx: Context, command: list[str] | None = None, limits: tuple[int, int] = (8, 2)) -> None:
        self.ctx = ctx
        self.command = command
        self.limit, self.per_user = limits
        self._running: dict[str, tuple[subprocess.Popen[bytes], int, str]] = {}
        self._lock = threading.Lock()

    def available(self) -> bool:
        return self.command is not None or tensorboard_installed()

    def owner(self, key: str) -> str | None:
        with self._lock:
            current = self._running.get(key)
        return current[2] if current is not None else None

    def stop(self, key: str) -> bool:
        with self._lock:
            current = self._running.pop(key, None)
        if current is None:
            return False
        _end(current[0])
        return True

    def start(self, exp: Experiment, host: str, user: str = "") -> int:
        """The port of a TensorBoard serving `exp`'s tb folder, starting one if needed."""
        logdir = tb_dir(self.ctx, exp)
        ended: list[subprocess.Popen[bytes]] = []
        with self._lock:
            current = self._running.get(exp.key)
            if current is not None and current[0].poll() is None:
                return current[1]
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
            cmd = [*base, "--logdir", str(logdir), "--port", str(port), "--host", host]
            proc = subprocess.Popen(  # noqa: S603 - fixed program, our own arguments
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._running[exp.key] = (proc, port, user)
        for old in ended:
            _end(old)
        log.info("started TensorBoard for %s on port %d (pid %d)", exp.key, port, proc.pid)
        return port

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


@router.post("/{key}/tensorboard", summary="Start (or find) TensorBoard on the experiment's `tb` artifact")
def tensorboard(request: Request, key: str) -> dict[str, Any]:
    """`{"available": false, "message": ...}` when TensorBoard is not installed; otherwise the
    `url` of a TensorBoard serving the experiment's `tb` folder."""
    from studio.server.api_runs import context, load, me

    boards: TensorBoards = request.app.state.tensorboards
    if not boards.available():
        return {"available": False, "message": INSTALL_HINT, "url": None}
    exp = load(context(request), key)
    user = me(request)
    from studio.server.auth import auth_of

    host = request.url.hostname or "127.0.0.1"
    if host in ("localhost", "testserver") or not host.replace(".", "").isdigit() or auth_of(request).team_mode:
        # TensorBoard has no login: a team server never exposes one beyond its own host.
        host = "127.0.0.1"
    port = boards.start(exp, host, user)
    ready = boards.wait_ready(port, host)
    return {
        "available": True, "url": f"http://{host}:{port}/", "ready": ready,
        "message": "TensorBoard is running" if ready else "TensorBoard is starting; try the link in a moment",
    }


@router.delete("/{key}/tensorboard", summary="Stop the TensorBoard of an experiment (its starter or an admin)")
def stop_tensorboard(request: Request, key: str) -> dict[str, Any]:
    from studio.server.auth import current_principal
    from studio.server.rules import authorize

    boards: TensorBoards = request.app.state.tensorboards
    started_by = boards.owner(key)
    if started_by is None:
        raise NotFoundError(f"no TensorBoard is running for experiment {key}")
    authorize(current_principal(request), "stop", owner=started_by, what=f"the TensorBoard of {key}")
    boards.stop(key)
    return {"stopped": True}
