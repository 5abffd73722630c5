"""Object store: hashing, trees, stat cache, atomicity, safety, gc; one suite over every backend."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.exceptions import (
    ConflictError,
    IntegrityError,
    MissingDependencyError,
    NotFoundError,
    StoreError,
    UsageError,
)
from studio.objects import (
    LocalBackend,
    ObjectBackend,
    ObjectStore,
    StatCache,
    TreeEntry,
    backend_for_url,
    open_object_store,
)
from studio.objects import ingest as ingest_mod
from studio.objects import statcache as statcache_mod
from studio.objects.backends.remote import FsspecBackend, storage_options_from_env
from studio.objects.hashing import check_hash, hash_bytes, hash_file, object_key
from studio.objects.statcache import StatKey
from studio.objects.tree import encode_manifest

BACKENDS = ["local", "memory"]


@pytest.fixture
def trusting_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files in tests are seconds old; let the stat cache trust them at once."""
    monkeypatch.setattr(statcache_mod, "RACY_NS", 0)


def _backend_url(kind: str, tmp_path: Path) -> str:
    return str(tmp_path / "store") if kind == "local" else f"memory://studio-test-{uuid.uuid4().hex}"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    url = _backend_url(request.param, tmp_path)
    s = open_object_store(url, tmp_path / "cache", tmp_path / "stat.db")
    yield s
    if isinstance(s.backend, FsspecBackend):
        s.backend.fs.rm(s.backend.root, recursive=True)


@pytest.fixture
def local_store(tmp_path: Path) -> ObjectStore:
    return open_object_store(str(tmp_path / "store"), tmp_path / "cache", tmp_path / "stat.db")


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _object_files(store: ObjectStore) -> list[str]:
    return [k for k, _size, _mtime in store.backend.walk("objects/")]


