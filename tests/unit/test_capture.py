"""Capture collectors: workspace ignore rules, python env, git state, host, command line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studio.capture import (
    collect_environment,
    command_line,
    find_workspace_root,
    git_info,
    host_info,
    installed_packages,
    iter_workspace,
    python_version,
    pythonenv,
    strip_credentials,
    workspace_ignore,
)
from studio.capture import git as capture_git
from studio.capture import host as capture_host
from studio.capture.host import parse_nvidia_smi
from studio.capture.pythonenv import _scan

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    return path


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def tree(root: Path, skip: frozenset[str] | set[str] = frozenset()) -> dict[str, bytes]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel == ".git" or rel.startswith(".git/") or rel in skip or not path.is_file():
            continue
        out[rel] = path.read_bytes()
    return out


def replay(info: dict, dest: Path) -> None:
    """Clone-equivalent of the recorded commit in `dest`, then `git apply` the diff."""
    make_repo(dest)
    if info["commit"]:
        git(dest, "fetch", "-q", info["repo_root"], info["commit"])
        git(dest, "checkout", "-q", info["commit"])
    patch = dest.parent / (dest.name + ".patch")
    patch.write_text(info["diff"])
    git(dest, "apply", "--whitespace=nowarn", str(patch))


# --- git ------------------------------------------------------------------------------------


@needs_git
def test_diff_with_untracked_files_replays_on_a_fresh_clone(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo / "a.txt", "one\ntwo\nthree\n")
    write(repo / "sub" / "b.py", "print('b')\n")
    write(repo / "gone.txt", "bye\n")
    write(repo / "untracked_again.txt", "still here\n")
    write(repo / "tool.sh", "#!/bin/sh\n")
    write(repo / ".gitignore", "*.log\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    git(repo, "rm", "-q", "--cached", "untracked_again.txt")  # staged deletion, file kept
    (repo / "tool.sh").chmod(0o755)  # mode change
    write(repo / "bin" / "run.sh", "#!/bin/sh\necho hi")  # untracked, executable, no final newline
    (repo / "bin" / "run.sh").chmod(0o755)
    write(repo / "a.txt", "one\n2\nthree\nfour\n")  # modified, unstaged
    (repo / "gone.txt").unlink()  # deleted
    write(repo / "staged.py", "x = 1\n")
    git(repo, "add", "staged.py")  # staged new file
    write(repo / "new dir" / "deep" / "u.py", "untracked = True\n")  # untracked, nested, spaces
    write(repo / "empty.txt", "")  # untracked empty file
    write(repo / "run.log", "ignored\n")  # ignored: not in the diff
    write(repo / "blob.bin", bytes(range(256)) * 4)  # binary: skipped
    index_before = (repo / ".git" / "index").read_bytes()
    status_before = git(repo, "status", "--porcelain")

    info = git_info(repo / "sub")

    assert info["repo_root"] == str(repo)
    assert info["branch"] == "main"
    assert info["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert info["dirty"] is True
    assert info["diff_skipped"] == ["blob.bin"]
    assert info["diff_truncated"] is False
    assert "run.log" not in info["diff"]
    # The real index is untouched: untracked files went to a temporary index.
    assert (repo / ".git" / "index").read_bytes() == index_before
    assert git(repo, "status", "--porcelain") == status_before

    clone = tmp_path / "clone"
    replay(info, clone)
    assert tree(clone) == tree(repo, skip={"run.log", "blob.bin"})
    assert os.access(clone / "bin" / "run.sh", os.X_OK)
    assert os.access(clone / "tool.sh", os.X_OK)


@needs_git
def test_repo_without_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo / "staged.py", "a = 1\n")
    git(repo, "add", "staged.py")
    write(repo / "pkg" / "untracked.py", "b = 2\n")

    info = git_info(repo)

    assert info["commit"] is None
    assert info["branch"] == "main"
    assert info["dirty"] is True
    fresh = tmp_path / "fresh"
    replay(info, fresh)
    assert tree(fresh) == tree(repo)


@needs_git
def test_clean_repo_detached_head_and_credentials(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo / "a.txt", "a\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    git(repo, "remote", "add", "origin", "https://alice:s3cr3t@example.com/org/repo.git")
    git(repo, "remote", "add", "backup", "https://other.example.com/x.git")
    git(repo, "checkout", "-q", "--detach")

    info = git_info(repo)

    assert info["dirty"] is False
    assert info["diff"] == ""
    assert info["branch"] is None
    assert info["remote_url"] == "https://example.com/org/repo.git"
    assert "s3cr3t" not in json.dumps(info)


@needs_git
def test_diff_is_capped_at_whole_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo / "keep.txt", "k\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    for i in range(20):
        write(repo / f"f{i:02d}.txt", f"line {i}\n" * 200)
    write(repo / "big.txt", "x" * 9000)  # can never fit: git is not even asked
    monkeypatch.setattr(capture_git, "MAX_DIFF_BYTES", 8000)

    info = git_info(repo)

    assert info["diff_skipped"] == ["big.txt"]
    assert info["diff_truncated"] is True
    assert 0 < len(info["diff"].encode()) <= 8000
    assert info["diff"].endswith("\n")
    replay(info, tmp_path / "clone")  # what was kept still applies


def test_not_a_repo_and_no_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert git_info(tmp_path) == {}
    assert git_info(tmp_path / "missing" / "script.py") == {}
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert git_info(Path.cwd()) == {}


@needs_git
def test_outside_any_repository_git_is_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    state = capture_git.repository_state(outside)
    if state is None or state[0] != "none":
        pytest.skip("the temporary folder lies inside a git repository")
    start = capture_git._start
    started: list[tuple[str, ...]] = []

    def counting(cwd: str, args: tuple[str, ...], *rest: object, **kw: object) -> object:
        started.append(args)
        return start(cwd, args, *rest, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(capture_git, "_start", counting)
    assert git_info(outside) == {}
    assert git_info(outside / "train.py") == {}
    assert started == []
    # Where it cannot tell from the files (a git variable is set), git is asked as before.
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    assert git_info(outside) == {}
    assert started
    monkeypatch.delenv("GIT_DIR")
    started.clear()
    repo = make_repo(tmp_path / "repo")
    write(repo / "train.py", "print(1)\n")
    assert git_info(repo / "train.py")["repo_root"] == str(repo) and started


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:token@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://ghp_abc@github.com/o/r.git", "https://github.com/o/r.git"),
        ("http://u:p@host:8080/r?x=1", "http://host:8080/r?x=1"),
        ("ssh://git:pw@host/r.git", "ssh://git@host/r.git"),
        ("ssh://git@host/r.git", "ssh://git@host/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("/srv/repos/r.git", "/srv/repos/r.git"),
        ("https://github.com/o/r.git", "https://github.com/o/r.git"),
    ],
)
def test_strip_credentials(url: str, expected: str) -> None:
    assert strip_credentials(url) == expected


# --- workspace ------------------------------------------------------------------------------


def listing(root: Path) -> list[str]:
    return sorted(rel for rel, _ in iter_workspace(root))


def test_default_ignores_and_venv_detection(tmp_path: Path) -> None:
    for rel in [
        "train.py",
        "pkg/mod.py",
        "pkg/__pycache__/mod.cpython-311.pyc",
        "stray.pyc",
        ".git/HEAD",
        ".venv/lib/x.py",
        "venv/bin/python",
        "env/pyvenv.cfg",
        "env/lib/site.py",
        "myenv/pyvenv.cfg",
        "conda/conda-meta/history",
        "env2/data.csv",  # a folder called like an env but not one: kept
        "web/node_modules/x.js",
        ".mypy_cache/x",
        ".pytest_cache/x",
        "nb/.ipynb_checkpoints/a.ipynb",
        ".studioml/x",
        "data/env/notes.txt",
    ]:
        write(tmp_path / rel, "x")

    assert listing(tmp_path) == ["data/env/notes.txt", "env2/data.csv", "pkg/mod.py", "train.py"]
    ignore = workspace_ignore(tmp_path)
    # Answers are right even for paths whose parents were never asked about.
    assert ignore("env/lib/site.py", False)
    assert ignore("pkg/__pycache__", True)
    assert not ignore("pkg", True)
    assert not ignore("", True)


def test_the_file_name_prefilter_passes_every_name_a_rule_may_leave_out() -> None:
    import fnmatch
    import itertools

    from studio.capture import workspace as ws
    from studio.capture.secrets import SECRET_FILES

    patterns = (*SECRET_FILES, "*.pyc")
    full = re.compile("|".join(fnmatch.translate(p) for p in patterns))
    parts = ["", ".", "env", ".env", "id_rsa", "_x", "key", ".pem", "service-account", ".json", "pyc",
             "credentials", "secrets", ".yaml", "a.b", "netrc", ".git-credentials", "x"]
    names = {"".join(c) for c in itertools.product(parts, repeat=3)}
    matched = [n for n in names if n and full.match(n)]
    assert len(matched) > 100
    assert all(ws._maybe_ignored_file(n) for n in matched)
    assert not ws._maybe_ignored_file("train.py") and not ws._maybe_ignored_file("f123.dat")
    # Wildcards anywhere: a necessary condition, or "maybe" for every name.
    exact, prefixes, suffixes, anything = ws._name_prefilter(("a?c", "*.[ch]", "[ab]*.txt", "x", "*"))
    assert exact == {"x"} and prefixes == ("a",) and suffixes == (".txt",) and anything


def test_studioml_ignore_patterns(tmp_path: Path) -> None:
    write(
        tmp_path / ".studioml_ignore",
        "\n".join(
            [
                "# comment line",
                "data/",  # any directory named data, at any depth
                "/build",  # only at the root
                "*.ckpt",
                "!best.ckpt",
                "logs/**/*.tmp",
                "!.venv/",  # re-include a default
                "!keep.pyc",
                "secret.txt",
                "!data/readme.md",  # cannot re-include below an excluded directory
            ]
        ),
    )
    for rel in [
        "train.py",
        "data/a.csv",
        "data/readme.md",
        "src/data/b.csv",
        "build/out.o",
        "src/build/kept.o",
        "m.ckpt",
        "sub/best.ckpt",
        "logs/a/b/x.tmp",
        "logs/x.txt",
        ".venv/lib/x.py",
        "keep.pyc",
        "drop.pyc",
        "deep/nested/secret.txt",
    ]:
        write(tmp_path / rel, "x")

    assert listing(tmp_path) == [
        ".studioml_ignore",
        ".venv/lib/x.py",
        "keep.pyc",
        "logs/x.txt",
        "src/build/kept.o",
        "sub/best.ckpt",
        "train.py",
    ]
    ignore = workspace_ignore(tmp_path)
    assert ignore("data/readme.md", False)
    assert ignore("a/b/data", True)
    assert not ignore("a/b/data", False)  # `data/` matches directories only


@needs_git
def test_ignore_rules_agree_with_git(tmp_path: Path) -> None:
    patterns = [
        "data/",
        "/build",
        "*.ckpt",
        "!best.ckpt",
        "logs/**/*.tmp",
        "src/**",
        "!src/keep.py",
        "docs/*",
        "!docs/index.md",
        "**/cache",
        "a/**/b",
        "!data/readme.md",
        "*.log",
        "!important.log",
        "foo[0-9].txt",
        "\\#hash.txt",
        "deep/*/x.txt",
    ]
    files = [
        "data/a.csv", "data/readme.md", "x/data/b.csv", "build/o", "x/build/o", "m.ckpt",
        "x/best.ckpt", "logs/a/b.tmp", "logs/c.tmp", "logs/keep.txt", "src/keep.py", "src/x.py",
        "src/sub/keep.py", "docs/index.md", "docs/other.md", "docs/sub/index.md", "cache/z",
        "q/cache/z", "a/b/f", "a/x/y/b/f", "a/bb/f", "run.log", "x/important.log",
        "foo1.txt", "foox.txt", "#hash.txt", "deep/k/x.txt", "deep/k/l/x.txt", "ok.py",
    ]  # fmt: skip
    for rel in files:
        write(tmp_path / rel, "x")
    write(tmp_path / ".studioml_ignore", "\n".join(patterns) + "\n")
    make_repo(tmp_path)
    write(tmp_path / ".git" / "info" / "exclude", "\n".join(patterns) + "\n")
    out = git(tmp_path, "ls-files", "--others", "--exclude-standard", "-z")
    by_git = sorted(p for p in out.split("\0") if p and p != ".studioml_ignore")
    ours = [p for p in listing(tmp_path) if p != ".studioml_ignore"]
    assert ours == by_git


def test_reinclude_inside_a_directory_by_excluding_its_contents(tmp_path: Path) -> None:
    write(tmp_path / ".studioml_ignore", "data/*\n!data/readme.md\n")
    write(tmp_path / "data" / "readme.md", "x")
    write(tmp_path / "data" / "big.csv", "x")
    write(tmp_path / "data" / "sub" / "c.csv", "x")
    assert listing(tmp_path) == [".studioml_ignore", "data/readme.md"]


def test_find_workspace_root(tmp_path: Path) -> None:
    script = write(tmp_path / "proj" / "train.py", "")
    assert find_workspace_root(script) == tmp_path / "proj"
    assert find_workspace_root(tmp_path / "proj") == tmp_path / "proj"
    rel = os.path.relpath(script)
    assert find_workspace_root(rel) == tmp_path / "proj"


# --- python env, host, command line ---------------------------------------------------------


def test_python_version_and_installed_packages() -> None:
    assert python_version() == ".".join(map(str, sys.version_info[:3]))
    packages = installed_packages()
    assert f"pytest=={pytest.__version__}" in packages
    # sorted and unique by normalized name (PEP 503: `jaraco.text` and `jaraco_context` compare
    # as jaraco-text and jaraco-context)
    names = [re.sub(r"[-_.]+", "-", line.split("==")[0].split(" @ ")[0]).lower() for line in packages]
    assert names == sorted(names) and len(names) == len(set(names))
    assert installed_packages() == packages  # cached, same answer


def test_package_scan_notes_editable_vcs_and_duplicates(tmp_path: Path) -> None:
    site, other = tmp_path / "site", tmp_path / "other"
    write(site / "plain_pkg-1.2.dist-info" / "METADATA", "Name: plain-pkg\nVersion: 1.2\n")
    write(
        site / "mine-0.1.dist-info" / "direct_url.json",
        json.dumps({"url": "file:///home/me/mine", "dir_info": {"editable": True}}),
    )
    write(
        site / "tool-2.0.dist-info" / "direct_url.json",
        json.dumps(
            {
                "url": "https://bob:tok@github.com/org/tool",
                "vcs_info": {"vcs": "git", "commit_id": "abc123"},
            }
        ),
    )
    write(site / "old-3.0-py3.11.egg-info", "Name: old\nVersion: 3.0\n")
    write(other / "plain_pkg-9.9.dist-info" / "METADATA", "")  # shadowed by the first entry
    write(other / "checkout.egg-info" / "PKG-INFO", "Name: checkout\nVersion: 0.5\n\nbody\n")

    assert _scan([str(site), str(other), str(tmp_path / "missing")]) == [
        "checkout==0.5  # source checkout " + str(other),
        "mine==0.1  # editable install from file:///home/me/mine",
        "old==3.0",
        "plain_pkg==1.2",
        "tool @ git+https://github.com/org/tool@abc123",
    ]


def _age(*paths: Path, seconds: float = 10) -> None:
    """Date `paths` back, out of the 2 s window in which a change is not trusted."""
    import time

    for path in paths:
        old = time.time() - seconds
        os.utime(path, (old, old))


def test_installed_packages_cached_on_disk_until_a_folder_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, other, cache = tmp_path / "site", tmp_path / "other", tmp_path / "cache"
    write(site / "a-1.0.dist-info" / "METADATA", "")
    write(other / "checkout.egg-info" / "PKG-INFO", "Name: checkout\nVersion: 0.5\n")
    _age(site, other, other / "checkout.egg-info" / "PKG-INFO")
    monkeypatch.setattr(sys, "path", [str(site), str(other)])
    pythonenv.installed_packages.cache_clear()
    first = installed_packages(cache)
    assert first == ["a==1.0", f"checkout==0.5  # source checkout {other}"]
    assert len(list(cache.glob("pythonenv-*.json"))) == 1

    # The next process reads the list back without scanning.
    pythonenv.installed_packages.cache_clear()
    scan = pythonenv._scan
    monkeypatch.setattr(pythonenv, "_scan", lambda *a: pytest.fail("scanned although nothing changed"))
    assert installed_packages(cache) == first
    monkeypatch.setattr(pythonenv, "_scan", scan)

    # An install adds a *.dist-info entry: its folder's mtime changes, so it is seen.
    write(site / "b-2.0.dist-info" / "METADATA", "")
    pythonenv.installed_packages.cache_clear()
    assert installed_packages(cache) == ["a==1.0", "b==2.0", f"checkout==0.5  # source checkout {other}"]
    # ... and, changed less than 2 s ago, the list is not cached (coarse timestamps).
    assert "b==2.0" not in next(cache.glob("pythonenv-*.json")).read_text()

    # A version read from a metadata file that is rewritten in place is seen too.
    _age(site)
    pythonenv.installed_packages.cache_clear()
    installed_packages(cache)
    write(other / "checkout.egg-info" / "PKG-INFO", "Name: checkout\nVersion: 0.6\n")
    _age(other / "checkout.egg-info" / "PKG-INFO", seconds=5)
    pythonenv.installed_packages.cache_clear()
    assert installed_packages(cache)[-1] == f"checkout==0.6  # source checkout {other}"

    # A different sys.path is another list; a damaged cache file is a scan, not an error.
    monkeypatch.setattr(sys, "path", [str(site)])
    pythonenv.installed_packages.cache_clear()
    assert installed_packages(cache) == ["a==1.0", "b==2.0"]
    for path in cache.glob("pythonenv-*.json"):
        path.write_text("{not json")
    pythonenv.installed_packages.cache_clear()
    assert installed_packages(cache) == ["a==1.0", "b==2.0"]
    pythonenv.installed_packages.cache_clear()


def test_host_facts_cached_per_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    boot_id = write(tmp_path / "boot_id", "boot-1\n")
    monkeypatch.setattr(capture_host, "_BOOT_ID", str(boot_id))
    calls: list[int] = []

    def facts() -> dict[str, object]:
        calls.append(1)
        return {"cpu_count_physical": 4, "ram_total": 2**33 + len(calls), "gpus": []}

    monkeypatch.setattr(capture_host, "boot_facts", facts)
    first = host_info(cache)
    assert first["ram_total"] == 2**33 + 1 and first["cpu_count_physical"] == 4
    assert json.loads((cache / "host.json").read_text())["key"][0] == "boot-1"
    again = host_info(cache)
    assert again == first and len(calls) == 1  # read back, not collected again
    assert host_info()["ram_total"] == 2**33 + 2  # no cache_dir: read every time

    write(boot_id, "boot-2\n")  # a reboot (RAM or GPUs may have changed)
    assert host_info(cache)["ram_total"] == 2**33 + 3
    assert host_info(cache)["ram_total"] == 2**33 + 3
    monkeypatch.setattr(capture_host, "_user", lambda: "someone-else")
    assert host_info(cache)["ram_total"] == 2**33 + 4
    (cache / "host.json").write_text("[1, 2")  # damaged: collected again, never an error
    assert host_info(cache)["ram_total"] == 2**33 + 5

    monkeypatch.setattr(capture_host, "_BOOT_ID", str(tmp_path / "missing"))  # no boot id: no cache
    assert host_info(cache)["ram_total"] == 2**33 + 6
    assert host_info(cache)["ram_total"] == 2**33 + 7


@pytest.mark.skipif(not os.path.exists("/proc/sys/kernel/random/boot_id"), reason="Linux: a boot id")
def test_cached_host_facts_spare_importing_psutil(tmp_path: Path) -> None:
    fresh = host_info(tmp_path)
    code = (
        "import json, sys; from studio.capture.host import host_info; "
        f"info = host_info({str(tmp_path)!r}); print(json.dumps(['psutil' in sys.modules, info]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    imported, info = json.loads(out)
    assert not imported
    assert {k: info[k] for k in capture_host.BOOT_FACTS} == {k: fresh[k] for k in capture_host.BOOT_FACTS}
    assert info["ram_total"] > 64 * 1024 * 1024 and info["hostname"] == fresh["hostname"]


def test_host_info_has_sane_values() -> None:
    info = host_info()
    assert info["hostname"] and isinstance(info["hostname"], str)
    assert info["os"] and info["python_implementation"]
    assert info["cpu_count_logical"] >= 1
    assert info["cpu_count_usable"] >= 1
    assert info["ram_total"] > 64 * 1024 * 1024
    assert isinstance(info["gpus"], list)
    json.dumps(info)


def test_gpus_from_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = write(
        tmp_path / "bin" / "nvidia-smi",
        "#!/bin/sh\necho '0, NVIDIA A100-SXM4-40GB, 40960'\necho '1, Tesla T4, [N/A]'\n",
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert host_info()["gpus"] == [
        {"index": 0, "name": "NVIDIA A100-SXM4-40GB", "memory_total": 40960 * 1024 * 1024},
        {"index": 1, "name": "Tesla T4", "memory_total": None},
    ]
    assert parse_nvidia_smi("0, Odd, Name, 1024\n") == [
        {"index": 0, "name": "Odd, Name", "memory_total": 1024 * 1024 * 1024}
    ]


def test_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["studio", "run", "train.py", "--lr", "0.1"])
    assert command_line() == ["studio", "run", "train.py", "--lr", "0.1"]


@needs_git
def test_collect_environment(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    script = write(repo / "train.py", "print(1)\n")

    env = collect_environment(script)

    assert env["workspace_root"] == str(repo)
    assert env["git"]["repo_root"] == str(repo)
    assert "train.py" in env["git"]["diff"]
    assert env["python_version"] == python_version()
    assert env["pythonenv"] == installed_packages()
    assert env["host"]["cpu_count_logical"] >= 1
    assert isinstance(env["command_line"], list)
    json.dumps(env)
