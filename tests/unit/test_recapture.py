"""Re-capturing a folder in the same process (a run's final checkpoint of its workspace).

The store remembers its last capture of a folder (`CaptureMemo`); these tests check that what
the memo answers is always what a capture from scratch records, and when the memo may say
"unchanged". What counts as a change is the stat cache's rule, as in git: inode, size, mtime
or ctime differ, or the file was too young to trust when it was last hashed (`RACY_NS`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from studio.objects import ObjectStore, open_object_store
from studio.objects import ingest as ingest_mod
from studio.objects import statcache as statcache_mod
from studio.objects.hashing import hash_bytes


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return open_object_store(str(tmp_path / "store"), tmp_path / "cache", tmp_path / "stat.db")


@pytest.fixture
def trusting_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files in tests are seconds old; trust their stat at once (the racy rule has its own test)."""
    monkeypatch.setattr(statcache_mod, "RACY_NS", 0)


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _files(store: ObjectStore, tree: str) -> dict[str, str]:
    return {e.path: e.hash for e in store.get_tree(tree).entries}


def _fresh(tmp_path: Path, root: Path, name: str, ignore: object = None) -> str:
    """The tree a capture from scratch records (a new store: no memo, no stat cache)."""
    other = open_object_store(str(tmp_path / name), tmp_path / f"{name}-cache", tmp_path / f"{name}.db")
    return other.put_tree(root, ignore=ignore).tree  # type: ignore[arg-type]


