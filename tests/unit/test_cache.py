"""The local cache folder: one way to unpack stored trees, a size budget, least recently used
entries out first, and never an entry a live run has pinned."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from studio.config import load_settings
from studio.exceptions import ConfigError
from studio.objects import open_object_store
from studio.objects.cache import cached_tree, prune

REPO = Path(__file__).resolve().parents[2]


def stored_trees(tmp_path: Path, n: int, size: int = 10_000) -> tuple[object, list[str]]:
    store = open_object_store(str(tmp_path / "objects"), tmp_path / "blobcache")
    trees = []
    for i in range(n):
        src = tmp_path / f"src{i}"
        src.mkdir()
        (src / "data.bin").write_bytes(bytes([i]) * size)
        trees.append(store.put_tree(src).tree)
    return store, trees


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_a_tree_is_unpacked_once_read_only(tmp_path: Path) -> None:
    store, (tree,) = stored_trees(tmp_path, 1)
    root = tmp_path / "cache"
    first = cached_tree(store, root, tree)
    assert (first / "data.bin").read_bytes() == b"\x00" * 10_000
    assert not os.access(first / "data.bin", os.W_OK) or os.geteuid() == 0
    age(first.parent, 3600)
    again = cached_tree(store, root, tree)
    assert again == first and first.parent.stat().st_mtime > time.time() - 60  # used: touched
    assert [p.name for p in (root / "trees").iterdir()] == [tree]


def test_prune_removes_least_recently_used_beyond_the_budget(tmp_path: Path) -> None:
    store, trees = stored_trees(tmp_path, 4)
    root = tmp_path / "cache"
    for i, tree in enumerate(trees):
        age(cached_tree(store, root, tree).parent, 10_000 - i * 1000)  # trees[0] oldest
    report = prune(root, max_bytes=25_000)
    assert report.removed_entries == 2 and report.kept_bytes == 20_000
    assert sorted(p.name for p in (root / "trees").iterdir() if not p.name.startswith(".")) == sorted(trees[2:])


def test_recent_entries_are_kept_even_over_budget(tmp_path: Path) -> None:
    store, trees = stored_trees(tmp_path, 2)
    root = tmp_path / "cache"
    for tree in trees:
        cached_tree(store, root, tree)
    assert prune(root, max_bytes=0).removed_entries == 0  # both used within the grace period


def test_a_tree_pinned_by_a_live_process_is_never_removed(tmp_path: Path) -> None:
    store, trees = stored_trees(tmp_path, 2)
    root = tmp_path / "cache"
    for tree in trees:
        age(cached_tree(store, root, tree).parent, 10_000)
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from studio.objects import open_object_store
        from studio.objects.cache import cached_tree
        store = open_object_store({str(tmp_path / "objects")!r}, Path({str(tmp_path / "blobcache")!r}))
        cached_tree(store, Path({str(root)!r}), {trees[0]!r}, pin=True)
        print("pinned", flush=True)
        sys.stdin.read()
    """)
    reader = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "pinned"
        age(root / "trees" / trees[0], 10_000)
        report = prune(root, max_bytes=0)
        assert report.removed_entries == 1
        assert (root / "trees" / trees[0] / "data" / "data.bin").exists()
        assert not (root / "trees" / trees[1]).exists()
    finally:
        reader.communicate("", timeout=30)
    assert prune(root, max_bytes=0).removed_entries == 1  # the pin ended with its process
    assert cached_tree(store, root, trees[0]).joinpath("data.bin").exists()  # fetched again


def test_fills_prune_to_the_configured_budget(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yaml").write_text("storage:\n  cache: 15000\n")
    settings = load_settings(environ={"STUDIOML_HOME": str(home)})
    assert settings.cache_budget() == 15_000
    store, trees = stored_trees(tmp_path, 3)
    root = settings.blob_cache
    for tree in trees[:2]:
        age(cached_tree(store, root, tree, max_bytes=settings.cache_budget()).parent, 10_000)
    cached_tree(store, root, trees[2], max_bytes=settings.cache_budget())
    left = sorted(p.name for p in (root / "trees").iterdir() if not p.name.startswith("."))
    assert left == [trees[2]]


def test_default_budget_is_a_quarter_of_the_disk(tmp_path: Path) -> None:
    settings = load_settings(environ={"STUDIOML_HOME": str(tmp_path)})
    st = os.statvfs(tmp_path)
    assert settings.cache_budget() == max(1 << 30, st.f_frsize * st.f_blocks // 4)


@pytest.mark.parametrize(
    "text, message",
    [("storage:\n  cache: lots\n", "storage.cache"), ("verbose: chatty\n", "`verbose` must be one of")],
)
def test_bad_cache_and_verbose_keys_are_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={"STUDIOML_HOME": str(tmp_path)})


def test_config_verbose_turns_on_logging(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("verbose: debug\n")
    env = dict(os.environ, STUDIOML_HOME=str(tmp_path), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "studio", "runs", "list", "all"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "studio DEBUG" in proc.stderr


def test_database_guest_sends_no_token(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "database:\n  type: http\n  serverUrl: http://studio.example:5000\n  token: abc\n  guest: true\n"
    )
    settings = load_settings(environ={"STUDIOML_HOME": str(tmp_path), "STUDIOML_API_TOKEN": "xyz"})
    assert settings.database_url == "http://studio.example:5000" and settings.api_token is None
    (tmp_path / "config.yaml").write_text("database:\n  guest: maybe\n")
    with pytest.raises(ConfigError, match="database.guest"):
        load_settings(environ={"STUDIOML_HOME": str(tmp_path)})
