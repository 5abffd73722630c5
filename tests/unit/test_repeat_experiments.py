"""What makes repeated experiments in one process cheap keeps every record right.

`workbook.new_experiment()` in a loop reuses the stores, host facts and git state, runs each
session's background loop on a reused thread, records a checkpoint in one transaction, and
the first `studio.log` imports nothing heavy on the calling thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from studio import capture
from studio.api.context import shared_context
from studio.capture import git as capture_git
from studio.entities import ArtifactSpec, Experiment, Status
from studio.exceptions import NotFoundError
from studio.meta.lite import open_lite_store

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    capture.forget_environment()


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def _counting_git(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = capture.git_info

    def counted(path: Path) -> dict:  # type: ignore[type-arg]
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(capture, "git_info", counted)
    return calls


def test_git_state_reused_only_while_repository_and_workspace_are_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print(1)\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "one")
    calls = _counting_git(monkeypatch)

    first = capture.start_environment(repo / "train.py", reuse=True).result("tree-1")
    assert first["git"]["commit"] and not first["git"]["dirty"] and len(calls) == 1
    again = capture.start_environment(repo / "train.py", reuse=True).result("tree-1")
    assert again["git"] == first["git"] and len(calls) == 1  # nothing changed: git not run
    assert again["host"] == first["host"] and again["pythonenv"] == first["pythonenv"]

    # An unstaged edit changes no git file, but the workspace's tree: git runs again.
    (repo / "train.py").write_text("print(2)\n")
    edited = capture.start_environment(repo / "train.py", reuse=True).result("tree-2")
    assert len(calls) == 2 and edited["git"]["dirty"] and "+print(2)" in edited["git"]["diff"]

    # A commit changes the fingerprint (HEAD's ref, the index): git runs again.
    git(repo, "commit", "-q", "-am", "two")
    committed = capture.start_environment(repo / "train.py", reuse=True).result("tree-2")
    assert len(calls) == 3 and committed["git"]["commit"] != first["git"]["commit"]
    assert not committed["git"]["dirty"]

    # Staging a new file changes the index: git runs again.
    (repo / "new.py").write_text("x = 1\n")
    git(repo, "add", "new.py")
    staged = capture.start_environment(repo / "train.py", reuse=True).result("tree-3")
    assert len(calls) == 4 and "new.py" in staged["git"]["diff"]

    # Without `reuse` (every `studio run`), git always runs.
    capture.start_environment(repo / "train.py").result("tree-3")
    capture.start_environment(repo / "train.py").result("tree-3")
    assert len(calls) == 6
    assert capture_git.repository_state(repo) is not None


def test_git_runs_every_time_when_the_workspace_is_below_the_repository_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "sub" / "train.py").write_text("print(1)\n")
    (repo / "other.py").write_text("a\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    calls = _counting_git(monkeypatch)
    capture.start_environment(repo / "sub" / "train.py", reuse=True).result("t")
    (repo / "other.py").write_text("b\n")  # outside the workspace: its tree cannot tell
    second = capture.start_environment(repo / "sub" / "train.py", reuse=True).result("t")
    assert len(calls) == 2 and "other.py" in second["git"]["diff"]


def test_outside_a_repository_git_runs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture_git, "repository_state", lambda p: ("none", str(p), True, ()))
    calls = _counting_git(monkeypatch)
    for tree in ("a", "b"):
        assert capture.start_environment(tmp_path, reuse=True).result(tree)["git"] == {}
    assert len(calls) == 1
    monkeypatch.setenv("GIT_DIR", str(tmp_path))  # git told where to look: never reused
    monkeypatch.undo()
    monkeypatch.setenv("GIT_DIR", str(tmp_path))
    assert capture_git.repository_state(tmp_path) is None


def test_put_checkpoint_records_artifacts_and_time_in_one_call(tmp_path: Path) -> None:
    from studio.meta import open_meta_store
    from studio.meta.base import MetaStore

    url = f"sqlite:///{tmp_path / 'm.db'}"
    open_meta_store(url).close()  # created and migrated
    lite = open_lite_store(url)
    full = lite._full_store()  # type: ignore[attr-defined]
    for store, key in ((lite, "a"), (full, "b")):
        store.create_experiment(Experiment(key=key, status=Status.RUNNING))
        arts = [ArtifactSpec(tag="metrics", local_path="/x", tree="t1", size=3, files=1, updated=1.0),
                ArtifactSpec(tag="modeldir", local_path="/y", tree="t2")]  # fmt: skip
        store.put_checkpoint(key, arts, 123.5)
        got = lite.get_experiment(key)
        assert got.time_last_checkpoint == 123.5
        assert got.artifacts["metrics"].tree == "t1" and got.artifacts["modeldir"].tree == "t2"
        store.put_checkpoint(key, [], 124.0)  # nothing changed: the time only
        assert lite.get_experiment(key).time_last_checkpoint == 124.0
        with pytest.raises(NotFoundError):
            store.put_checkpoint("nope", arts, 1.0)
    assert MetaStore.put_checkpoint is not type(lite).put_checkpoint  # one transaction on SQLite
    lite.close()


def test_first_log_imports_nothing_heavy_on_the_training_thread(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, threading, time
        seen = {{}}

        class Spy:
            def find_spec(self, name, path=None, target=None):
                # submodules are looked for only by a real import (not by find_spec probes)
                if name.startswith(("pyarrow.", "numpy.")):
                    seen.setdefault(name.partition(".")[0], threading.current_thread().name)
                return None

        sys.meta_path.insert(0, Spy())
        import studio
        from studio.tracking import metrics
        metrics.configure({str(tmp_path / 'metrics')!r})
        for i in range(100):
            studio.log(i, loss=i / 10)
        # what the training loop paid is above; an explicit flush right away is the caller's
        # own thread's work, once the warm-up started at `configure` is done
        if metrics._warming is not None:
            metrics._warming.join(60)
        metrics.default_logger().flush()
        print(sorted(seen.items()))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    ).stdout  # fmt: skip
    imported = dict(eval(out.strip().splitlines()[-1]))  # noqa: S307 - our own output
    assert set(imported) == {"numpy", "pyarrow"}, imported
    assert "MainThread" not in imported.values(), imported
    from studio.tracking import series

    assert len(series.read_series(tmp_path / "metrics", ["loss"])) == 100


def test_sessions_in_a_loop_reuse_one_background_thread(
    studio_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal
    import threading

    from studio.tracking import metrics
    from studio.workbook import new_experiment, starting
    from studio.workbook.session import HOOKS

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["-c"])
    saved_env = dict(os.environ)
    import builtins

    saved = (sys.excepthook, sys.exit, signal.getsignal(signal.SIGTERM), builtins.SystemExit)
    try:
        keys = []
        for _ in range(3):
            exp = new_experiment(params={"lr": 0.1}, echo=False)
            keys.append(exp.tag)
            exp.close()
        names = [t.name for t in threading.enumerate() if t.name == "studio-workbook"]
        assert len(names) == 1
        ctx = shared_context()
        for key in keys:
            record = ctx.meta.get_experiment(key)
            assert record.status == Status.FINISHED and record.time_last_checkpoint
            assert record.artifacts["workbook"].tree and record.host
    finally:
        sys.excepthook, sys.exit = saved[0], saved[1]
        signal.signal(signal.SIGTERM, saved[2])
        builtins.SystemExit = saved[3]  # type: ignore[misc]  # an owned session replaced it
        HOOKS.installed = False
        starting._created_here.clear()
        os.environ.clear()
        os.environ.update(saved_env)
        metrics.configure(None)


def test_metric_segments_are_stored_once_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.objects import open_object_store
    from studio.objects.backends.local import LocalBackend
    from studio.tracking import metrics, series

    store = open_object_store(str(tmp_path / "objects"), cache_dir=tmp_path / "cache")
    folder = tmp_path / "metrics"
    with metrics.Logger(folder) as logger:
        for step in range(1000):
            logger.log(step, loss=step / 10)
    (other := tmp_path / "other").mkdir()
    (other / "model.bin").write_bytes(b"weights" * 1000)
    segment = next(p for p in folder.iterdir() if not p.name.startswith("."))
    result = store.put_tree(folder, link=True)
    assert segment.stat().st_nlink == 2  # the run folder's file is the stored object
    assert not os.access(segment, os.W_OK) or os.geteuid() == 0  # read-only like every object
    store.put_tree(other)  # not a segment folder: copied
    assert (other / "model.bin").stat().st_nlink == 1
    # The stored object is the segment, byte for byte (and its hash checks out on read).
    [entry] = [e for e in store.get_tree(result.tree).entries if e.path == segment.name]
    assert store.read_blob(entry.hash) == segment.read_bytes()
    assert len(series.read_series(folder, ["loss"])) == 1000
    # A store that cannot link (another file system, a remote store) copies instead.
    monkeypatch.setattr(LocalBackend, "link_file", lambda self, path, key: False)
    with metrics.Logger(folder2 := tmp_path / "metrics2") as logger:
        logger.log(0, loss=1.0)
    store.put_tree(folder2, link=True)
    assert all(p.stat().st_nlink == 1 for p in folder2.iterdir())


def test_final_checkpoint_records_artifacts_and_the_end_together(tmp_path: Path) -> None:
    from studio.exceptions import ConflictError
    from studio.meta import open_meta_store
    from studio.meta.base import MetaStore

    url = f"sqlite:///{tmp_path / 'm.db'}"
    open_meta_store(url).close()
    lite = open_lite_store(url)
    full = lite._full_store()  # type: ignore[attr-defined]
    for store, key in ((lite, "a"), (full, "b")):  # one transaction, and the default (two)
        store.create_experiment(Experiment(key=key, status=Status.RUNNING, worker="w"))
        ws = ArtifactSpec(tag="workspace", local_path="/w", tree="t0", size=1, files=1, updated=1.0)
        store.put_final_checkpoint(
            key, [ws], 50.0, Status.FINISHED, expect=[Status.RUNNING], worker="w", returncode=0,
            fields={"git": {"commit": "abc"}},
        )  # fmt: skip
        got = lite.get_experiment(key)
        assert got.status == Status.FINISHED and got.returncode == 0 and got.time_finished
        assert got.time_last_checkpoint == 50.0 and got.artifacts["workspace"].tree == "t0"
        assert got.git == {"commit": "abc"} and got.lease_expires is None
        assert [e.status for e in lite.status_history(key)] == [Status.RUNNING, Status.FINISHED]
        # Refused (no longer running): the checkpoint is still recorded, the status is not.
        late = ArtifactSpec(tag="modeldir", local_path="/m", tree="t9")
        with pytest.raises(ConflictError):
            store.put_final_checkpoint(key, [late], 60.0, Status.FAILED, expect=[Status.RUNNING])
        got = lite.get_experiment(key)
        assert got.status == Status.FINISHED and got.artifacts["modeldir"].tree == "t9"
        with pytest.raises(NotFoundError):
            store.put_final_checkpoint("nope", [], 1.0, Status.FINISHED)
    assert MetaStore.put_final_checkpoint is not type(lite).put_final_checkpoint
    lite.close()


def test_secret_file_names_match_as_the_patterns_say() -> None:
    import fnmatch

    from studio.capture.secrets import SECRET_FILES, is_secret_file

    names = [".env", ".env.local", "prod.env", "id_rsa", "id_rsa_work", "server.pem", "a.key", "x.p12",
             ".netrc", "credentials", "credentials.json", "service-account-1.json", ".htpasswd",
             "train.py", "env", ".envrc", "id_rsa.pub.txt", "key", "credentialsx", ".ENV", "notes.md"]  # fmt: skip
    for name in names:
        expected = any(fnmatch.fnmatchcase(name, p) for p in SECRET_FILES)
        assert is_secret_file(name) is expected, name
        assert is_secret_file(f"sub/dir/{name}") is expected, name


def test_small_captures_use_no_thread_pool_and_empty_folders_no_stat_cache_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio.objects import open_object_store
    from studio.objects import store as store_module
    from studio.objects.statcache import StatCache

    objects = open_object_store(str(tmp_path / "objects"), cache_dir=tmp_path / "cache",
                                stat_cache=tmp_path / "statcache.db")
    folder = tmp_path / "ws"
    folder.mkdir()
    for i in range(5):
        (folder / f"f{i}.py").write_text(f"x = {i}\n")  # new: stat-cache misses, hashed now

    def no_pool(self: object, *args: object) -> None:
        raise AssertionError("a pool was started for a capture that fits one batch")

    monkeypatch.setattr(store_module._LazyPool, "submit", no_pool)
    first = objects.put_tree(folder)
    assert first.files == 5 and first.uploaded_files == 5
    queries: list[str] = []
    real = StatCache._select

    def counted(self: StatCache, where: str, args: tuple[str, ...]) -> object:
        queries.append(where)
        return real(self, where, args)

    monkeypatch.setattr(StatCache, "_select", counted)
    (empty := tmp_path / "empty").mkdir()
    objects.put_tree(empty)
    assert queries == []
    again = objects.put_tree(folder)  # files: at most one read of the cache (none when this
    assert again.tree == first.tree and len(queries) <= 1  # process's snapshot of it answers)


def test_wal_checkpoints_can_move_to_a_background_thread(tmp_path: Path) -> None:
    from studio.entities import ExperimentQuery
    from studio.meta import open_meta_store
    from studio.meta.lite import BACKGROUND_AUTOCHECKPOINT

    url = f"sqlite:///{tmp_path / 'm.db'}"
    open_meta_store(url).close()
    lite = open_lite_store(url)
    lite.checkpoint_wal()  # nothing written: nothing to do, no connection opened
    assert lite._checkpointer is None  # type: ignore[attr-defined]
    lite.checkpoint_in_background()
    conn = lite._connection()  # type: ignore[attr-defined]
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKGROUND_AUTOCHECKPOINT
    db = tmp_path / "m.db"
    size = db.stat().st_size
    for i in range(50):
        lite.create_experiment(Experiment(key=f"k{i}", status=Status.RUNNING))
    assert db.stat().st_size == size  # in the WAL only: no commit checkpointed it
    lite.checkpoint_wal()
    assert db.stat().st_size > size  # copied into the database by the caller of checkpoint_wal
    assert len(lite.query(ExperimentQuery(limit=100)).items) == 50
    lite.close()


def test_shared_settings_are_read_again_when_what_they_read_changes(
    studio_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio.api import context

    first = context._settings(None)
    assert context._settings(None) is first  # nothing changed: not read again
    (studio_home / "config.yaml").write_text("saveWorkspaceFrequency: 7\n")
    edited = context._settings(None)
    assert edited.save_workspace_frequency == 7
    monkeypatch.setenv("STUDIOML_SAVE_FREQUENCY", "9")
    assert context._settings(None).save_workspace_frequency == 9
    monkeypatch.delenv("STUDIOML_SAVE_FREQUENCY")
    (studio_home / "config.yaml").write_text("saveWorkspaceFrequency: 8\n")  # same size, new mtime
    assert context._settings(None).save_workspace_frequency == 8


def test_shared_settings_survive_the_variables_each_experiment_sets(
    studio_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio.api import context

    first = context._settings(None)
    monkeypatch.setenv("STUDIOML_EXPERIMENT", "e1")
    monkeypatch.setenv("STUDIOML_METRICS_DIR", "/x/e1/metrics")
    assert context._settings(None) is first  # set by new_experiment(): not a new setting
    # ...unless the config's env section reads one of them.
    config = studio_home / "config.yaml"
    config.write_text("env:\n  RUN: $STUDIOML_EXPERIMENT\n")
    monkeypatch.setattr(context, "RACY_NS", 0)  # not racy: only the variable keeps it from the memo
    assert context._settings(None).env == {"RUN": "e1"}
    monkeypatch.setenv("STUDIOML_EXPERIMENT", "e2")
    assert context._settings(None).env == {"RUN": "e2"}
