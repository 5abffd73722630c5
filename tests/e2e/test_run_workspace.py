"""`studio run` records the workspace at start and, a mutable artifact, again when the script
ends: what the script changed in its folder is in the final version, whichever way the
re-capture learns of it (the start capture's watch, a scan, the stat cache)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from studio.objects import open_object_store
from studio.objects.hashing import hash_bytes
from tests.e2e.helpers import studio, studio_json

# The script reads the workspace tree recorded before it started (its first checkpoint comes
# only after saveWorkspaceFrequency), then changes its folder.
SCRIPT = """\
import json, os, subprocess, sys, time
key = os.environ["STUDIOML_EXPERIMENT"]
shown = subprocess.run([sys.executable, "-m", "studio", "runs", "show", key, "--json"],
                       capture_output=True, text=True, check=True).stdout
with open(os.path.join(os.environ["STUDIOML_HOME"], "start-tree"), "w") as fh:
    fh.write(json.loads(shown)["artifacts"]["workspace"]["tree"])
if os.environ.get("CHANGE") == "1":
    st = os.stat("data.txt")
    with open("data.txt", "r+b") as fh:  # same size, in place, mtime put back
        fh.write(b"AFTER!")
    os.utime("data.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.remove("gone.txt")
    os.makedirs("results", exist_ok=True)
    with open("results/r.csv", "w") as fh:
        fh.write("1,2\\n")
    with open("notes.pyc", "w") as fh:  # ignored by the workspace rules
        fh.write("x")
print("done")
"""


def _entries(home: Path, tree: str) -> dict[str, str]:
    store = open_object_store(str(home / "objects"), home / "cache", home / "stat-check.db")
    return {e.path: e.hash for e in store.get_tree(tree).entries}


def _setup(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text(textwrap.dedent(SCRIPT))
    (ws / "data.txt").write_bytes(b"BEFORE")
    (ws / "gone.txt").write_bytes(b"bye")
    return ws


def test_final_workspace_holds_the_scripts_changes_and_start_the_original(studio_home: Path, tmp_path: Path) -> None:
    ws = _setup(tmp_path)
    proc = studio("run", "-e", "w1", "train.py", cwd=ws, env={"CHANGE": "1"})
    assert proc.returncode == 0, proc.stderr
    final = studio_json("runs", "show", "w1")["artifacts"]["workspace"]["tree"]
    start = (studio_home / "start-tree").read_text()
    assert final != start
    at_start, at_end = _entries(studio_home, start), _entries(studio_home, final)
    assert at_start["data.txt"] == hash_bytes(b"BEFORE") and "gone.txt" in at_start
    assert "results/r.csv" not in at_start
    assert at_end["data.txt"] == hash_bytes(b"AFTER!")
    assert "gone.txt" not in at_end and at_end["results/r.csv"] == hash_bytes(b"1,2\n")
    assert "notes.pyc" not in at_end


def test_untouched_workspace_keeps_its_start_tree(studio_home: Path, tmp_path: Path) -> None:
    ws = _setup(tmp_path)
    for key in ("u1", "u2"):  # the second run: stat cache warm, everything unchanged
        proc = studio("run", "-e", key, "train.py", cwd=ws)
        assert proc.returncode == 0, proc.stderr
        final = studio_json("runs", "show", key)["artifacts"]["workspace"]["tree"]
        assert final == (studio_home / "start-tree").read_text()
    assert _entries(studio_home, final)["data.txt"] == hash_bytes(b"BEFORE")
    # A change between the two runs is in the next run's start capture.
    (ws / "data.txt").write_bytes(b"EDITED")
    os.utime(ws / "data.txt", ns=(0, os.stat(ws / "train.py").st_mtime_ns))
    assert studio("run", "-e", "u3", "train.py", cwd=ws).returncode == 0
    assert _entries(studio_home, (studio_home / "start-tree").read_text())["data.txt"] == hash_bytes(b"EDITED")
