"""Run the real `studio` command in a subprocess against a temporary STUDIOML_HOME."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def studio_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    return env


def studio(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "studio", *args],
        cwd=cwd,
        env=studio_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"studio {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def studio_json(*args: str, **kw: Any) -> Any:
    proc = studio(*args, "--json", check=True, **kw)
    return json.loads(proc.stdout)


def popen_studio(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "studio", *args],
        cwd=cwd,
        env=studio_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def on_terminal(args: list[str], answer: str = "", env: dict[str, str] | None = None,
                cwd: Path | None = None, timeout: float = 60) -> tuple[int, str]:
    """Run `studio ARGS` with a pseudo-terminal as stdin/stdout/stderr; type `answer` once it asks."""
    master, slave = pty.openpty()
    full_env = {**os.environ, "COLUMNS": "120", "LINES": "40", "PAGER": "cat", "TERM": "dumb", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "studio", *args], stdin=slave, stdout=slave,
                            stderr=slave, env=full_env, close_fds=True, cwd=cwd)
    os.close(slave)
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if answer and not sent and b"[y/N]" in out:
            os.write(master, answer.encode() + b"\n")
            sent = True
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    return proc.wait(30), out.decode(errors="replace")