def _read_dir(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- hashing and manifests ---------------------------------------------------------------


def test_hash_is_sha256_streamed(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    (tmp_path / "f").write_bytes(data)
    assert hash_bytes(data) == hashlib.sha256(data).hexdigest()
    assert hash_file(tmp_path / "f") == (hashlib.sha256(data).hexdigest(), len(data))
    h = hash_bytes(b"x")
    assert object_key(h) == f"objects/{h[:2]}/{h[2:]}"
    for junk in ("../etc", "AB" * 32, "a" * 63, ""):
        with pytest.raises(IntegrityError):
            check_hash(junk)


def test_manifest_canonical_form(tmp_path: Path, local_store: ObjectStore) -> None:
    h = hash_bytes(b"hi")
    entries = [TreeEntry("b", h, 2, 0o755), TreeEntry("a/é.txt", h, 2, 0o644)]
    data = encode_manifest("dir", entries)
    assert data == encode_manifest("dir", list(reversed(entries)))
    expected = (
        '{"algorithm":"sha256","entries":['
        f'{{"hash":"{h}","mode":420,"path":"a/é.txt","size":2}},'
        f'{{"hash":"{h}","mode":493,"path":"b","size":2}}],'
        '"format":"studio-tree/1","kind":"dir"}'
    ).encode()
    assert data == expected

    src = _tree(tmp_path / "src", {"b": b"hi", "a/é.txt": b"hi"})
    os.chmod(src / "b", 0o700)
    result = local_store.put_tree(src)
    manifest_path = tmp_path / "store" / "objects" / result.tree[:2] / result.tree[2:]
    assert stat.S_IMODE(manifest_path.stat().st_mode) == 0o444  # objects are immutable
    manifest = manifest_path.read_bytes()
    assert manifest == expected  # readable without studio: a plain JSON file named by its sha256
    assert hashlib.sha256(manifest).hexdigest() == result.tree
    assert json.loads(manifest)["entries"][0]["path"] == "a/é.txt"


def test_dedup_and_identical_trees(store: ObjectStore, tmp_path: Path) -> None:
    same = os.urandom(1000)
    a = _tree(tmp_path / "a", {"x": same, "sub/y": same, "z": b"other"})
    b = _tree(tmp_path / "b", {"x": same, "sub/y": same, "z": b"other"})
    first = store.put_tree(a)
    assert (first.files, first.size, first.uploaded_files, first.uploaded_bytes) == (3, 2005, 2, 1005)
    second = store.put_tree(b)
    assert second.tree == first.tree and second.uploaded_files == 0
    assert len(_object_files(store)) == 3  # two blobs + one manifest
    assert store.put_bytes(same) == hash_bytes(same) and len(_object_files(store)) == 3


# -- stat cache ----------------------------------------------------------------------------


def test_stat_cache_hits_and_misses(store: ObjectStore, tmp_path: Path, trusting_cache: None) -> None:
    src = _tree(tmp_path / "src", {"a": b"aaaa", "b": b"bbbb", "c": b"cccc"})
    assert store.put_tree(src).hashed_files == 3
    again = store.put_tree(src)
    assert again.hashed_files == 0 and again.uploaded_files == 0

    st = os.stat(src / "a")
    (src / "a").write_bytes(b"AAAA")  # same size, mtime put back: ctime still changes
    os.utime(src / "a", ns=(st.st_atime_ns, st.st_mtime_ns))
    (src / "b").write_bytes(b"bbbbb")  # size changes
    tmp = tmp_path / "c.new"
    tmp.write_bytes(b"cccc")  # same content, new inode
    os.replace(tmp, src / "c")
    r = store.put_tree(src)
    assert r.hashed_files == 3 and r.uploaded_files == 2
    assert {e.path: e.hash for e in store.get_tree(r.tree).entries}["a"] == hash_bytes(b"AAAA")


def test_stat_cache_unit(tmp_path: Path) -> None:
    db = tmp_path / "stat.db"
    one, two = StatCache(db), StatCache(db)  # two connections, as two processes would have
    key = StatKey(inode=1, size=10, mtime_ns=1_000, ctime_ns=2_000)
    assert one.record([("/x", key, "h1")], now_ns=10**12) == 1
    assert two.lookup("/x", key) == "h1"
    for changed in (
        StatKey(2, 10, 1_000, 2_000),
        StatKey(1, 11, 1_000, 2_000),
        StatKey(1, 10, 1_001, 2_000),
        StatKey(1, 10, 1_000, 2_001),
    ):
        assert two.lookup("/x", changed) is None
    # Racy: a stat younger than the granularity window is not trusted, hence not stored.
    young = StatKey(1, 10, 10**12 - 1, 10**12 - 1)
    assert two.record([("/y", young, "h2")], now_ns=10**12) == 0
    assert one.lookup("/y", young) is None
    assert (tmp_path / "stat.db-wal").exists() or one._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    one.close()
    two.close()


def test_racy_files_are_hashed_again(local_store: ObjectStore, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {"a": b"1"})
    local_store.put_tree(src)
    assert local_store.put_tree(src).hashed_files == 1  # written just now: not trusted yet


# -- atomicity -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["small", "large"])
def test_crash_mid_write_leaves_no_partial_object(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    src = _tree(tmp_path / "src", {"f": os.urandom(3 << 20)})

    def half_then_crash(src_f, dst_f):  # type: ignore[no-untyped-def]
        dst_f.write(src_f.read(1 << 20))
        raise OSError(28, "No space left on device")

    def write_half_then_crash(out, data):  # type: ignore[no-untyped-def]
        out.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    if path == "large":
        monkeypatch.setattr(ingest_mod, "SMALL_FILE", 1024)
        monkeypatch.setattr(ingest_mod, "copy_and_hash", half_then_crash)
    else:
        monkeypatch.setattr(ingest_mod, "write_all", write_half_then_crash)
    with pytest.raises(StoreError):
        store.put_tree(src)
    assert _object_files(store) == []
    staging = store.backend.staging_dir or store.cache.staging_dir
    assert list(staging.iterdir()) == []
    monkeypatch.undo()
    result = store.put_tree(src)
    assert result.uploaded_files == 1 and store.read_blob(store.get_tree(result.tree).entries[0].hash)


@pytest.mark.parametrize("small_file", [1024, 4 << 20])
def test_large_and_small_files_roundtrip(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_file: int
) -> None:
    monkeypatch.setattr(ingest_mod, "SMALL_FILE", small_file)
    files = {"big": os.urandom(2 << 20), "tiny": b"t", "empty": b""}
    result = store.put_tree(_tree(tmp_path / "src", files))
    assert (result.uploaded_files, result.size) == (3, (2 << 20) + 1)
    store.materialize(result.tree, tmp_path / "out")
    assert _read_dir(tmp_path / "out") == files


def test_local_put_file_crash_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = LocalBackend(tmp_path / "store")
    (tmp_path / "f").write_bytes(b"x" * 5000)

    def crash(*args: object) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr(shutil, "copyfileobj", crash)
    with pytest.raises(OSError):
        backend.put_file(tmp_path / "f", "objects/ab/cd")
    assert not backend.exists("objects/ab/cd") and list(backend.staging_dir.iterdir()) == []


def test_materialize_crash_keeps_old_file(
    local_store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio.objects import materialize as mat

    tree = local_store.put_tree(_tree(tmp_path / "src", {"f": b"new content"})).tree
    dest = _tree(tmp_path / "dest", {"f": b"old"})

    def crash(src_f, dst_f):  # type: ignore[no-untyped-def]
        dst_f.write(b"ne")
        raise OSError(5, "I/O error")

    monkeypatch.setattr(mat, "copy_and_hash", crash)
    with pytest.raises(OSError):
        local_store.materialize(tree, dest)
    assert _read_dir(dest) == {"f": b"old"}
    assert [p.name for p in dest.iterdir()] == ["f"]


# -- capture rules -------------------------------------------------------------------------


def test_symlinks_on_capture(store: ObjectStore, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outside = _tree(tmp_path / "outside", {"secret": b"s"})
    src = _tree(tmp_path / "src", {"real.txt": b"content", "d/inner": b"i"})
    os.symlink("real.txt", src / "inside-link")
    os.symlink(outside / "secret", src / "outside-link")
    os.symlink("missing", src / "dangling")
    os.symlink("d", src / "dir-link")
    result = store.put_tree(src)
    entries = {e.path: e for e in store.get_tree(result.tree).entries}
    assert sorted(entries) == ["d/inner", "inside-link", "real.txt"]
    assert entries["inside-link"].hash == hash_bytes(b"content")
    assert "outside-link" in caplog.text and "dangling" in caplog.text


def test_ignore_prunes_directories(store: ObjectStore, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {"keep.py": b"1", "skip/a": b"2", "skip/deep/b": b"3", "x.pyc": b"4"})
    seen: list[tuple[str, bool]] = []

    def ignore(rel: str, is_dir: bool) -> bool:
        seen.append((rel, is_dir))
        return rel == "skip" or rel.endswith(".pyc")

    tree = store.get_tree(store.put_tree(src, ignore=ignore).tree)
    assert [e.path for e in tree.entries] == ["keep.py"]
    assert ("skip", True) in seen and not any(rel.startswith("skip/") for rel, _ in seen)


def test_modes_and_skipped_names(store: ObjectStore, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {"run.sh": b"#!/bin/sh\n", "data": b"d"})
    os.chmod(src / "run.sh", 0o700)
    os.chmod(src / "data", 0o600)
    if sys.platform.startswith("linux"):
        (src / os.fsdecode(b"bad\xff")).write_bytes(b"not utf-8 name")
    tree = store.get_tree(store.put_tree(src).tree)
    assert {e.path: e.mode for e in tree.entries} == {"data": 0o644, "run.sh": 0o755}


def test_single_file_artifact(store: ObjectStore, tmp_path: Path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"w" * 100)
    result = store.put_tree(f)
    tree = store.get_tree(result.tree)
    assert tree.kind == "file" and [e.path for e in tree.entries] == ["weights.bin"]
    out = store.materialize(result.tree, tmp_path / "elsewhere" / "w.bin")
    assert out == tmp_path / "elsewhere" / "w.bin" and out.read_bytes() == b"w" * 100
    with pytest.raises(NotFoundError):
        store.put_tree(tmp_path / "missing")


def test_previous_hint_and_changed_files(store: ObjectStore, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {f"f{i}": os.urandom(100) for i in range(20)})
    first = store.put_tree(src)
    (src / "f3").write_bytes(b"changed")
    second = store.put_tree(src, previous=first.tree)
    assert second.tree != first.tree and second.uploaded_files == 1 and second.uploaded_bytes == 7


def test_cache_hits_whose_blobs_were_collected_are_stored_again(
    store: ObjectStore, tmp_path: Path, trusting_cache: None
) -> None:
    src = _tree(tmp_path / "src", {"a": b"aa", "b": b"bb"})
    first = store.put_tree(src)
    store.gc(keep_trees=[])
    assert _object_files(store) == []
    again = store.put_tree(src, previous=first.tree)
    assert again.tree == first.tree and again.uploaded_files == 2
    store.materialize(again.tree, tmp_path / "out")
    assert _read_dir(tmp_path / "out") == {"a": b"aa", "b": b"bb"}


def test_concurrent_captures_of_the_same_tree(store: ObjectStore, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {f"d{i % 3}/f{i}": os.urandom(2000) for i in range(30)})
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(store.put_tree(src).tree)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 3
    assert len(_object_files(store)) == 31


# -- materialize ---------------------------------------------------------------------------


def test_materialize_roundtrip_keeps_extra_files_and_unchanged_inodes(store: ObjectStore, tmp_path: Path) -> None:
    files = {"a.txt": b"A", "d/b.bin": os.urandom(50_000), "d/e/c": b""}
    tree = store.put_tree(_tree(tmp_path / "src", files)).tree
    dest = _tree(tmp_path / "dest", {"extra.txt": b"mine", "d/b.bin": files["d/b.bin"], "a.txt": b"old"})
    ino_same = os.stat(dest / "d/b.bin").st_ino
    ino_changed = os.stat(dest / "a.txt").st_ino
    assert store.materialize(tree, dest) == dest
    assert _read_dir(dest) == {**files, "extra.txt": b"mine"}
    assert os.stat(dest / "d/b.bin").st_ino == ino_same  # identical content left in place
    assert os.stat(dest / "a.txt").st_ino != ino_changed  # replaced by rename, not rewritten
    assert not [p for p in dest.rglob("*studio-tmp*")]


def test_materialize_readonly(store: ObjectStore, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", {"f": b"1", "tool": b"2"})
    os.chmod(src / "tool", 0o755)
    tree = store.put_tree(src).tree
    dest = tmp_path / "ro"
    store.materialize(tree, dest, readonly=True)
    assert stat.S_IMODE(os.stat(dest / "f").st_mode) == 0o444
    assert stat.S_IMODE(os.stat(dest / "tool").st_mode) == 0o555
    (src / "f").write_bytes(b"changed")
    store.materialize(store.put_tree(src).tree, dest, readonly=True)  # readonly files are still updatable
    assert (dest / "f").read_bytes() == b"changed"
    store.materialize(tree, dest)
    assert stat.S_IMODE(os.stat(dest / "f").st_mode) == 0o644


def _crafted(store: ObjectStore, path: str) -> str:
    h = store.put_bytes(b"payload")
    doc = {
        "algorithm": "sha256",
        "entries": [{"hash": h, "mode": 420, "path": path, "size": 7}],
        "format": "studio-tree/1",
        "kind": "dir",
    }
    return store.put_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


@pytest.mark.parametrize("path", ["../x", "/abs", "a/../../x", "a//b", "./a", "..", "c:/x", "a\\..\\x"])
def test_materialize_refuses_escaping_paths(store: ObjectStore, tmp_path: Path, path: str) -> None:
    tree = _crafted(store, path)
    dest = tmp_path / "w" / "dest"
    with pytest.raises(IntegrityError):
        store.materialize(tree, dest)
    assert not (tmp_path / "w" / "x").exists() and not Path("/abs").exists()
    assert not dest.exists() or not any(dest.iterdir())


def test_materialize_refuses_symlinks_leading_outside(store: ObjectStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    tree = store.put_tree(_tree(tmp_path / "src", {"ok": b"1", "sub/evil": b"2"})).tree
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "sub")
    with pytest.raises(IntegrityError):
        store.materialize(tree, dest)
    assert list(outside.iterdir()) == [] and not (dest / "ok").exists()  # refused before writing


def test_materialize_replaces_a_symlink_instead_of_writing_through_it(store: ObjectStore, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"do not touch")
    tree = store.put_tree(_tree(tmp_path / "src", {"f": b"from the tree"})).tree
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(victim, dest / "f")
    store.materialize(tree, dest)
    assert victim.read_bytes() == b"do not touch"
    assert not (dest / "f").is_symlink() and (dest / "f").read_bytes() == b"from the tree"


def test_materialize_conflicts(store: ObjectStore, tmp_path: Path) -> None:
    tree = store.put_tree(_tree(tmp_path / "src", {"a/b": b"1"})).tree
    dest = _tree(tmp_path / "dest", {"a": b"a file where a folder should be"})
    with pytest.raises(ConflictError):
        store.materialize(tree, dest)
    with pytest.raises(NotFoundError):
        store.materialize("0" * 64, tmp_path / "x")


def test_corrupt_objects_are_detected(local_store: ObjectStore, tmp_path: Path) -> None:
    tree = local_store.put_tree(_tree(tmp_path / "src", {"f": b"good data"})).tree
    h = local_store.get_tree(tree).entries[0].hash
    obj = tmp_path / "store" / object_key(h)
    os.chmod(obj, 0o644)
    obj.write_bytes(b"evil data")
    with pytest.raises(IntegrityError):
        local_store.read_blob(h)
    with pytest.raises(IntegrityError), local_store.open_blob(h) as f:
        f.read()
    with pytest.raises(IntegrityError):
        local_store.materialize(tree, tmp_path / "dest")
    assert not (tmp_path / "dest" / "f").exists()
    # a truncated object (e.g. after a power loss) counts as missing and is stored again
    obj.write_bytes(b"")
    assert local_store.put_tree(tmp_path / "src").uploaded_files == 1
    assert local_store.read_blob(h) == b"good data"


def test_blobs(store: ObjectStore) -> None:
    h = store.put_bytes(b"hello")
    assert store.has(h) and not store.has(hash_bytes(b"nope")) and not store.has("../x")
    assert store.read_blob(h) == b"hello"
    with store.open_blob(h) as f:
        assert f.read() == b"hello"
    with pytest.raises(NotFoundError):
        store.read_blob(hash_bytes(b"nope"))
    with pytest.raises(IntegrityError):
        store.get_tree(h)  # a blob that is not a manifest


# -- gc ------------------------------------------------------------------------------------


def test_gc(store: ObjectStore, tmp_path: Path) -> None:
    keep = store.put_tree(_tree(tmp_path / "a", {"shared": b"s", "only-a": b"a"})).tree
    drop = store.put_tree(_tree(tmp_path / "b", {"shared": b"s", "only-b": b"bb"})).tree
    assert len(_object_files(store)) == 5
    dry = store.gc([keep], dry_run=True)
    assert (dry.removed_objects, dry.kept_objects) == (2, 3) and len(_object_files(store)) == 5
    assert store.gc([keep], grace_seconds=3600).removed_objects == 0  # everything is young
    manifest_size = store.backend.size(object_key(drop))
    assert manifest_size is not None
    report = store.gc([keep, "f" * 64])  # a missing kept tree is only warned about
    assert (report.removed_objects, report.kept_objects) == (2, 3)
    assert report.removed_bytes == len(b"bb") + manifest_size
    assert not store.has(drop) and store.has(keep)
    store.materialize(keep, tmp_path / "out")
    assert _read_dir(tmp_path / "out") == {"only-a": b"a", "shared": b"s"}


# -- backends: one contract, every implementation -----------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectBackend]:
    b = backend_for_url(_backend_url(request.param, tmp_path))
    yield b
    if isinstance(b, FsspecBackend):
        b.fs.rm(b.root, recursive=True)


def test_backend_contract(backend: ObjectBackend, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"0123456789")
    key = "objects/aa/bbbb"
    assert not backend.exists(key) and backend.size(key) is None
    backend.put_file(src, key)
    backend.put_file(src, key)  # idempotent
    assert src.exists() and backend.exists(key) and backend.size(key) == 10
    with backend.open(key) as f:
        assert f.read() == b"0123456789"
    backend.get_file(key, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"0123456789"
    moved = tmp_path / "moved.bin"
    moved.write_bytes(b"xyz")
    backend.put_file(moved, "objects/cc/dddd", move=True)
    assert not moved.exists()
    listed = sorted((k, s) for k, s, _m in backend.walk("objects/"))
    assert listed == [("objects/aa/bbbb", 10), ("objects/cc/dddd", 3)]
    assert all(m > 0 for _k, _s, m in backend.walk("objects/"))
    backend.delete(key)
    backend.delete(key)  # missing is fine
    assert not backend.exists(key)
    with pytest.raises(NotFoundError):
        backend.open(key)
    with pytest.raises(NotFoundError):
        backend.get_file(key, tmp_path / "nope")


def test_urls_choose_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(backend_for_url(str(tmp_path / "a")), LocalBackend)
    file_backend = backend_for_url(f"file://{tmp_path}/b")
    assert isinstance(file_backend, LocalBackend) and file_backend.root == tmp_path / "b"
    assert isinstance(backend_for_url("memory://x"), FsspecBackend)
    with pytest.raises(UsageError):
        backend_for_url("nosuchscheme://bucket")
    with pytest.raises(UsageError):
        backend_for_url("file://otherhost/path")

    import fsspec.core

    def no_plugin(url: str, **kw: object) -> None:
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec.core, "url_to_fs", no_plugin)
    with pytest.raises(MissingDependencyError, match=r"pip install 'studio-experiments\[s3\]'"):
        backend_for_url("s3://bucket/prefix")


def test_s3_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert storage_options_from_env("s3", {}) == {}
    assert storage_options_from_env("s3", {"AWS_ENDPOINT_URL": "http://a"}) == {"endpoint_url": "http://a"}
    env = {"AWS_ENDPOINT_URL": "http://a", "STUDIOML_S3_ENDPOINT_URL": "http://b"}
    assert storage_options_from_env("s3", env) == {"endpoint_url": "http://b"}
    assert storage_options_from_env("gs", env) == {}
    pytest.importorskip("s3fs")
    monkeypatch.setenv("STUDIOML_S3_ENDPOINT_URL", "http://127.0.0.1:1")
    b = backend_for_url("s3://bucket/studio")
    assert isinstance(b, FsspecBackend) and b.root == "bucket/studio"
    assert b.fs.client_kwargs.get("endpoint_url") == "http://127.0.0.1:1" or b.fs.endpoint_url == "http://127.0.0.1:1"
    assert "127.0.0.1" not in b.url  # the endpoint is not part of what gets stored


def test_put_tree_and_materialize_report_each_file(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"a" * 1000)
    (src / "d" / "b.bin").write_bytes(b"b" * 2500)
    seen: list[int] = []
    lock = threading.Lock()

    def on_file(n: int) -> None:
        with lock:
            seen.append(n)

    res = store.put_tree(src, on_file=on_file)
    assert sorted(seen) == [1000, 2500] and sum(seen) == res.size
    seen.clear()
    store.put_tree(src, on_file=on_file)  # unchanged files (stat-cache hits) count too
    assert sorted(seen) == [1000, 2500]
    seen.clear()
    store.materialize(res.tree, tmp_path / "out", on_file=on_file)
    assert sorted(seen) == [1000, 2500] and (tmp_path / "out" / "d" / "b.bin").read_bytes() == b"b" * 2500
