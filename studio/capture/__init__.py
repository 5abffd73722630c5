"""Collectors that describe an experiment's code and environment at the start of a run.

    workspace   which files of the script's directory form the `workspace` artifact
    pythonenv   interpreter version and installed distributions (pip-freeze lines)
    git         remote, branch, commit, and the uncommitted diff including untracked files
    host        OS, CPUs, RAM, GPUs, user
    cmdline     the command line as run (secrets masked: see secrets)
    secrets     what counts as a secret; masking of recorded text; secret files left out

Every collector is local (no network), fast (they run before every `studio run`) and never
raises: what cannot be read is left out, so a broken git or a strange host never stops a run.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from studio.capture.cmdline import command_line
from studio.capture.git import git_info, strip_credentials
from studio.capture.host import host_info
from studio.capture.pythonenv import installed_packages, python_version
from studio.capture.secrets import mask_text, redact_argv
from studio.capture.workspace import (
    DEFAULT_IGNORE,
    IGNORE_FILE,
    find_workspace_root,
    iter_workspace,
    workspace_ignore,
)

__all__ = [
    "DEFAULT_IGNORE",
    "IGNORE_FILE",
    "collect_environment",
    "collect_environment_in_background",
    "command_line",
    "find_workspace_root",
    "git_info",
    "host_info",
    "installed_packages",
    "iter_workspace",
    "python_version",
    "strip_credentials",
    "workspace_ignore",
]

log = logging.getLogger(__name__)


def collect_environment(script_path: Path | str) -> dict[str, Any]:
    """Everything the collectors record about a run of `script_path`, JSON-ready.

    Keys: `workspace_root`, `command_line`, `python_version`, `pythonenv` (list of lines),
    `git` (`{}` outside a repository), `host`. Git runs in a worker thread alongside the
    Python and host collectors: git's time is spent in subprocesses, so they overlap.
    """
    root = find_workspace_root(script_path)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-capture") as pool:
        git_future = pool.submit(git_info, root)
        packages = installed_packages()
        host = host_info()
        git = git_future.result()
    return {
        "workspace_root": str(root),
        "command_line": redact_argv(command_line()),
        "python_version": python_version(),
        # `pkg @ git+https://user:token@host/...` lines lose their credentials.
        "pythonenv": [mask_text(line, pairs=False) for line in packages],
        "git": git,
        "host": host,
    }


def collect_environment_in_background(script_path: Path | str) -> Future[dict[str, Any]]:
    """`collect_environment` in a daemon thread; its future's result is what that returns.

    `studio run` starts it before opening the metadata store: git's subprocesses and the
    reads of installed packages' metadata then overlap with importing SQLAlchemy and with
    capturing the workspace, instead of adding to them. A daemon thread, so a run refused
    meanwhile (bad input, a taken key) exits without waiting for git.
    """
    future: Future[dict[str, Any]] = Future()

    def work() -> None:
        try:
            future.set_result(collect_environment(script_path))
        except BaseException as exc:  # collectors never raise; this keeps a bug visible
            future.set_exception(exc)

    threading.Thread(target=work, name="studio-capture-env", daemon=True).start()
    return future
