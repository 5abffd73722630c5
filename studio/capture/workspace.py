"""Which files of the script's directory belong to the `workspace` artifact.

Rules, in gitignore order (a later rule wins over an earlier one):

1. the built-in defaults in `DEFAULT_IGNORE` plus every directory that holds a virtual
   environment (a `pyvenv.cfg` file or a `conda-meta/` folder), and studio's own home
   (`$STUDIOML_HOME`, whatever its name) when it lies inside the workspace: besides being no
   part of the code, it holds the SQLite database the capturing process has open, and
   reading that file through another descriptor drops the process's POSIX locks on it
   (SQLite then loses commits);
2. well-known secret files (`.env`, `.env.*`, private keys, `.netrc`, credential files: see
   `studio.capture.secrets.SECRET_FILES`);
3. the lines of `.studioml_ignore` in the workspace root, in gitignore syntax
   (`#` comments, `!` negation, `/` anchoring, trailing `/` for directories only, `**`).

So a `!pattern` line re-includes what a default excluded (`!.venv/`, `!*.pyc`, `!.env`), except,
as in git, a file inside an excluded directory: nothing below an ignored directory is ever
included.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from studio._version import __version__
from studio.capture.secrets import SECRET_FILES, is_secret_file

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

log = logging.getLogger(__name__)

IGNORE_FILE = ".studioml_ignore"

# The defaults as gitignore lines (documented in docs/capture.md). They are all single-name,
# unanchored patterns, so `_default_ignored` matches them by name without pathspec.
DEFAULT_IGNORE: tuple[str, ...] = (
    ".git/",
    "__pycache__/",
    "*.pyc",
    ".venv/",
    "venv/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".ipynb_checkpoints/",
    "node_modules/",
    ".studioml/",
)
_DEFAULT_DIR_NAMES = frozenset(p[:-1] for p in DEFAULT_IGNORE if p.endswith("/"))
_DEFAULT_FILE_SUFFIXES = tuple(p[1:] for p in DEFAULT_IGNORE if p.startswith("*."))
# A directory holding one of these is a Python environment, whatever its name (`env/`, ...).
_ENV_MARKERS = ("pyvenv.cfg", "conda-meta")

Ignore = Callable[[str, bool], bool]


def _name_prefilter(patterns: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...], tuple[str, ...], bool]:
    """(exact names, literal prefixes, literal suffixes, matches anything) such that a name
    an fnmatch pattern of `patterns` matches is an exact name, starts with a prefix or ends
    with a suffix: a necessary condition, checked by three C calls instead of a regex."""
    exact: set[str] = set()
    prefixes: list[str] = []
    suffixes: list[str] = []
    anything = False
    for pattern in patterns:
        specials = [i for i, c in enumerate(pattern) if c in "*?["]
        if not specials:
            exact.add(pattern)
        elif specials[0] > 0:
            prefixes.append(pattern[: specials[0]])
        elif specials[-1] < len(pattern) - 1 and "]" not in pattern[specials[-1]:]:
            suffixes.append(pattern[specials[-1] + 1 :])
        else:
            anything = True
    return frozenset(exact), tuple(prefixes), tuple(suffixes), anything


# Every file name a built-in rule might leave out (secret files, `*.pyc`) passes this filter:
# a name that does not is kept without asking each rule (with no `.studioml_ignore`). Asked
# once per file of every capture.
_MAYBE_EXACT, _MAYBE_PREFIXES, _MAYBE_SUFFIXES, _MAYBE_ANY = _name_prefilter(
    (*SECRET_FILES, *("*" + s for s in _DEFAULT_FILE_SUFFIXES))
)


def _maybe_ignored_file(name: str) -> bool:
    return (
        _MAYBE_ANY or name in _MAYBE_EXACT or name.endswith(_MAYBE_SUFFIXES) or name.startswith(_MAYBE_PREFIXES)
    )


def find_workspace_root(script: Path | str) -> Path:
    """The workspace of a script: its directory, absolute (symlinks are not resolved)."""
    path = Path(os.path.abspath(os.path.expanduser(str(script))))
    return path if path.is_dir() else path.parent


def load_ignore_spec(root: Path) -> GitIgnoreSpec | None:
    """Parse `root/.studioml_ignore`, or None when there is none (or it cannot be read)."""
    try:
        text = (root / IGNORE_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        return None
    from pathspec import GitIgnoreSpec  # only paid for when the file exists

    return GitIgnoreSpec.from_lines([_directory_safe(line) for line in text.splitlines()])


def opted_in(spec: GitIgnoreSpec | None, rel: str) -> bool:
    """True if `.studioml_ignore` re-includes `rel` with a `!` line (a secret file's opt-in)."""
    return spec is not None and spec.check_file(rel).include is False


def _directory_safe(line: str) -> str:
    """Rewrite a trailing `/**` as `/**/*`: the same files, but never the directory itself.

    Directories are matched as `dir/`, which pathspec's `dir/**` accepts (an empty tail),
    while git's `dir/**` only matches what is inside `dir`, so `!dir/keep.py` still works.
    """
    stripped = line.rstrip()
    return stripped + "/*" if stripped.endswith("/**") else line


def _home_inside(root: Path) -> str | None:
    """`$STUDIOML_HOME` relative to `root` (POSIX), if it lies inside it."""
    from studio.config import studio_home

    try:
        rel = os.path.relpath(os.path.realpath(studio_home()), os.path.realpath(root))
    except ValueError:  # another drive
        return None
    if rel == "." or rel == ".." or rel.startswith(".." + os.sep):
        return None
    return rel.replace(os.sep, "/")


def workspace_ignore(root: Path | str, secrets_left_out: list[str] | None = None) -> Ignore:
    """Return `ignore(rel_posix_path, is_dir) -> bool`, True for paths to leave out.

    `secrets_left_out`, when given, collects the secret files left out by rule 2 (for the
    one line `studio run` prints about them).

    `rel_posix_path` is relative to `root` with `/` separators (no leading `./`). The function
    also answers correctly for paths whose parent directories were never asked about (a file
    under an ignored directory is ignored), and caches directory answers, so a walker that
    prunes ignored directories pays one lookup per entry. Not thread-safe for concurrent
    first calls on the same directory, which is harmless: both compute the same answer.
    """
    root = Path(root)
    spec = load_ignore_spec(root)
    root_str = str(root)
    dir_cache: dict[str, bool] = {}
    home = _home_inside(root)

    def is_env_dir(rel: str) -> bool:
        base = os.path.join(root_str, rel)
        return any(os.path.lexists(os.path.join(base, marker)) for marker in _ENV_MARKERS)

    def own_rule(rel: str, is_dir: bool) -> bool:
        if spec is not None:
            verdict = spec.check_file(rel + "/" if is_dir else rel).include
            if verdict is not None:
                return verdict
        name = rel.rpartition("/")[2]
        if is_dir:
            return name in _DEFAULT_DIR_NAMES or rel == home or is_env_dir(rel)
        if is_secret_file(name):
            if secrets_left_out is not None:
                secrets_left_out.append(rel)
            return True
        return name.endswith(_DEFAULT_FILE_SUFFIXES)

    def dir_ignored(rel: str) -> bool:
        verdict = dir_cache.get(rel)
        if verdict is None:
            parent = rel.rpartition("/")[0]
            verdict = (bool(parent) and dir_ignored(parent)) or own_rule(rel, True)
            dir_cache[rel] = verdict
        return verdict

    def ignore(rel: str, is_dir: bool) -> bool:
        if rel.startswith(("/", "./")) or rel.endswith("/"):
            rel = rel.strip("/")
            if rel.startswith("./"):
                rel = rel[2:]
        if not rel or rel == ".":
            return False  # the root itself
        if is_dir:
            return dir_ignored(rel)
        parent, _, name = rel.rpartition("/")
        if parent:
            verdict = dir_cache.get(parent)
            if verdict is None:
                verdict = dir_ignored(parent)
            if verdict:
                return True
        if spec is None and not _maybe_ignored_file(name):
            return False  # the common case, asked once per file of every capture
        return own_rule(rel, False)

    # Two functions made for the same folder, `.studioml_ignore` (same file, unchanged) and
    # studio home keep the same paths: a store may then answer one with the other's capture.
    try:
        st = os.stat(root / IGNORE_FILE)
        rules: object = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    except OSError:
        rules = None
    # With studio's version: the built-in rules are part of the code, and a capture's snapshot
    # on disk (studio.objects.memo) may outlive an upgrade.
    ignore.fingerprint = ("studio.workspace_ignore", __version__, root_str, home, rules)  # type: ignore[attr-defined]
    return ignore


def iter_workspace(
    root: Path | str, ignore: Ignore | None = None
) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Yield `(rel_posix_path, entry)` for every non-directory entry kept by `ignore`.

    Walks depth-first in sorted order, prunes ignored directories, never follows symlinked
    directories (a symlink is yielded as an entry for the caller to judge) and skips
    directories it cannot read.
    """
    root = Path(root)
    keep_out = ignore if ignore is not None else workspace_ignore(root)
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        path, prefix = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            log.debug("skipping unreadable directory %s: %s", path, exc)
            continue
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            rel = prefix + entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if keep_out(rel, is_dir):
                continue
            if is_dir:
                subdirs.append((entry.path, rel + "/"))
            else:
                yield rel, entry
        stack.extend(reversed(subdirs))


#: A workspace this big gets a notice before it is captured (`studio run` on a terminal).
LARGE_WORKSPACE = 100 * 1024 * 1024


def workspace_size(root: Path, ignore: Ignore, max_files: int = 200_000) -> tuple[int, int, list[tuple[str, int]]]:
    """(bytes, files, the largest top-level entries with their bytes) of what a capture of
    `root` would store; counting stops after `max_files` files (the figures are then lower
    bounds)."""
    total = files = 0
    tops: dict[str, int] = {}
    stack = [""]
    while stack and files < max_files:
        rel_dir = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, rel_dir) if rel_dir else root))
        except OSError:
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                if ignore(rel, is_dir):
                    continue
                if is_dir:
                    stack.append(rel)
                    continue
                size = entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            total += size
            files += 1
            top = rel.split("/", 1)[0] + ("/" if "/" in rel else "")
            tops[top] = tops.get(top, 0) + size
    largest = sorted(tops.items(), key=lambda kv: -kv[1])[:3]
    return total, files, largest
