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

import copy
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from studio.capture.cmdline import command_line
from studio.capture.git import git_info, repository_state, strip_credentials
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
    "start_environment",
    "static_environment",
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


def collect_environment(script_path: Path | str, cache_dir: Path | None = None) -> dict[str, Any]:
    """Everything the collectors record about a run of `script_path`, JSON-ready.

    Keys: `workspace_root`, `command_line`, `python_version`, `pythonenv` (list of lines),
    `git` (`{}` outside a repository), `host`. Git runs in a worker thread alongside the
    Python and host collectors: git's time is spent in subprocesses, so they overlap.
    `cache_dir` (`$STUDIOML_HOME/cache`): where the host's boot-stable facts are kept
    (`studio.capture.host`).
    """
    root = find_workspace_root(script_path)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-capture") as pool:
        git_future = pool.submit(git_info, root)
        packages = installed_packages(cache_dir)
        host = host_info(cache_dir)
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


def collect_environment_in_background(script_path: Path | str, cache_dir: Path | None = None) -> Future[dict[str, Any]]:
    """`collect_environment` in a daemon thread; its future's result is what that returns.

    `studio run` starts it before opening the metadata store: git's subprocesses and the
    reads of installed packages' metadata then overlap with importing SQLAlchemy and with
    capturing the workspace, instead of adding to them. A daemon thread, so a run refused
    meanwhile (bad input, a taken key) exits without waiting for git.
    """
    future: Future[dict[str, Any]] = Future()

    def work() -> None:
        try:
            future.set_result(collect_environment(script_path, cache_dir))
        except BaseException as exc:  # collectors never raise; this keeps a bug visible
            future.set_exception(exc)

    threading.Thread(target=work, name="studio-capture-env", daemon=True).start()
    return future


# -- repeated experiments in one process (workbook.new_experiment in a loop, a notebook) -------
_lock = threading.Lock()
_host: dict[str, Any] | None = None
#: workspace root -> (repository_state, workspace tree hash, git_info)
_git_seen: dict[str, tuple[Any, str | None, dict[str, Any]]] = {}


def host_once(cache_dir: Path | None = None) -> dict[str, Any]:
    """`host_info()` collected once per process (the machine does not change under it)."""
    global _host
    with _lock:
        if _host is None:
            _host = host_info(cache_dir)
        return dict(_host)


def static_environment(cache_dir: Path | None = None) -> dict[str, Any]:
    """What `start_environment(..., reuse=True)` records that does not depend on the files:
    `command_line`, `python_version`, `pythonenv`, `host` (each read once per process)."""
    return {
        "command_line": command_line(),
        "python_version": python_version(),
        "pythonenv": installed_packages(cache_dir),
        "host": host_once(cache_dir),
    }


def forget_environment() -> None:
    """Drop what `start_environment(..., reuse=True)` remembered (tests; after a `git config`)."""
    global _host
    with _lock:
        _host = None
        _git_seen.clear()


class PendingEnvironment:
    """`collect_environment` started early; `result(workspace_tree)` waits for it."""

    def __init__(self, script_path: Path | str, reuse: bool, cache_dir: Path | None = None) -> None:
        self.root = find_workspace_root(script_path)
        self.reuse = reuse
        self.cache_dir = cache_dir
        self.state: Any = None
        self._git: Future[dict[str, Any]] | None = None
        self._full: Future[dict[str, Any]] | None = None
        if not reuse:
            self._full = collect_environment_in_background(script_path, cache_dir)
            return
        self.state = repository_state(self.root)
        seen = _git_seen.get(str(self.root))
        if (
            self.state is None
            or seen is None
            or seen[0] != self.state
            or (self.state[0] == "git" and self.state[1] != str(self.root))
        ):
            self._git = _in_thread(git_info, self.root)

    def result(self, workspace_tree: str | None = None) -> dict[str, Any]:
        if self._full is not None:
            return self._full.result()
        key = str(self.root)
        if self._git is not None:
            git = self._git.result()
        else:
            state, tree, git = _git_seen[key]
            # Outside a repository the work tree does not matter; inside one, unstaged edits
            # change no fingerprint, so the files must be the same too: only when the
            # workspace is the whole work tree (its root) and its tree hash is unchanged.
            same_files = state[0] == "none" or (
                state[1] == key and tree is not None and tree == workspace_tree
            )
            if not same_files:
                git = git_info(self.root)
        if self.state is not None:
            _git_seen[key] = (self.state, workspace_tree, git)
        return {"workspace_root": key, **static_environment(self.cache_dir), "git": copy.deepcopy(git)}


def start_environment(script_path: Path | str, *, reuse: bool = False, cache_dir: Path | None = None) -> PendingEnvironment:
    """Collect the environment of a run of `script_path` while the caller captures the
    workspace. With `reuse` (repeated experiments in one process), the host and installed
    packages are read once per process and git's state is reused while the repository's
    fingerprint (`studio.capture.git.repository_state`: HEAD, refs, index, config) and, when
    the workspace is the repository's root, the workspace's tree hash are unchanged;
    otherwise git runs as for any run. `cache_dir`: see `collect_environment`."""
    return PendingEnvironment(script_path, reuse, cache_dir)


def _in_thread(fn: Any, *args: Any) -> Future[Any]:
    future: Future[Any] = Future()

    def work() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=work, name="studio-capture-git", daemon=True).start()
    return future
