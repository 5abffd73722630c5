"""Git state of the code an experiment ran: remote, branch, commit and the uncommitted diff.

The diff is one patch text, relative to the repository root, that `git apply` replays on a
checkout of `commit` (or on an empty repository when there is no commit yet). It holds every
uncommitted change against HEAD, staged or not, *including untracked files that are not
ignored*: those are added as intent-to-add entries to a throw-away copy of the index
(`GIT_INDEX_FILE`), so the real index is never touched. Binary files, text that is not UTF-8,
untracked files over the cap and nested repositories are left out of the patch and listed in
`diff_skipped`; a patch over `MAX_DIFF_BYTES` stops at the last whole file that fits and sets
`diff_truncated`. Secret files (`.env`, private keys, ...; see `studio.capture.secrets`) are
left out too, unless `.studioml_ignore` re-includes them, and listed in `diff_secrets_left_out`;
values of secret-named environment variables and URL passwords in the patch read `***`.

Everything here is local (no fetch, no prompt, no optional index locks) and never raises: a
directory outside any repository, or a machine without git, gives `{}`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from studio.capture.secrets import is_secret_file, mask_text, secret_values

log = logging.getLogger(__name__)

MAX_DIFF_BYTES = 10 * 1024 * 1024
TIMEOUT = 10.0  # seconds per git command; a pathological repo must not stall a run
_EMPTY_TREE = {
    40: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    64: "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
}
# Settings that would change the patch format away from what `git apply` expects.
_DIFF_CONFIG = (
    "-c", "diff.noprefix=false",
    "-c", "diff.mnemonicPrefix=false",
    "-c", "diff.external=",
    "-c", "color.diff=false",
)  # fmt: skip
_BINARY_LINE = re.compile(rb"^(Binary files .* differ|GIT binary patch)$", re.M)


def strip_credentials(url: str) -> str:
    """Remove secrets from a URL: all user info for http(s)/ftp, the password otherwise.

    `https://user:token@host/x` -> `https://host/x`; `ssh://git:pw@host/x` -> `ssh://git@host/x`;
    scp-like `git@host:org/repo.git` and local paths are returned unchanged.
    """
    if "://" not in url or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if parts.scheme.lower() in ("http", "https", "ftp", "ftps"):
        netloc = hostport
    else:
        netloc = userinfo.partition(":")[0] + "@" + hostport
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GIT_INDEX_FILE", "GIT_DIR", "GIT_WORK_TREE")
    }
    env.update(
        GIT_OPTIONAL_LOCKS="0",  # `git status` must not take index.lock in a shared tree
        GIT_TERMINAL_PROMPT="0",
        GIT_NO_LAZY_FETCH="1",  # partial clones: never fetch missing objects
        GIT_LITERAL_PATHSPECS="1",  # untracked file names are paths, not globs
        LC_ALL="C",
    )
    env.update(extra)
    return env


def _start(
    cwd: str, args: tuple[str, ...], env: dict[str, str] | None = None, stdin: bool = False
) -> subprocess.Popen[bytes] | None:
    try:
        return subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            env=env if env is not None else _env(),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        log.debug("git %s failed to start: %s", args[0], exc)
        return None


def _finish(proc: subprocess.Popen[bytes] | None, stdin: bytes | None = None) -> bytes | None:
    """Output of a started git command, or None when it failed or timed out."""
    if proc is None:
        return None
    try:
        out, err = proc.communicate(stdin, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        log.debug("git %s timed out", proc.args)
        return None
    if proc.returncode != 0:
        log.debug("git exited %s: %s", proc.returncode, err[:500])
        return None
    return out


def _git(
    cwd: str, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> bytes | None:
    """Output of a git command, or None when it fails."""
    return _finish(_start(cwd, args, env, stdin=stdin is not None), stdin)


def _git_capped(
    cwd: str, args: list[str], env: dict[str, str], limit: int
) -> tuple[bytes | None, bool]:
    """Like `_git`, but stop reading (and kill git) past `limit` bytes: (output, overflowed)."""
    try:
        proc = subprocess.Popen(
            ["git", *args], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    except OSError as exc:
        log.debug("git %s failed: %s", args, exc)
        return None, False
    assert proc.stdout is not None
    timer = threading.Timer(TIMEOUT, proc.kill)
    timer.start()
    chunks: list[bytes] = []
    total = 0
    overflowed = False
    try:
        while chunk := proc.stdout.read(1 << 16):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                overflowed = True
                proc.kill()
                break
        proc.wait()
    finally:
        timer.cancel()
        proc.stdout.close()
    if not overflowed and proc.returncode != 0:
        log.debug("git %s exited %s", args, proc.returncode)
        return None, False
    return b"".join(chunks), overflowed


def _parse_status(out: bytes) -> tuple[str | None, str | None, bool, list[str]]:
    """(commit, branch, changed, untracked paths) from `status --porcelain=v2 --branch -z`."""
    commit: str | None = None
    branch: str | None = None
    changed = False
    untracked: list[str] = []
    fields = out.split(b"\0")
    i = 0
    while i < len(fields):
        item = fields[i].decode("utf-8", "surrogateescape")
        i += 1
        if item.startswith("# branch.oid "):
            oid = item[len("# branch.oid ") :]
            commit = None if oid == "(initial)" else oid
        elif item.startswith("# branch.head "):
            head = item[len("# branch.head ") :]
            branch = None if head == "(detached)" else head
        elif item.startswith("? "):
            untracked.append(item[2:])
        elif item[:2] in ("1 ", "u "):
            changed = True
        elif item.startswith("2 "):
            changed = True
            i += 1  # a rename is followed by its original path
    return commit, branch, changed, untracked


def _larger_than(root: str, rel: str, limit: int) -> bool:
    try:
        return os.lstat(os.path.join(root, rel)).st_size > limit
    except OSError:
        return False


def _remote_url(out: bytes | None) -> str | None:
    """The `origin` remote's URL (else the first by name), from `config -z --get-regexp`."""
    if not out:
        return None
    remotes: dict[str, str] = {}
    for record in out.split(b"\0"):
        key, _, value = record.decode("utf-8", "replace").partition("\n")
        if key:
            remotes[key[len("remote.") : -len(".url")]] = value
    if not remotes:
        return None
    url = remotes.get("origin") or remotes[sorted(remotes)[0]]
    return strip_credentials(url)


