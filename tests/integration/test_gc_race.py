"""`studio gc` running while other processes capture: nothing a recorded tree names is lost.

Real processes on one store (a local folder, and S3 on a moto server): capture workers store
variants of a folder whose blobs are older than the grace period and unreferenced (their
experiment was deleted), wait a moment (a run records its tree only after preparing), then
record the tree (append it to a file that stands for the database). A collector process
loops `gc(recorded trees)` meanwhile. Afterwards every recorded tree must read back whole.

Without freshening, a capture that reuses an old blob leaves it old: the collector keeps the
young tree and deletes the blob under it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from studio.objects.backends import backend_for_url
from studio.objects.store import ObjectStore
from tests.fixtures.s3 import S3Storage

GRACE = 4.0
FRESHEN_AFTER = 0.5
WORKERS = 3
CAPTURES = 6

COMMON = """
import sys, time, random
from pathlib import Path
from studio.objects.backends import backend_for_url
from studio.objects.store import ObjectStore

url, work = sys.argv[1], Path(sys.argv[2])

def open_store(name):
    return ObjectStore(backend_for_url(url), work / f"cache-{name}", freshen_after=__FRESHEN__)

def make(folder, old, extra):
    folder.mkdir(parents=True, exist_ok=True)
    for j in range(8):
        (folder / f"f{j}.txt").write_text(f"old capture {old}, file {j}\\n" * 50)
    if extra:
        (folder / "extra.txt").write_text(f"new {extra}\\n")
""".replace("__FRESHEN__", repr(FRESHEN_AFTER))

SEED = COMMON + """
store = open_store("seed")
(work / "old").mkdir()
for w in range(__WORKERS__):
    for i in range(__CAPTURES__):
        make(work / f"old-{w}-{i}", f"{w}-{i}", "")
        (work / "old" / f"{w}-{i}").write_text(store.put_tree(work / f"old-{w}-{i}").tree)
""".replace("__WORKERS__", str(WORKERS)).replace("__CAPTURES__", str(CAPTURES))

CAPTURE = COMMON + """
w, records = int(sys.argv[3]), work / "records"
store = open_store(f"w{w}")
rnd = random.Random(w)
for i in range(__CAPTURES__):
    extra = f"{w}-{i}" if i % 2 == 0 else ""  # odd: exactly the old capture's tree
    make(work / f"src-{w}-{i}", f"{w}-{i}", extra)
    tree = store.put_tree(work / f"src-{w}-{i}").tree
    (work / "old" / f"{w}-{i}").unlink()  # the old experiment is deleted meanwhile
    time.sleep(rnd.uniform(0.2, 1.0))  # a run records its tree a moment after capturing
    with open(records, "a") as f:
        f.write(f"{tree} {w}-{i} {extra}\\n")
""".replace("__CAPTURES__", str(CAPTURES))

COLLECT = COMMON + """
store = open_store("gc")
stop = work / "stop"
rounds = 0
while not stop.exists() or rounds < 3:
    lines = (work / "records").read_text().splitlines() if (work / "records").exists() else []
    recorded = [line.split(" ")[0] for line in lines if len(line.split(" ")[0]) == 64]
    old = []
    for p in (work / "old").iterdir():
        try:
            old.append(p.read_text())
        except FileNotFoundError:
            pass
    store.gc(recorded + old, grace_seconds=__GRACE__)
    rounds += 1
    time.sleep(0.05)
print(rounds)
""".replace("__GRACE__", repr(GRACE))


def _py(code: str, url: str, work: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), url, str(work), *args], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _race(url: str, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    # The old capture: its blobs and tree are stored, older than the grace period, and no
    # experiment names them any more.
    seed = _py(SEED, url, work)
    out, err = seed.communicate(timeout=120)
    assert seed.returncode == 0, err
    time.sleep(GRACE + 1.5)
    collector = _py(COLLECT, url, work)
    time.sleep(0.3)
    workers = [_py(CAPTURE, url, work, str(n)) for n in range(WORKERS)]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err
    (work / "stop").touch()
    rounds, err = collector.communicate(timeout=300)
    assert collector.returncode == 0, err
    assert int(rounds) >= 3

    store = ObjectStore(backend_for_url(url), work / "cache-check")
    lines = (work / "records").read_text().splitlines()
    assert len(lines) == WORKERS * CAPTURES
    for n, line in enumerate(lines):
        tree, old, extra = line.split(" ")
        dest = work / "check" / str(n)
        store.materialize(tree, dest)  # NotFoundError here is the bug
        files = {p.name: p.read_text() for p in dest.iterdir()}
        assert files["f0.txt"] == f"old capture {old}, file 0\n" * 50 and len(files) == 8 + bool(extra)
        if extra:
            assert files["extra.txt"] == f"new {extra}\n"
        for entry in store.get_tree(tree).entries:
            assert store.read_blob(entry.hash)  # every blob present and intact


def test_gc_during_captures_local(tmp_path: Path) -> None:
    _race(str(tmp_path / "store"), tmp_path / "work")


def test_gc_during_captures_s3(s3_storage: S3Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_storage.env.items():
        monkeypatch.setenv(name, value)
    _race(s3_storage.url, tmp_path / "work")


def test_freshen_and_conditional_delete(tmp_path: Path) -> None:
    """The two backend steps the race depends on, on the local backend."""
    backend = backend_for_url(str(tmp_path / "store"))
    src = tmp_path / "f"
    src.write_bytes(b"x")
    key = "objects/ab/" + "c" * 62
    backend.put_file(src, key)
    path = tmp_path / "store" / key
    os.utime(path, (time.time() - 100, time.time() - 100))
    assert backend.freshen(key, 1, 10.0) and path.stat().st_mtime > time.time() - 5
    assert not backend.freshen(key, 2, 10.0)  # wrong size: as good as missing
    assert not backend.delete_if_older(key, time.time() - 50)  # freshened: kept
    assert backend.delete_if_older(key, time.time() + 1) and not path.exists()
    assert not backend.freshen(key, 1, 10.0) and not backend.delete_if_older(key, time.time())