def test_unchanged_folder_is_answered_by_the_memo(
    store: ObjectStore, tmp_path: Path, trusting_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _tree(tmp_path / "src", {f"d{i % 3}/f{i}.dat": os.urandom(100 + i) for i in range(30)})
    first = store.put_tree(src)
    assert store.stat_cache is not None
    built: list[int] = []
    real_make_tree = ingest_mod.make_tree
    monkeypatch.setattr(ingest_mod, "make_tree", lambda *a: built.append(1) or real_make_tree(*a))
    monkeypatch.setattr(store.stat_cache, "under", lambda folder: pytest.fail("stat cache read again"))
    again = store.put_tree(src)
    assert again.tree == first.tree and (again.files, again.size) == (first.files, first.size)
    assert again.hashed_files == 0 and again.uploaded_files == 0
    assert built == []  # no manifest rebuilt: the memo's tree was the answer


@pytest.mark.parametrize("change", ["size_same_mtime", "same_size_same_mtime", "replaced", "deleted", "added",
                                    "chmod_x"])
def test_a_change_between_captures_is_captured(
    store: ObjectStore, tmp_path: Path, trusting_cache: None, change: str
) -> None:
    src = _tree(tmp_path / "src", {"a.py": b"print(1)\n", "b/data.txt": b"0123456789", "c.txt": b"c"})
    first = store.put_tree(src)
    target = src / "b" / "data.txt"
    st = os.stat(target)
    if change == "size_same_mtime":  # within the same mtime tick, another size
        target.write_bytes(b"0123456789+")
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "same_size_same_mtime":  # rewritten in place, mtime put back: the ctime moves
        target.write_bytes(b"9876543210")
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(target).st_mtime_ns == st.st_mtime_ns and os.stat(target).st_size == st.st_size
    elif change == "replaced":  # a new inode with other bytes (editors save so)
        (src / "tmp").write_bytes(b"ABCDEFGHIJ")
        os.replace(src / "tmp", target)
    elif change == "deleted":
        target.unlink()
    elif change == "added":
        (src / "b" / "new.txt").write_bytes(b"new")
    elif change == "chmod_x":
        os.chmod(target, 0o755)
    again = store.put_tree(src)
    assert again.tree != first.tree
    assert again.tree == _fresh(tmp_path, src, "scratch")  # exactly what a first capture records
    files = _files(store, again.tree)
    if change == "deleted":
        assert "b/data.txt" not in files and again.files == first.files - 1
    elif change == "added":
        assert files["b/new.txt"] == hash_bytes(b"new")
    elif change != "chmod_x":
        assert files["b/data.txt"] == hash_bytes(target.read_bytes())
    # ...and the capture after that, with nothing changed, answers the new tree from the memo.
    assert store.put_tree(src).tree == again.tree


def test_same_file_twice_in_a_row_and_back(store: ObjectStore, tmp_path: Path, trusting_cache: None) -> None:
    """Content restored to what it was: the first tree again (content-addressed)."""
    src = _tree(tmp_path / "src", {"a": b"one", "b": b"two"})
    first = store.put_tree(src).tree
    (src / "a").write_bytes(b"ONE!")
    changed = store.put_tree(src).tree
    (src / "a").write_bytes(b"one")
    assert changed != first and store.put_tree(src).tree == first


def test_ignore_rules_of_the_recapture_apply(store: ObjectStore, tmp_path: Path, trusting_cache: None) -> None:
    src = _tree(tmp_path / "src", {"keep.py": b"k", "out/result.bin": b"r"})
    assert set(_files(store, store.put_tree(src).tree)) == {"keep.py", "out/result.bin"}

    def ignore(rel: str, is_dir: bool) -> bool:
        return rel == "out"

    assert set(_files(store, store.put_tree(src, ignore=ignore).tree)) == {"keep.py"}
    assert set(_files(store, store.put_tree(src).tree)) == {"keep.py", "out/result.bin"}


def test_renamed_symlink_is_a_change(store: ObjectStore, tmp_path: Path, trusting_cache: None) -> None:
    """A link's entry is named by the link but keyed by its target's stat: renaming the link
    keeps the target's stat, and still changes the tree."""
    src = _tree(tmp_path / "src", {"real.txt": b"r"})
    os.symlink("real.txt", src / "link.txt")
    first = store.put_tree(src)
    assert set(_files(store, first.tree)) == {"real.txt", "link.txt"}
    os.rename(src / "link.txt", src / "alias.txt")
    again = store.put_tree(src)
    assert set(_files(store, again.tree)) == {"real.txt", "alias.txt"}


def test_young_files_are_not_trusted_by_the_memo(store: ObjectStore, tmp_path: Path) -> None:
    """Within RACY_NS of being written a file may change again without its stat changing
    (coarse timestamps): like the stat cache, the memo hashes it again."""
    src = _tree(tmp_path / "src", {"a": b"1", "b": b"2"})
    store.put_tree(src)
    again = store.put_tree(src)
    assert again.hashed_files == 2


def test_a_collected_tree_is_stored_again(store: ObjectStore, tmp_path: Path, trusting_cache: None) -> None:
    """The memo's tree is used only while the store still has it."""
    src = _tree(tmp_path / "src", {"a": b"aa"})
    first = store.put_tree(src)
    store.gc(keep_trees=[])
    again = store.put_tree(src, previous=first.tree)
    assert again.tree == first.tree and again.uploaded_files == 1
    assert store.get_tree(again.tree).entries[0].hash == hash_bytes(b"aa")


def test_memo_keeps_a_few_folders(store: ObjectStore, tmp_path: Path, trusting_cache: None) -> None:
    roots = [_tree(tmp_path / f"src{i}", {"f": str(i).encode()}) for i in range(6)]
    for root in roots:
        store.put_tree(root)
    memo = store._memo
    assert memo.get(os.path.realpath(roots[0])) is None  # the oldest were let go
    assert memo.get(os.path.realpath(roots[-1])) is not None
    assert len(memo._last) == memo.roots


# -- the watch armed by `studio run`'s start capture (inotify) ------------------------------


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the folder scans captures make."""
    seen: list[str] = []
    real_scan = ingest_mod.scan_tree

    def counting(root: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        seen.append(root)
        return real_scan(root, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_mod, "scan_tree", counting)
    return seen


def _workspace(tmp_path: Path) -> Path:
    return _tree(tmp_path / "ws", {"train.py": b"print(1)\n", "data/x.txt": b"0123456789", "cfg.yaml": b"a: 1\n"})


def test_watched_folder_unchanged_is_not_scanned(store: ObjectStore, tmp_path: Path, scans: list[str]) -> None:
    from studio.capture import workspace_ignore

    ws = _workspace(tmp_path)
    first = store.put_tree(ws, ignore=workspace_ignore(ws), watch=True)
    # What a script commonly leaves that the workspace rules ignore: no change to the artifact.
    (ws / "__pycache__").mkdir()
    (ws / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"pyc")
    (ws / "data" / "old.pyc").write_bytes(b"pyc")
    (ws / ".env").write_text("TOKEN=x\n")
    again = store.put_tree(ws, ignore=workspace_ignore(ws))  # a new function, same rules
    assert again.tree == first.tree and len(scans) == 1
    store.release(ws)
    assert store.put_tree(ws, ignore=workspace_ignore(ws)).tree == first.tree and len(scans) == 2


@pytest.mark.parametrize("change", ["write", "same_size_same_mtime", "append_same_mtime", "delete", "new_dir",
                                    "rename", "mmap", "chmod"])
def test_watched_folder_change_is_captured(store: ObjectStore, tmp_path: Path, scans: list[str], change: str) -> None:
    import mmap

    from studio.capture import workspace_ignore

    ws = _workspace(tmp_path)
    first = store.put_tree(ws, ignore=workspace_ignore(ws), watch=True)
    target = ws / "data" / "x.txt"
    st = os.stat(target)
    if change == "write":
        target.write_bytes(b"changed")
    elif change == "same_size_same_mtime":
        target.write_bytes(b"9876543210")
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "append_same_mtime":
        with open(target, "ab") as fh:
            fh.write(b"+")
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "delete":
        target.unlink()
    elif change == "new_dir":
        (ws / "results").mkdir()
        (ws / "results" / "r.csv").write_bytes(b"1,2\n")
    elif change == "rename":
        os.rename(target, ws / "data" / "y.txt")
    elif change == "mmap":  # no IN_MODIFY for writes through a mapping
        with open(target, "r+b") as fh, mmap.mmap(fh.fileno(), 0) as mem:
            mem[0:1] = b"Z"  # the descriptor opened for writing closes: IN_CLOSE_WRITE
    elif change == "chmod":
        os.chmod(target, 0o755)
    again = store.put_tree(ws, ignore=workspace_ignore(ws))
    assert again.tree != first.tree and len(scans) == 2
    assert again.tree == _fresh(tmp_path, ws, "scratch", workspace_ignore(ws))


@pytest.mark.parametrize("hazard", ["hard_link", "symlink", "other_rules"])
def test_watch_does_not_vouch_where_a_change_could_go_unseen(
    store: ObjectStore, tmp_path: Path, scans: list[str], hazard: str
) -> None:
    """Such folders are scanned each time (and a change through the other name is caught)."""
    from studio.capture import workspace_ignore

    ws = _workspace(tmp_path)
    if hazard == "hard_link":
        os.link(ws / "data" / "x.txt", tmp_path / "elsewhere.txt")
    elif hazard == "symlink":
        os.symlink("data/x.txt", ws / "link.txt")
    first = store.put_tree(ws, ignore=workspace_ignore(ws), watch=True)
    if hazard == "hard_link":
        (tmp_path / "elsewhere.txt").write_bytes(b"through the other name")  # no event in ws
    again = store.put_tree(ws, ignore=None if hazard == "other_rules" else workspace_ignore(ws))
    assert len(scans) == 2
    if hazard == "hard_link":
        assert again.tree != first.tree
        assert _files(store, again.tree)["data/x.txt"] == hash_bytes(b"through the other name")


def test_a_studioml_ignore_edit_is_a_change(store: ObjectStore, tmp_path: Path, scans: list[str]) -> None:
    from studio.capture import workspace_ignore

    ws = _workspace(tmp_path)
    store.put_tree(ws, ignore=workspace_ignore(ws), watch=True)
    (ws / ".studioml_ignore").write_text("data/\n")
    again = store.put_tree(ws, ignore=workspace_ignore(ws))
    assert "data/x.txt" not in _files(store, again.tree) and len(scans) == 2


def test_next_process_starts_from_the_snapshot_on_disk(
    tmp_path: Path, trusting_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`studio run` twice in an unchanged folder: the second process reads one small file,
    not the stat cache's rows, and builds no manifest; a change made in between is caught."""
    from studio.capture import workspace_ignore

    def new_store() -> ObjectStore:  # what a new process opens
        return open_object_store(str(tmp_path / "store"), tmp_path / "cache", tmp_path / "stat.db")

    ws = _workspace(tmp_path)
    first = new_store().put_tree(ws, ignore=workspace_ignore(ws), watch=True)
    assert len(list((tmp_path / "capture-snapshots").glob("*.snap"))) == 1
    second = new_store()
    assert second.stat_cache is not None
    monkeypatch.setattr(second.stat_cache, "under", lambda folder: pytest.fail("stat cache read"))
    monkeypatch.setattr(ingest_mod, "make_tree", lambda *a: pytest.fail("manifest rebuilt"))
    assert second.put_tree(ws, ignore=workspace_ignore(ws), watch=True).tree == first.tree
    monkeypatch.undo()
    (ws / "data" / "x.txt").write_bytes(b"new bytes")
    third = new_store().put_tree(ws, ignore=workspace_ignore(ws), watch=True)
    assert _files(new_store(), third.tree)["data/x.txt"] == hash_bytes(b"new bytes")
    # A damaged snapshot file is only a slower capture.
    for snap in (tmp_path / "capture-snapshots").glob("*.snap"):
        snap.write_bytes(b"garbage")
    assert new_store().put_tree(ws, ignore=workspace_ignore(ws), watch=True).tree == third.tree


def test_a_process_holding_a_watch_exits(tmp_path: Path) -> None:
    """A capture's watch that nobody released (an error before the run started) must not
    keep the interpreter from exiting (closing it then must not wait for a new thread)."""
    import subprocess
    import sys

    ws = _workspace(tmp_path)
    code = (
        "import sys\nfrom pathlib import Path\nfrom studio.objects import open_object_store\n"
        f"s = open_object_store({str(tmp_path / 'store')!r}, Path({str(tmp_path / 'cache')!r}), "
        f"Path({str(tmp_path / 'stat.db')!r}))\n"
        f"s.put_tree(Path({str(ws)!r}), watch=True)\n"
        "keep = s  # held to the end: its watch is closed while the interpreter shuts down\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_the_next_process_asks_the_rules_only_about_files_it_did_not_keep(
    tmp_path: Path, trusting_cache: None
) -> None:
    """The snapshot on disk carries the ignore rules' identity: under the same rules a kept
    file is kept without asking them again; an edited `.studioml_ignore` (or another studio
    version, whose built-in rules may differ) makes every file be asked again."""
    from studio.capture import workspace_ignore

    def new_store() -> ObjectStore:
        return open_object_store(str(tmp_path / "store"), tmp_path / "cache", tmp_path / "stat.db")

    def counted(ws: Path) -> tuple[object, list[str]]:
        rules = workspace_ignore(ws)
        asked: list[str] = []

        def ignore(rel: str, is_dir: bool) -> bool:
            asked.append(rel)
            return rules(rel, is_dir)

        ignore.fingerprint = rules.fingerprint  # type: ignore[attr-defined]
        return ignore, asked

    ws = _workspace(tmp_path)
    (ws / ".studioml_ignore").write_text("# nothing yet\n")
    old = os.stat(ws / ".studioml_ignore")
    os.utime(ws / ".studioml_ignore", ns=(old.st_atime_ns, old.st_mtime_ns - 10**10))
    for path in ws.rglob("*"):  # older than the stat cache's 2 s: trusted by the snapshot
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns - 10**10))
    ignore, asked = counted(ws)
    first = new_store().put_tree(ws, ignore=ignore, watch=True)
    assert "train.py" in asked and "data/x.txt" in asked
    ignore, asked = counted(ws)
    assert new_store().put_tree(ws, ignore=ignore, watch=True).tree == first.tree
    assert "train.py" not in asked and "data/x.txt" not in asked and "data" in asked  # folders still asked
    # New rules: every file is asked, and what they leave out is left out.
    (ws / ".studioml_ignore").write_text("*.yaml\n")
    ignore, asked = counted(ws)
    third = new_store().put_tree(ws, ignore=ignore, watch=True)
    assert "cfg.yaml" in asked and "cfg.yaml" not in _files(new_store(), third.tree)


def test_a_snapshot_under_a_functions_identity_is_not_reused_by_another_process(
    tmp_path: Path, trusting_cache: None
) -> None:
    from studio.objects.memo import lasting_identity

    assert not lasting_identity(("function", 1234)) and lasting_identity("keep-all")
    assert lasting_identity(("studio.workspace_ignore", "1", "/ws", None, None))
    ws = _workspace(tmp_path)
    store = open_object_store(str(tmp_path / "store"), tmp_path / "cache", tmp_path / "stat.db")
    store.put_tree(ws, ignore=lambda rel, is_dir: False, watch=True)
    again = open_object_store(str(tmp_path / "store"), tmp_path / "cache", tmp_path / "stat.db")
    asked: list[str] = []
    again.put_tree(ws, ignore=lambda rel, is_dir: asked.append(rel) or False, watch=True)  # type: ignore[func-returns-value]
    assert "train.py" in asked