def _split_sections(patch: bytes) -> list[bytes]:
    """Cut a patch into its per-file sections (each starts with `diff --git`)."""
    starts = [m.start() for m in re.finditer(rb"^diff --git ", patch, re.M)]
    if not starts:
        return []
    return [patch[a:b] for a, b in zip(starts, starts[1:] + [len(patch)], strict=True)]


def _section_path(section: bytes) -> str:
    first = section.split(b"\n", 1)[0].decode("utf-8", "surrogateescape")
    # `diff --git a/x b/x`: good enough for a note (quoted names stay quoted).
    return first[len("diff --git a/") :].partition(" b/")[0]


def _diff(
    root: str, git_dir: str, base: str, untracked: list[str], is_secret: Callable[[str], bool]
) -> tuple[str, list[str], bool, list[str]]:
    """(patch text, binary files left out, truncated, secret files left out) of the work tree
    against `base`."""
    args = [*_DIFF_CONFIG, "-c", f"core.bigFileThreshold={MAX_DIFF_BYTES}"]
    args += ["diff", "--no-color", "--no-ext-diff", "--no-textconv", "--full-index"]
    args += ["--src-prefix=a/", "--dst-prefix=b/", base, "--"]
    tmp_index: str | None = None
    try:
        env = _env()
        if untracked:
            fd, tmp_index = tempfile.mkstemp(prefix="studio-index-")
            os.close(fd)
            real_index = os.path.join(git_dir, "index")
            if os.path.exists(real_index):
                shutil.copyfile(real_index, tmp_index)
            else:
                os.unlink(tmp_index)  # git creates a fresh index
            env = _env(GIT_INDEX_FILE=tmp_index)
            listing = b"\0".join(p.encode("utf-8", "surrogateescape") for p in untracked)
            added = _git(
                root, "add", "--intent-to-add", "--pathspec-from-file=-", "--pathspec-file-nul",
                env=env, stdin=listing,
            )  # fmt: skip
            if added is None:
                log.debug(
                    "could not add untracked files to a temporary index; diff leaves them out"
                )
        out, truncated = _git_capped(root, args, env, MAX_DIFF_BYTES)
    finally:
        if tmp_index is not None and os.path.exists(tmp_index):
            os.unlink(tmp_index)
    if out is None:
        return "", [], False, []
    sections = _split_sections(out)
    if truncated and sections:
        sections.pop()  # cut off mid-file
    kept: list[str] = []
    skipped: list[str] = []
    secret: list[str] = []
    size = 0
    for section in sections:
        if is_secret(_section_path(section)):
            secret.append(_section_path(section))
            continue
        header = section.split(b"\n@@", 1)[0]
        try:
            # Text that is not UTF-8 is skipped like binary: the diff is stored as a string.
            text = None if _BINARY_LINE.search(header) else section.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None:
            skipped.append(_section_path(section))
            continue
        if size + len(section) > MAX_DIFF_BYTES:
            truncated = True
            break
        kept.append(text)
        size += len(section)
    return "".join(kept), skipped, truncated, secret


def git_info(path: Path | str) -> dict[str, Any]:
    """Git state of the repository containing `path`; `{}` outside a repository or without git.

    Keys: `repo_root`, `remote_url` (credentials stripped), `branch` (None when detached),
    `commit` (None before the first commit), `dirty` (tracked changes or untracked files),
    `diff` (see the module docstring), `diff_skipped` (binary files not in the diff),
    `diff_truncated`.
    """
    try:
        return _git_info(Path(path))
    except Exception:  # a collector never breaks a run
        log.warning("could not record git state of %s", path, exc_info=True)
        return {}


def _git_info(path: Path) -> dict[str, Any]:
    cwd = str(path if path.is_dir() else path.parent)
    if shutil.which("git") is None or not os.path.isdir(cwd):
        return {}
    state = repository_state(cwd)
    if state is not None and state[0] == "none":
        # No `.git` above and no git variable that points elsewhere: git would find no work
        # tree either, so its three processes (~10 ms) are spared.
        return {}
    # Three independent questions, asked at once (git's time is mostly process start-up).
    # `status --porcelain` paths are relative to the repository root even from a subdirectory.
    procs = [
        _start(cwd, ("rev-parse", "--show-toplevel", "--absolute-git-dir")),
        _start(cwd, ("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")),
        _start(cwd, ("config", "-z", "--get-regexp", r"^remote\..*\.url$")),
    ]
    out, status, remotes = (_finish(p) for p in procs)
    if out is None or status is None:
        return {}
    lines = out.decode("utf-8", "surrogateescape").splitlines()
    if len(lines) < 2:
        return {}  # a bare repository has no work tree to describe
    root, git_dir = lines[0], lines[1]
    commit, branch, changed, untracked = _parse_status(status)
    # A nested repository shows up as one untracked `dir/`: it is not part of this diff; nor is
    # a file too large to fit in it (spares git reading it).
    skipped = [p for p in untracked if p.endswith("/") or _larger_than(root, p, MAX_DIFF_BYTES)]
    # Secret files (.env, keys) never reach the stored diff unless .studioml_ignore re-includes them.
    is_secret = _secret_filter(root, cwd)
    secrets = [p for p in untracked if p not in skipped and is_secret(p)]
    left_out = set(skipped) | set(secrets)
    untracked = [p for p in untracked if p not in left_out]
    info: dict[str, Any] = {
        "repo_root": root,
        "remote_url": _remote_url(remotes),
        "branch": branch,
        "commit": commit,
        "dirty": changed or bool(untracked) or bool(skipped),
        "diff": "",
        "diff_skipped": list(skipped),
        "diff_truncated": False,
    }
    if changed or untracked:
        base = (
            commit
            if commit is not None
            else _EMPTY_TREE.get(_object_id_length(root), _EMPTY_TREE[40])
        )
        diff, binary, truncated, secret_sections = _diff(root, git_dir, base, untracked, is_secret)
        info.update(diff=mask_text(diff, secret_values(), pairs=False), diff_skipped=sorted(skipped + binary),
                    diff_truncated=truncated)
        secrets += secret_sections
    if secrets:
        info["diff_secrets_left_out"] = sorted(secrets)
    return info


def _secret_filter(repo_root: str, workspace: str) -> Callable[[str], bool]:
    """`is_secret(repo_relative_path)`: a secret file that `.studioml_ignore` does not opt in."""
    from studio.capture.workspace import load_ignore_spec, opted_in

    spec = load_ignore_spec(Path(workspace))

    def is_secret(rel: str) -> bool:
        if not is_secret_file(rel):
            return False
        in_ws = os.path.relpath(os.path.join(repo_root, rel), workspace).replace(os.sep, "/")
        return in_ws.startswith("../") or not opted_in(spec, in_ws)

    return is_secret


def _object_id_length(root: str) -> int:
    out = _git(root, "rev-parse", "--show-object-format")
    return 64 if out is not None and out.strip() == b"sha256" else 40


# -- reuse within one process ------------------------------------------------------------------
def _read_small(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(4096)
    except OSError:
        return None


def _stat_key(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _git_dir_of(dotgit: str) -> str | None:
    """The git directory a `.git` entry names: itself, or a worktree's `gitdir:` file."""
    if os.path.isdir(dotgit):
        return dotgit
    text = _read_small(dotgit)
    if text is None or not text.startswith(b"gitdir:"):
        return None
    target = text[len(b"gitdir:") :].strip().decode("utf-8", "surrogateescape")
    return os.path.normpath(os.path.join(os.path.dirname(dotgit), target))


_DISCOVERY_VARIABLES = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY",
)  # fmt: skip
_CONFIG_VARIABLES = ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM", "HOME", "XDG_CONFIG_HOME")


def repository_state(path: Path | str) -> tuple[Any, ...] | None:
    """A cheap fingerprint of what `git_info` reads besides the work tree's files, found
    without running git: the work-tree root, HEAD, the ref it names, `packed-refs`, the index
    and the config (remotes) by inode/size/mtime/ctime; `("none", ...)` when no `.git` lies
    above `path`. None when it cannot tell (git environment variables, ceiling directories,
    a `.git` file it cannot follow): the caller then runs git.

    Two equal fingerprints mean the same commit, branch, remote and staged state; edits of
    work-tree files that were not staged change no fingerprint, so a caller must also know the
    files themselves are unchanged (`studio.capture.collect_environment_cached` pairs it with
    the workspace's tree hash, and only when the workspace is the repository's root).
    """
    if any(os.environ.get(v) for v in _DISCOVERY_VARIABLES):
        return None
    config_env = tuple((v, os.environ.get(v)) for v in _CONFIG_VARIABLES)
    start = os.path.abspath(str(path))
    if not os.path.isdir(start):
        start = os.path.dirname(start)
    current = start
    while True:
        dotgit = os.path.join(current, ".git")
        if os.path.lexists(dotgit):
            break
        parent = os.path.dirname(current)
        if parent == current:
            return ("none", start, shutil.which("git") is not None, config_env)
        current = parent
    git_dir = _git_dir_of(dotgit)
    if git_dir is None:
        return None
    common = git_dir
    commondir = _read_small(os.path.join(git_dir, "commondir"))
    if commondir is not None:  # a linked worktree: refs and config live in the main one
        common = os.path.normpath(os.path.join(git_dir, commondir.strip().decode("utf-8", "surrogateescape")))
    head = _read_small(os.path.join(git_dir, "HEAD"))
    if head is None:
        return None
    ref_state: Any = None
    if head.startswith(b"ref:"):
        ref = head[4:].strip().decode("utf-8", "surrogateescape")
        ref_state = _read_small(os.path.join(common, ref))
    return (
        "git",
        current,
        head,
        ref_state,
        _stat_key(os.path.join(common, "packed-refs")),
        _stat_key(os.path.join(git_dir, "index")),
        _stat_key(os.path.join(common, "config")),
        config_env,  # the user's git config can change diff settings
        _stat_key(os.environ.get("GIT_CONFIG_GLOBAL") or os.path.expanduser("~/.gitconfig")),
    )
