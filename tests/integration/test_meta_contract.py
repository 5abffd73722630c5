"""The MetaStore contract, run against every backend: SQLite (the stdlib-sqlite3 fast path and
the SQLAlchemy store behind it) and a real PostgreSQL server."""

from __future__ import annotations

import math
import multiprocessing
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.entities import (
    ArtifactSpec,
    Experiment,
    ExperimentQuery,
    MetricSummary,
    Status,
)
from studio.exceptions import (
    ConflictError,
    MissingDependencyError,
    NotFoundError,
    SchemaVersionError,
    StoreError,
    UsageError,
)
from studio.meta import MetaStore, current_revision, head_revision, open_meta_store, upgrade

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
#: `sqlite` opens what `open_meta_store` gives for a SQLite file (`LiteSqliteStore`, which runs
#: the supervisor's statements itself); `sqlite-sqlalchemy` the SqlMetaStore it delegates to.
#: `http` is an HttpMetaStore talking to a real server (uvicorn on 127.0.0.1) over SQLite.
STORE_BACKENDS = ["sqlite", "sqlite-sqlalchemy", "http", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=STORE_BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'meta' / 'studio.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Databases created at the current schema once, copied for each test (faster than
    migrating each test's database; migrations have their own tests below)."""
    return {"sqlite": str(tmp_path_factory.mktemp("template") / "studio.db")}


@pytest.fixture
def store(
    store_backend: str, migrated: dict[str, str], request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[MetaStore]:
    if store_backend.startswith("sqlite") or store_backend == "http":
        if not Path(migrated["sqlite"]).exists():
            upgrade(f"sqlite:///{migrated['sqlite']}")
        shutil.copy(migrated["sqlite"], tmp_path / "studio.db")
        db_url = f"sqlite:///{tmp_path / 'studio.db'}"
        if store_backend == "http":
            server_url, token = request.getfixturevalue("serve_store")(tmp_path / "server-home", db_url)
            s = open_meta_store(server_url, token=token)
            assert type(s).__name__ == "HttpMetaStore"
        elif store_backend == "sqlite":
            s = open_meta_store(db_url, create=False)
            assert type(s).__name__ == "LiteSqliteStore"
        else:
            from studio.meta.sql import open_sql_store

            s = open_sql_store(db_url, create=False)
        yield s
        s.close()
        return
    server = request.getfixturevalue("postgres_server")
    if "postgres" not in migrated:
        template = server.create_database()
        upgrade(template)
        migrated["postgres"] = template.rsplit("/", 1)[1]
    db_url = server.create_database(template=migrated["postgres"])
    s = open_meta_store(db_url, create=False)
    yield s
    s.close()
    server.drop_database(db_url)


def exp(key: str, **fields: object) -> Experiment:
    return Experiment(key=key, **fields)  # type: ignore[arg-type]


def run(store: MetaStore, key: str, worker: str = "w1", **fields: object) -> Experiment:
    store.create_experiment(exp(key, **fields))
    return store.set_status(key, Status.RUNNING, worker=worker)


# -- experiments --------------------------------------------------------------------------
def test_create_and_get_round_trip(store: MetaStore) -> None:
    full = Experiment(
        key="e1",
        project="p",
        owner="ann",
        script="train.py",
        args=("--lr", "0.1"),
        module=True,
        queue="gpu",
        params={"lr": 0.1, "opt": "adam", "layers": [1, 2]},
        env={"A": "1"},
        python_version="3.11.7",
        pythonenv=("numpy==1.26",),
        python_pkgs=("torch",),
        git={"commit": "abc", "dirty": True},
        host={"os": "linux", "cpus": 2},
        resources={"cpus": 2, "ram": 2**30},
        metric="val_loss",
        max_duration=60.0,
        lifetime=3600.0,
        time_added=1000.5,
        artifacts={
            "workspace": ArtifactSpec("workspace", mutable=False, tree="t1", size=10, files=2),
            "modeldir": ArtifactSpec("modeldir", local_path="/m"),
        },
    )
    created = store.create_experiment(full)
    assert created == full
    assert store.get_experiment("e1") == full
    [event] = store.status_history("e1")
    assert (event.status, event.time) == (Status.QUEUED, 1000.5)


def test_create_sets_time_added_and_refuses_duplicates(store: MetaStore) -> None:
    before = time.time()
    created = store.create_experiment(exp("dup"))
    assert created.time_added is not None and created.time_added >= before - 1
    with pytest.raises(ConflictError, match="already exists"):
        store.create_experiment(exp("dup"))


def test_missing_experiment_raises_not_found(store: MetaStore) -> None:
    calls = [
        lambda: store.get_experiment("nope"),
        lambda: store.update_experiment("nope", project="x"),
        lambda: store.set_status("nope", Status.RUNNING),
        lambda: store.delete_experiment("nope"),
        lambda: store.status_history("nope"),
        lambda: store.put_artifact("nope", ArtifactSpec("a")),
        lambda: store.heartbeat("nope", "w", 10),
        lambda: store.request_stop("nope"),
        lambda: store.append_output("nope", 1, 0, "x"),
        lambda: store.read_output("nope"),
        lambda: store.put_metric_summaries("nope", [MetricSummary("m", 1, 1, 1, 1)]),
    ]
    for call in calls:
        with pytest.raises(NotFoundError, match="nope"):
            call()


def test_get_experiments_keeps_order_and_skips_unknown(store: MetaStore) -> None:
    for k in ("a", "b", "c"):
        store.create_experiment(exp(k, artifacts={"output": ArtifactSpec("output")}))
    got = store.get_experiments(["c", "zz", "a"])
    assert [e.key for e in got] == ["c", "a"]
    assert all("output" in e.artifacts for e in got)
    assert store.get_experiments([]) == []


def test_update_experiment(store: MetaStore) -> None:
    store.create_experiment(exp("u"))
    updated = store.update_experiment("u", metric_value=0.5, params={"x": 1}, args=["a"])
    assert (updated.metric_value, updated.params, updated.args) == (0.5, {"x": 1}, ("a",))
    assert store.get_experiment("u") == updated
    for bad in ({"status": Status.RUNNING}, {"artifacts": {}}, {"nonsense": 1}):
        with pytest.raises(UsageError):
            store.update_experiment("u", **bad)


def test_status_transitions_events_and_bookkeeping(store: MetaStore) -> None:
    store.create_experiment(exp("s", queue="q"))
    running = store.set_status("s", Status.RUNNING, worker="w1", lease_expires=time.time() + 30)
    assert running.worker == "w1" and running.time_started is not None
    done = store.set_status("s", Status.FINISHED, reason="exit 0", returncode=0)
    assert (done.status, done.returncode, done.status_reason) == (Status.FINISHED, 0, "exit 0")
    assert done.time_finished is not None and done.lease_expires is None
    assert [e.status for e in store.status_history("s")] == [
        Status.QUEUED,
        Status.RUNNING,
        Status.FINISHED,
    ]
    assert store.status_history("s")[1].worker == "w1"
    with pytest.raises(ConflictError, match="finished to running"):
        store.set_status("s", Status.RUNNING)
    store.create_experiment(exp("s2"))
    with pytest.raises(ConflictError):
        store.set_status("s2", Status.FINISHED)  # queued -> finished skips running


def test_compare_and_set(store: MetaStore) -> None:
    run(store, "c")
    with pytest.raises(ConflictError, match="is running"):
        store.set_status("c", Status.STOPPED, expect=[Status.QUEUED])
    assert store.get_experiment("c").status is Status.RUNNING
    # Many racers, one winner.
    results: list[str] = []

    def racer(target: Status) -> None:
        try:
            store.set_status("c", target, expect=[Status.RUNNING])
            results.append(f"won:{target.value}")
        except ConflictError:
            results.append("lost")

    threads = [
        threading.Thread(target=racer, args=(s,))
        for s in (Status.FINISHED, Status.FAILED, Status.KILLED, Status.STOPPED) * 2
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len([r for r in results if r.startswith("won")]) == 1
    assert len(store.status_history("c")) == 3


def test_delete_cascades(store: MetaStore) -> None:
    store.create_experiment(exp("d", artifacts={"ws": ArtifactSpec("ws", tree="tree-d")}))
    store.append_output("d", 1, 0, "hello")
    store.put_metric_summaries("d", [MetricSummary("loss", 1.0, 0.5, 2.0, 3)])
    store.delete_experiment("d")
    with pytest.raises(NotFoundError):
        store.get_experiment("d")
    assert "tree-d" not in store.referenced_trees()
    store.create_experiment(exp("d"))  # same key again: nothing left over
    assert store.get_experiment("d").artifacts == {}
    assert store.read_output("d") == []
    assert store.metric_summaries(["d"]) == {"d": []}
    assert len(store.status_history("d")) == 1


def test_put_artifact_upserts_and_referenced_trees(store: MetaStore) -> None:
    store.create_experiment(exp("a", artifacts={"ws": ArtifactSpec("ws", tree="t1")}))
    store.create_experiment(exp("b", artifacts={"ws": ArtifactSpec("ws", tree="t1")}))
    store.put_artifact("a", ArtifactSpec("ws", tree="t2", size=5, files=1, updated=3.0))
    store.put_artifact("a", ArtifactSpec("out", mutable=False))
    arts = store.get_experiment("a").artifacts
    assert arts["ws"] == ArtifactSpec("ws", tree="t2", size=5, files=1, updated=3.0)
    assert set(arts) == {"ws", "out"}
    assert store.referenced_trees() == {"t1", "t2"}


def test_put_checkpoint_records_changed_artifacts_and_the_time(store: MetaStore) -> None:
    store.create_experiment(exp("cp", artifacts={"ws": ArtifactSpec("ws", tree="t1")}))
    store.put_checkpoint("cp", [ArtifactSpec("ws", tree="t2", size=5, files=1, updated=3.0),
                                ArtifactSpec("metrics", local_path="/m", tree="t3")], 7.5)  # fmt: skip
    got = store.get_experiment("cp")
    assert got.time_last_checkpoint == 7.5
    assert got.artifacts["ws"] == ArtifactSpec("ws", tree="t2", size=5, files=1, updated=3.0)
    assert got.artifacts["metrics"].tree == "t3"
    store.put_checkpoint("cp", [], 8.0)
    assert store.get_experiment("cp").time_last_checkpoint == 8.0
    with pytest.raises(NotFoundError):
        store.put_checkpoint("missing", [ArtifactSpec("ws", tree="t")], 1.0)

    store.put_checkpoint("cp", [], 9.0, fields={"git": {"commit": "c1"}})
    assert store.get_experiment("cp").git == {"commit": "c1"}


def test_final_checkpoint_records_the_end_with_the_artifacts(store: MetaStore) -> None:
    store.create_experiment(exp("fin", status=Status.RUNNING, worker="w"))
    store.put_final_checkpoint(
        "fin", [ArtifactSpec("ws", tree="t1")], 5.0, Status.FINISHED, expect=[Status.RUNNING],
        worker="w", fields={"git": {"commit": "c"}}, returncode=0,
    )  # fmt: skip
    got = store.get_experiment("fin")
    assert got.status == Status.FINISHED and got.returncode == 0 and got.time_finished is not None
    assert got.artifacts["ws"].tree == "t1" and got.time_last_checkpoint == 5.0 and got.git == {"commit": "c"}
    assert [e.status for e in store.status_history("fin")][-1] == Status.FINISHED
    # A refused end (the run is no longer running) still records the checkpoint.
    with pytest.raises(ConflictError):
        store.put_final_checkpoint("fin", [ArtifactSpec("ws", tree="t2")], 6.0, Status.FAILED,
                                   expect=[Status.RUNNING])  # fmt: skip
    got = store.get_experiment("fin")
    assert got.status == Status.FINISHED and got.artifacts["ws"].tree == "t2"
    with pytest.raises(NotFoundError):
        store.put_final_checkpoint("missing", [], 1.0, Status.FINISHED)


# -- output and metrics -------------------------------------------------------------------
def test_output_chunks_are_idempotent_and_ordered(store: MetaStore) -> None:
    store.create_experiment(exp("o"))
    for seq in (2, 0, 1):
        store.append_output("o", 1, seq, f"line{seq}\n")
    store.append_output("o", 1, 1, "DUPLICATE")  # a retried send is ignored
    assert [c.text for c in store.read_output("o")] == ["line0\n", "line1\n", "line2\n"]
    assert [c.seq for c in store.read_output("o", after_seq=0)] == [1, 2]
    store.append_output("o", 2, 0, "second attempt")
    assert [c.text for c in store.read_output("o")] == ["second attempt"]
    assert len(store.read_output("o", attempt=1)) == 3
    assert store.read_output("o", attempt=7) == []
    chunk = store.read_output("o", attempt=2)[0]
    assert (chunk.attempt, chunk.seq) == (2, 0) and chunk.time > 0


def test_metric_summaries_upsert(store: MetaStore) -> None:
    store.create_experiment(exp("m1"))
    store.create_experiment(exp("m2"))
    store.put_metric_summaries("m1", [MetricSummary("loss", 1.0, 1.0, 1.0, 1, last_step=0)])
    store.put_metric_summaries(
        "m1",
        [
            MetricSummary("loss", 0.5, 0.5, 1.0, 2, last_step=1),
            MetricSummary("acc", 0.9, 0.1, 0.9, 2),
        ],
    )
    store.put_metric_summaries("m2", [MetricSummary("loss", 3.0, 3.0, 3.0, 1, updated=5.0)])
    got = store.metric_summaries(["m1", "m2", "unknown"])
    assert [m.key for m in got["m1"]] == ["acc", "loss"]
    loss = got["m1"][1]
    assert (loss.last, loss.min, loss.max, loss.count, loss.last_step) == (0.5, 0.5, 1.0, 2, 1)
    assert got["m2"] == [MetricSummary("loss", 3.0, 3.0, 3.0, 1, updated=5.0)]
    assert got["unknown"] == []


def test_metric_summaries_keep_nan_and_infinity(store: MetaStore) -> None:
    store.create_experiment(exp("n1"))
    nan, inf = float("nan"), float("inf")
    store.put_metric_summaries(
        "n1", [MetricSummary("loss", nan, 0.5, inf, 3, last_step=2), MetricSummary("all_nan", nan, nan, nan, 2)]
    )
    got = {m.key: m for m in store.metric_summaries(["n1"])["n1"]}
    loss, all_nan = got["loss"], got["all_nan"]
    assert math.isnan(loss.last) and loss.min == 0.5 and loss.max == inf and loss.count == 3
    assert math.isnan(all_nan.last) and math.isnan(all_nan.min) and math.isnan(all_nan.max)
    # NaN sorts after every number, like a missing value.
    page = store.query(ExperimentQuery(order_by="metrics.loss"))
    assert [e.key for e in page.items] == ["n1"]


# -- queries ------------------------------------------------------------------------------
@pytest.fixture
def populated(store: MetaStore) -> MetaStore:
    for i in range(20):
        key = f"exp{i:02d}"
        params: dict[str, object] = {
            "lr": 10.0 ** -(i % 5),
            "opt": "adam" if i % 2 else "sgd",
            "n": i,
        }
        if i == 19:
            params = {"opt": "adam"}  # no lr at all
        store.create_experiment(
            exp(
                key,
                project="vision" if i < 12 else "nlp",
                owner="ann" if i % 3 else "bob",
                script=f"train_{i % 4}.py",
                queue="q1" if i % 2 else None,
                params=params,
                time_added=1000.0 + i,
                metric_value=float(i) if i % 4 else None,
            )
        )
        if i % 3 == 0:
            store.put_metric_summaries(
                key, [MetricSummary("val_loss", 1.0 / (i + 1), 0.0, 1.0, 10)]
            )
    store.set_status("exp05", Status.RUNNING, worker="w1")
    store.set_status("exp05", Status.FINISHED)
    store.set_status("exp07", Status.STOPPED)
    return store


def keys(store: MetaStore, **q: object) -> list[str]:
    return [e.key for e in store.query(ExperimentQuery(**q)).items]  # type: ignore[arg-type]


def test_query_basic_filters(populated: MetaStore) -> None:
    s = populated
    assert keys(s)[:3] == ["exp19", "exp18", "exp17"]  # newest first by default
    assert len(keys(s, project="nlp")) == 8
    assert keys(s, owner="bob", project="nlp") == ["exp18", "exp15", "exp12"]
    assert keys(s, status=(Status.FINISHED, Status.STOPPED)) == ["exp07", "exp05"]
    assert keys(s, queue="q1", project="nlp") == ["exp19", "exp17", "exp15", "exp13"]
    assert keys(s, text="EXP1", project="vision") == ["exp11", "exp10"]  # case-insensitive
    assert keys(s, text="train_3", owner="bob") == ["exp15", "exp03"]
    assert keys(s, text="%") == []  # wildcards are literal
    page = s.query(ExperimentQuery(project="vision", limit=5))
    assert page.items[0].artifacts == {} and page.total == 12


def test_query_where_columns_params_and_metrics(populated: MetaStore) -> None:
    s = populated
    assert keys(s, where=(("time_added", ">=", 1017),), order_by="time_added") == [
        "exp17",
        "exp18",
        "exp19",
    ]
    assert keys(s, where=(("metric_value", "<", 3),), order_by="key") == ["exp01", "exp02"]
    assert keys(s, where=(("status", "=", Status.FINISHED),)) == ["exp05"]
    assert keys(s, where=(("script", "like", "%_2.py"),), order_by="key") == [
        "exp02",
        "exp06",
        "exp10",
        "exp14",
        "exp18",
    ]
    # params: numeric comparison of JSON numbers (0.001 < 0.01 even though "0.001" > "0.01" as text)
    small = keys(s, where=(("params.lr", "<", 0.01),), order_by="key")
    assert small == ["exp03", "exp04", "exp08", "exp09", "exp13", "exp14", "exp18"]
    assert keys(s, where=(("params.n", ">=", 17),), order_by="key") == ["exp17", "exp18"]
    assert keys(s, where=(("params.opt", "=", "sgd"), ("params.n", "<", 5)), order_by="key") == [
        "exp00",
        "exp02",
        "exp04",
    ]
    assert keys(s, where=(("params.opt", "like", "ad%"), ("params.n", "<", 4)), order_by="key") == [
        "exp01",
        "exp03",
    ]
    assert keys(s, where=(("params.lr", "=", None),)) == ["exp19"]
    assert len(keys(s, where=(("params.lr", "!=", None),))) == 19
    # metrics: the summary's last value
    assert keys(s, where=(("metrics.val_loss", "<", 0.1),), order_by="key") == [
        "exp12",
        "exp15",
        "exp18",
    ]
    assert keys(s, where=(("metrics.val_loss", "=", None),), project="nlp") == [
        "exp19",
        "exp17",
        "exp16",
        "exp14",
        "exp13",
    ]


def test_query_bool_params(store: MetaStore) -> None:
    store.create_experiment(exp("t", params={"aug": True}))
    store.create_experiment(exp("f", params={"aug": False}))
    store.create_experiment(exp("one", params={"aug": 1}))
    assert keys(store, where=(("params.aug", "=", True),)) == ["t"]
    assert keys(store, where=(("params.aug", "=", False),)) == ["f"]
    assert keys(store, where=(("params.aug", "=", 1),)) == ["one"]


def test_query_sorting_with_nulls_last(populated: MetaStore) -> None:
    s = populated
    asc = keys(s, order_by="metric_value")
    assert asc[:3] == ["exp01", "exp02", "exp03"] and set(asc[-5:]) == {
        "exp00",
        "exp04",
        "exp08",
        "exp12",
        "exp16",
    }
    desc = keys(s, order_by="-metric_value")
    assert desc[:2] == ["exp19", "exp18"] and desc[-5:] == [
        "exp16",
        "exp12",
        "exp08",
        "exp04",
        "exp00",
    ]
    by_loss = keys(s, order_by="metrics.val_loss")
    assert by_loss[:7] == ["exp18", "exp15", "exp12", "exp09", "exp06", "exp03", "exp00"]
    by_loss_desc = keys(s, order_by="-metrics.val_loss")
    assert by_loss_desc[:2] == ["exp00", "exp03"] and by_loss_desc[7] == "exp19"  # NULLs last
    by_lr = keys(s, order_by="-params.lr")
    assert by_lr[:4] == ["exp15", "exp10", "exp05", "exp00"] and by_lr[-1] == "exp19"
    assert keys(s, order_by="params.opt", where=(("params.n", "<", 4),)) == [
        "exp01",
        "exp03",
        "exp00",
        "exp02",
    ]
    assert keys(s, order_by="-duration", status=(Status.FINISHED,)) == ["exp05"]


def test_query_sort_best_follows_each_metric_goal(store: MetaStore) -> None:
    """`best` ascending: lowest first for `:min` (and plain) metrics, highest first for `:max`."""
    for key, spec, value in [("lo1", "loss:min", 0.5), ("lo2", "loss:min", 0.1), ("hi1", "acc:max", 0.9),
                             ("hi2", "acc:max", 0.7), ("plain", "loss", 0.3), ("none", None, None)]:
        store.create_experiment(exp(key, metric=spec, metric_value=value))
    assert keys(store, order_by="best", where=(("metric", "like", "loss%"),)) == ["lo2", "plain", "lo1"]
    assert keys(store, order_by="best", where=(("metric", "=", "acc:max"),)) == ["hi1", "hi2"]
    assert keys(store, order_by="-best", where=(("metric", "=", "acc:max"),)) == ["hi2", "hi1"]
    assert keys(store, order_by="best")[-1] == "none"  # no value: last either way
    assert keys(store, order_by="-best")[-1] == "none"


def test_names_tags_notes_round_trip_and_filter(store: MetaStore) -> None:
    store.create_experiment(exp("a", name="baseline run", tags=("good", "lr-sweep/1"), note="# Notes\nplateau"))
    store.create_experiment(exp("b", tags=("bad",)))
    store.create_experiment(exp("c"))
    got = store.get_experiment("a")
    assert got.name == "baseline run" and got.tags == ("good", "lr-sweep/1") and got.note == "# Notes\nplateau"
    assert store.get_experiment("c").tags == () and store.get_experiment("c").note == ""
    assert keys(store, where=(("tags", "=", "good"),)) == ["a"]
    assert keys(store, where=(("tags", "!=", "good"),), order_by="key") == ["b", "c"]
    assert keys(store, where=(("tags", "like", "%sweep%"),)) == ["a"]
    assert keys(store, where=(("name", "like", "%base%"),)) == ["a"]
    assert keys(store, where=(("note", "like", "%plateau%"),)) == ["a"]
    assert keys(store, text="BASELINE") == ["a"]  # the search box looks at names too
    store.update_experiment("b", name="second", tags=("bad", "x"), note="n")
    b = store.get_experiment("b")
    assert (b.name, b.tags, b.note) == ("second", ("bad", "x"), "n")
    assert store.query(ExperimentQuery(where=(("tags", "=", "x"),))).items[0].tags == ("bad", "x")


def test_workers_presence(store: MetaStore) -> None:
    assert store.workers() == []
    store.worker_seen("h_1", "gpu", "idle", host="h")
    first = store.workers()[0]
    time.sleep(0.01)
    store.worker_seen("h_1", "gpu", "busy", experiment="e1", host="h")
    store.worker_seen("h_2", "cpu", "idle", host="h")
    got = store.workers()
    assert [(w["id"], w["queue"], w["state"], w["experiment"]) for w in got] == [
        ("h_2", "cpu", "idle", None), ("h_1", "gpu", "busy", "e1")]
    busy = got[1]
    assert busy["started"] == first["started"] and busy["last_seen"] > first["last_seen"]
    store.worker_gone("h_1")
    store.worker_gone("nobody")
    assert [w["id"] for w in store.workers()] == ["h_2"]


def test_query_paging_totals(populated: MetaStore) -> None:
    s = populated
    seen: list[str] = []
    for offset in range(0, 20, 6):
        page = s.query(ExperimentQuery(order_by="key", limit=6, offset=offset))
        assert page.total == 20
        seen += [e.key for e in page.items]
    assert seen == sorted(f"exp{i:02d}" for i in range(20))
    filtered = s.query(
        ExperimentQuery(
            where=(("params.lr", "<", 0.01),), order_by="-metrics.val_loss", limit=2, offset=1
        )
    )
    assert filtered.total == 7 and len(filtered.items) == 2
    assert s.query(ExperimentQuery(limit=0)).total == 20
    assert s.query(ExperimentQuery(offset=18)).total == 20


def test_query_bad_input(store: MetaStore) -> None:
    with pytest.raises(UsageError, match="unknown field `nope`"):
        store.query(ExperimentQuery(where=(("nope", "=", 1),)))
    with pytest.raises(UsageError, match="unknown operator"):
        store.query(ExperimentQuery(where=(("attempts", "~", 1),)))
    with pytest.raises(UsageError, match="unknown field"):
        store.query(ExperimentQuery(order_by="-drop table"))
    with pytest.raises(UsageError, match="numbers"):
        store.query(ExperimentQuery(where=(("metrics.loss", "<", "x"),)))


def test_listings(populated: MetaStore) -> None:
    projects = {p["name"]: p for p in populated.projects()}
    assert projects["vision"] == {
        "name": "vision",
        "count": 12,
        "running": 0,
        "finished": 1,
        "last_added": 1011.0,
    }
    assert projects["nlp"]["count"] == 8
    # metric_value = i for i % 4 != 0: vision holds 1-3, 5-7, 9-11; nlp 13-15, 17-19.
    extremes = {p: (lo.key, hi.key) for p, (lo, hi) in populated.metric_extremes().items()}
    assert extremes == {"vision": ("exp01", "exp11"), "nlp": ("exp13", "exp19")}
    populated.create_experiment(exp("tie", project="nlp", metric_value=13.0, metric="loss:max"))
    populated.create_experiment(exp("none", project="empty"))
    lo, hi = populated.metric_extremes()["nlp"]
    assert (lo.key, lo.metric_value, hi.key) == ("exp13", 13.0, "exp19")  # ties: smallest key
    assert "empty" not in populated.metric_extremes()
    users = {u["name"]: u for u in populated.users()}
    assert users["bob"]["count"] == 7 and users["ann"]["count"] == 13
    assert populated.queue_counts() == {"q1": {"queued": 8, "finished": 1, "stopped": 1}}


def test_sweep_checkpoints(store: MetaStore) -> None:
    assert store.sweeps() == []
    with pytest.raises(NotFoundError, match="no sweep 'p'"):
        store.get_sweep("p")
    store.put_sweep("p", '{"generation": 0, "value": NaN}')
    store.put_sweep("a/b", "{}")
    store.put_sweep("p", '{"generation": 1, "value": NaN}')  # replaced, in one transaction
    assert store.get_sweep("p") == '{"generation": 1, "value": NaN}'
    assert store.sweeps() == ["a/b", "p"]


# -- supervision and queue ----------------------------------------------------------------
def test_heartbeat_and_stop_requests(store: MetaStore) -> None:
    run(store, "h", worker="w1")
    assert store.heartbeat("h", "w1", 30) is False
    lease = store.get_experiment("h").lease_expires
    assert lease is not None and lease > time.time() + 20
    with pytest.raises(ConflictError, match="no longer held"):
        store.heartbeat("h", "w2", 30)
    assert store.request_stop("h").stop_requested
    assert store.heartbeat("h", "w1", 30) is True
    store.set_status("h", Status.STOPPED)
    with pytest.raises(ConflictError, match="status stopped"):
        store.heartbeat("h", "w1", 30)
    assert store.request_stop("h").status is Status.STOPPED  # terminal: unchanged
    store.create_experiment(exp("queued"))
    stopped = store.request_stop("queued")
    assert stopped.status is Status.STOPPED and stopped.status_reason


def test_claim_oldest_first_per_queue(store: MetaStore) -> None:
    assert store.claim("q", "w", 30) is None
    store.create_experiment(exp("late", queue="q", time_added=20.0))
    store.create_experiment(
        exp("early", queue="q", time_added=10.0, artifacts={"ws": ArtifactSpec("ws")})
    )
    store.create_experiment(exp("other", queue="r", time_added=1.0))
    first = store.claim("q", "w1", 30)
    assert first is not None and first.key == "early"
    assert (first.status, first.worker, first.attempts) == (Status.RUNNING, "w1", 1)
    assert first.lease_expires is not None and first.artifacts["ws"].tag == "ws"
    assert store.get_experiment("early") == first
    second = store.claim("q", "w2", 30)
    assert second is not None and second.key == "late"
    assert store.claim("q", "w3", 30) is None
    assert store.status_history("early")[-1].worker == "w1"


def test_claim_honours_resources(store: MetaStore) -> None:
    gib = 2**30
    store.create_experiment(
        exp("big", queue="q", time_added=1.0, resources={"gpus": 2, "ram": 64 * gib})
    )
    store.create_experiment(exp("gpu", queue="q", time_added=2.0, resources={"gpus": 1, "cpus": 4}))
    store.create_experiment(
        exp("cpu", queue="q", time_added=3.0, resources={"cpus": 1, "hdd": 10 * gib})
    )
    small = {"cpus": 8, "gpus": 0, "ram": 16 * gib, "hdd": 100 * gib}
    got = store.claim("q", "cpu-box", 30, small)
    assert got is not None and got.key == "cpu"
    assert store.claim("q", "cpu-box", 30, small) is None
    got = store.claim("q", "gpu-box", 30, {"cpus": 8, "gpus": 1, "ram": 16 * gib, "hdd": 100 * gib})
    assert got is not None and got.key == "gpu"
    got = store.claim("q", "anything", 30)  # None: no limits
    assert got is not None and got.key == "big"
    store.create_experiment(exp("later", queue="q", resources={"gpus": 4}))
    store.update_experiment("later", resources={"gpus": 0})  # needs follow updates
    got = store.claim("q", "w", 30, {"gpus": 0})
    assert got is not None and got.key == "later"
    with pytest.raises(UsageError):
        store.create_experiment(exp("bad", resources={"ram": "10g"}))
    with pytest.raises(UsageError):
        store.claim("q", "w", 30, {"gpus": -1})


LEASE = 0.3  # seconds: leases lapse by the store's clock, so the tests wait them out


def test_lease_expiry_requeues_then_loses(store: MetaStore) -> None:
    store.create_experiment(exp("l", queue="q"))
    store.append_output("l", 1, 0, "first attempt output")
    assert store.claim("q", "w1", LEASE) is not None
    assert store.requeue_expired(max_attempts=2) == []  # lease still valid
    time.sleep(LEASE + 0.1)
    assert store.requeue_expired(max_attempts=2) == ["l"]
    requeued = store.get_experiment("l")
    assert (requeued.status, requeued.worker, requeued.lease_expires) == (Status.QUEUED, None, None)
    assert "expired" in (requeued.status_reason or "")
    with pytest.raises(ConflictError):
        store.heartbeat("l", "w1", 10)  # the old worker lost it
    again = store.claim("q", "w2", LEASE)
    assert again is not None and again.attempts == 2
    time.sleep(LEASE + 0.1)
    assert store.requeue_expired(max_attempts=2) == ["l"]
    lost = store.get_experiment("l")
    assert lost.status is Status.LOST and "2 attempts" in (lost.status_reason or "")
    assert [e.status for e in store.status_history("l")] == [
        Status.QUEUED, Status.RUNNING, Status.QUEUED, Status.RUNNING, Status.LOST,
    ]  # fmt: skip
    assert store.read_output("l", attempt=1)[0].text == "first attempt output"
    # A local run (no queue) whose supervisor died is lost at once.
    run(store, "local", lease_expires=time.time() - 1)
    assert store.requeue_expired(max_attempts=3) == ["local"]
    assert store.get_experiment("local").status is Status.LOST


def test_lease_expiry_after_a_stop_request_stops(store: MetaStore) -> None:
    store.create_experiment(exp("sr", queue="q"))
    assert store.claim("q", "w1", LEASE) is not None
    store.request_stop("sr")
    time.sleep(LEASE + 0.1)
    assert store.requeue_expired(max_attempts=3) == ["sr"]
    assert store.get_experiment("sr").status is Status.STOPPED  # not run again
    store.create_experiment(exp("pr", queue="q"))
    assert store.claim("q", "w1", LEASE) is not None
    store.request_stop("pr", status=Status.PRUNED, reason="pruned at step 3")
    time.sleep(LEASE + 0.1)
    assert store.requeue_expired(max_attempts=3) == ["pr"]
    pruned = store.get_experiment("pr")
    assert (pruned.status, pruned.status_reason) == (Status.PRUNED, "pruned at step 3")


def test_lifetime_expiry(store: MetaStore) -> None:
    now = time.time()
    store.create_experiment(exp("stale", queue="q", lifetime=60.0, time_added=now - 120))
    store.create_experiment(exp("fresh", queue="q", lifetime=60.0, time_added=now - 1))
    store.create_experiment(exp("forever", queue="q", time_added=now - 10**6))
    got = store.claim("q", "w", 30)
    assert got is not None and got.key == "forever"  # the stale one is never started
    got = store.claim("q", "w", 30)
    assert got is not None and got.key == "fresh"
    assert store.requeue_expired(max_attempts=3) == ["stale"]
    stale = store.get_experiment("stale")
    assert stale.status is Status.LOST and "lifetime" in (stale.status_reason or "")


def test_an_abandoned_preparation_is_lost_not_queued_forever(store: MetaStore) -> None:
    """A queued experiment with no queue is one no worker will ever claim (issue 13 item 7)."""
    now = time.time()
    store.create_experiment(exp("abandoned", time_added=now - 120))
    store.create_experiment(exp("young", time_added=now - 1))
    store.create_experiment(exp("waiting", queue="q", time_added=now - 10**6))
    assert store.requeue_expired(max_attempts=3) == ["abandoned"]
    gone = store.get_experiment("abandoned")
    assert gone.status is Status.LOST and "abandoned" in (gone.status_reason or "")
    assert store.get_experiment("young").status is Status.QUEUED
    assert store.get_experiment("waiting").status is Status.QUEUED


def _claim_all(url: str, worker: str) -> list[str]:
    store = open_meta_store(url)
    got: list[str] = []
    try:
        while (e := store.claim("q", worker, 60)) is not None:
            got.append(e.key)
            store.heartbeat(e.key, worker, 60)
            store.set_status(e.key, Status.FINISHED, expect=[Status.RUNNING], returncode=0)
    finally:
        store.close()
    return got


def test_concurrent_claims_hand_out_each_experiment_once(url: str) -> None:
    store = open_meta_store(url)
    for i in range(100):
        store.create_experiment(exp(f"c{i:03d}", queue="q", time_added=float(i)))
    store.close()  # no connections inherited by the forked workers
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        results = pool.starmap(_claim_all, [(url, f"w{n}") for n in range(4)])
    claimed = [k for r in results for k in r]
    assert sorted(claimed) == [f"c{i:03d}" for i in range(100)]
    assert len(set(claimed)) == 100
    assert sum(1 for r in results if r) >= 2  # the work was shared
    store = open_meta_store(url)
    assert store.queue_counts() == {"q": {"finished": 100}}
    store.close()


def _open_only(url: str) -> str:
    open_meta_store(url).close()
    return "ok"


def test_concurrent_first_open_migrates_once(url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        assert pool.map(_open_only, [url] * 4) == ["ok"] * 4
    assert current_revision(url) == head_revision()


# -- schema versions and URLs -------------------------------------------------------------
def test_old_schema_is_refused_then_upgraded(url: str) -> None:
    assert current_revision(url) is None
    assert upgrade(url, "0001") == (None, "0001")
    engine_store = None
    with pytest.raises(SchemaVersionError) as info:
        engine_store = open_meta_store(url)
    assert engine_store is None
    assert str(info.value) == (
        f"database at revision 0001 is older than this studio ({head_revision()}): "
        "run `studio db upgrade`"
    )
    _insert_at_0001(url)
    assert upgrade(url) == ("0001", head_revision())
    store = open_meta_store(url)
    assert store.get_experiment("old").resources == {"gpus": 2}
    assert store.claim("q", "w", 30, {"gpus": 1}) is None  # needs were backfilled
    assert store.claim("q", "w", 30, {"gpus": 2}) is not None
    store.close()


def _insert_at_0001(url: str) -> None:
    from sqlalchemy import text

    from studio.meta.sql import normalize_url
    from studio.meta.sql.engine import make_engine

    engine = make_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO experiments (key, project, owner, script, args, module, status, queue,"
                " params, env, pythonenv, python_pkgs, git, host, resources, time_added, attempts,"
                " stop_requested) VALUES ('old', 'p', 'o', 's', '[]', false, 'queued', 'q', '{}',"
                " '{}', '[]', '[]', '{}', '{}', '{\"gpus\": 2}', 1.0, 0, false)"
            )
        )
    engine.dispose()


def test_newer_and_missing_schema(url: str) -> None:
    upgrade(url)
    from sqlalchemy import text

    from studio.meta.sql import normalize_url
    from studio.meta.sql.engine import make_engine

    engine = make_engine(normalize_url(url))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SchemaVersionError, match="newer than this studio"):
        open_meta_store(url)


def test_tables_match_migrations(url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from studio.meta.sql import normalize_url
    from studio.meta.sql.engine import make_engine
    from studio.meta.sql.tables import metadata

    upgrade(url)
    engine = make_engine(normalize_url(url))
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    engine.dispose()
    assert diff == []


def test_head_revision_matches_migration_scripts() -> None:
    from alembic.script import ScriptDirectory

    from studio.meta.sql.schema import alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == head_revision()


def test_open_without_create(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    with pytest.raises(SchemaVersionError, match="studio db upgrade"):
        open_meta_store(url, create=False)
    assert not (tmp_path / "absent.db").exists()
    assert current_revision(url) is None
    open_meta_store(url).close()
    open_meta_store(url, create=False).close()


def test_foreign_database_is_not_touched(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreError, match="no studio schema"):
        open_meta_store(f"sqlite:///{path}")


def test_unknown_url_scheme_names_supported_ones() -> None:
    with pytest.raises(UsageError) as info:
        open_meta_store("mongodb://localhost/studio")
    message = str(info.value)
    assert "mongodb" in message and "sqlite:///" in message and "postgresql+psycopg://" in message
    with pytest.raises(UsageError, match="not supported"):
        open_meta_store("postgresql+psycopg2://u@localhost/db")
    with pytest.raises(UsageError):
        upgrade("redis://x")


def test_missing_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'studio-experiments\[postgres\]'"):
        open_meta_store("postgresql://u@127.0.0.1:1/db")


def test_importing_studio_meta_is_cheap() -> None:
    code = "import sys, studio.meta; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sqlite_store_needs_neither_orm_nor_postgresql_dialect(tmp_path: Path) -> None:
    # Together about 0.15 s of every `studio run`: the store runs Core statements on Core
    # tables, and the migrations are plain Alembic operations.
    url = f"sqlite:///{tmp_path / 'lean.db'}"
    open_meta_store(url).close()  # created (and migrated) here: alembic is not under test
    code = f"""
import sys
import studio.meta.sql
from studio.entities import ArtifactSpec, Experiment, ExperimentQuery, MetricSummary, Status
from studio.meta import open_meta_store

s = open_meta_store({url!r})
s.create_experiment(Experiment(key="k", project="p", owner="o", status=Status.QUEUED))
s.set_status("k", Status.RUNNING, worker="w")
s.put_artifact("k", ArtifactSpec(tag="workspace", tree="t"))
s.append_output("k", 1, 0, "hello")
s.put_metric_summaries("k", [MetricSummary(key="loss", last=1.0, min=1.0, max=1.0, count=1)])
s.set_status("k", Status.FINISHED)
s.query(ExperimentQuery(where=(("params.lr", "<", 0.1),), order_by="-metrics.loss"))
s.get_experiment("k")
s.close()
print(sorted(m for m in ("sqlalchemy.orm", "sqlalchemy.dialects.postgresql") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sqlite_concurrent_writers_never_see_locked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    stores = [open_meta_store(url) for _ in range(4)]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        s = stores[n]
        try:
            for i in range(50):
                key = f"w{n}-{i}"
                s.create_experiment(exp(key, params={"i": i}))
                s.set_status(key, Status.RUNNING, worker=f"w{n}")
                s.append_output(key, 1, 0, "x")
                s.set_status(key, Status.FINISHED)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stores[0].query(ExperimentQuery(status=(Status.FINISHED,))).total == 200
    for s in stores:
        s.close()


def test_in_memory_sqlite_is_shared_safely_across_threads() -> None:
    store = open_meta_store("sqlite://")

    def worker(n: int) -> None:
        for i in range(25):
            store.create_experiment(exp(f"{n}-{i}", queue="q"))
            assert store.claim("q", f"w{n}", 10) is not None

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.queue_counts() == {"q": {"running": 100}}
    store.close()


@pytest.mark.postgres
def test_postgres_connection_dropped_by_the_server_is_retried(
    postgres_server: object, postgres_url: str
) -> None:
    store = open_meta_store(postgres_url)
    store.create_experiment(exp("survivor"))
    database = postgres_url.rsplit("/", 1)[1]
    postgres_server.admin().execute(  # type: ignore[attr-defined]
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
    )
    assert store.get_experiment("survivor").key == "survivor"
    store.create_experiment(exp("after"))
    store.close()


def test_sqlite_fast_path_and_sqlalchemy_store_write_the_same_rows(tmp_path: Path) -> None:
    from studio.meta.sql import open_sql_store

    url = f"sqlite:///{tmp_path / 'both.db'}"
    lite, full = open_meta_store(url), open_sql_store(url, create=False)
    assert type(lite).__name__ == "LiteSqliteStore"
    for n, (writer, reader) in enumerate(((lite, full), (full, lite))):
        key = f"k{n}"
        writer.create_experiment(
            exp(key, project="p", owner="o", args=("--x", "é"), module=True,
                params={"lr": 0.1, "nan": math.nan, "nested": {"a": [1, None]}},
                git={"dirty": True}, resources={"cpus": 2, "ram": 2**30}, time_added=10.0,
                artifacts={"workspace": ArtifactSpec("workspace", mutable=False, tree="t", size=3, files=1)})
        )
        writer.set_status(key, Status.RUNNING, expect=[Status.QUEUED], worker="w", attempts=1, lease_expires=1e12)
        assert writer.heartbeat(key, "w", 30.0) is False
        writer.update_experiment(key, metric_value=-math.inf, time_last_checkpoint=11.0, stop_requested=False)
        writer.put_artifact(key, ArtifactSpec("weights", local_path="/w", tree="u", size=5, files=2, updated=12.0))
        writer.put_artifact(key, ArtifactSpec("weights", local_path="/w", tree="v", size=6, files=3, updated=13.0))
        writer.append_output(key, 1, 0, "hello\n")
        writer.append_output(key, 1, 0, "repeat ignored\n")
        writer.put_metric_summaries(key, [MetricSummary(key="loss", last=math.nan, min=0.5, max=math.inf, count=3, last_step=2)])
        writer.set_status(key, Status.FINISHED, worker="w", returncode=0)
        got, mine = reader.get_experiment(key), writer.get_experiment(key)
        assert repr(got) == repr(mine)  # repr: NaN != NaN, but prints alike
        assert got.params["nested"] == {"a": [1, None]} and got.args == ("--x", "é")
        assert got.artifacts["weights"].tree == "v" and got.resources == {"cpus": 2, "ram": 2**30}
        assert [e.status for e in reader.status_history(key)] == [Status.QUEUED, Status.RUNNING, Status.FINISHED]
        assert [c.text for c in reader.read_output(key)] == ["hello\n"]
        assert repr(reader.metric_summaries([key])) == repr(writer.metric_summaries([key]))
    lite.close()
    full.close()


def test_sqlite_fast_path_opens_old_and_missing_databases_like_the_sqlalchemy_store(tmp_path: Path) -> None:
    # A missing file is created (and migrated) by Alembic; a file that is not a database is
    # refused with the SQLAlchemy store's message; the fast path then serves the file.
    url = f"sqlite:///{tmp_path / 'new' / 'studio.db'}"
    s = open_meta_store(url)
    assert type(s).__name__ == "LiteSqliteStore" and current_revision(url) == head_revision()
    s.create_experiment(exp("a", project="p", owner="o"))
    s.close()
    (tmp_path / "junk.db").write_text("not a database")
    with pytest.raises(StoreError, match="cannot open database"):
        open_meta_store(f"sqlite:///{tmp_path / 'junk.db'}")
    memory = open_meta_store("sqlite://")
    assert type(memory).__name__ == "SqlMetaStore"
    memory.close()


def test_studio_run_path_does_not_import_sqlalchemy(tmp_path: Path) -> None:
    # About 0.2 s of every `studio run`: the supervisor's statements run on stdlib sqlite3.
    url = f"sqlite:///{tmp_path / 'lean.db'}"
    open_meta_store(url).close()
    code = f"""
import sys
from studio.entities import ArtifactSpec, Experiment, MetricSummary, Status
from studio.meta import open_meta_store

s = open_meta_store({url!r})
s.create_experiment(Experiment(key="k", project="p", owner="o", status=Status.QUEUED))
s.set_status("k", Status.RUNNING, worker="w")
s.heartbeat("k", "w", 30.0)
s.put_artifact("k", ArtifactSpec(tag="workspace", tree="t"))
s.append_output("k", 1, 0, "hello")
s.put_metric_summaries("k", [MetricSummary(key="loss", last=1.0, min=1.0, max=1.0, count=1)])
s.update_experiment("k", metric_value=1.0)
s.set_status("k", Status.FINISHED)
s.get_experiment("k")
s.close()
print("sqlalchemy" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_query_nan_and_huge_numbers_agree_on_every_backend(store: MetaStore) -> None:
    """NaN is "no number" everywhere (SQLite stores it as NULL; PostgreSQL would sort it above
    every number), infinities are numbers, and an integer beyond 64 bits is refused."""
    inf, nan = float("inf"), float("nan")
    for key, value in (("nan", nan), ("inf", inf), ("ninf", -inf), ("one", 1.0)):
        store.create_experiment(exp(key, metric_value=value, params={"lr": 1}))
        store.put_metric_summaries(key, [MetricSummary("loss", value, value, value, 1)])
    for field in ("metric_value", "metrics.loss"):
        assert keys(store, where=((field, ">", 0),), order_by="key") == ["inf", "one"], field
        assert keys(store, where=((field, "<", 0),), order_by="key") == ["ninf"], field
        assert keys(store, where=((field, "!=", 1),), order_by="key") == ["inf", "ninf"], field
        assert keys(store, where=((field, "=", None),), order_by="key") == ["nan"], field
        assert keys(store, order_by=field)[-1] == "nan", field  # no number sorts last
    for big in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(UsageError, match="64-bit"):
            store.query(ExperimentQuery(where=(("attempts", "<", big),)))
        with pytest.raises(UsageError, match="64-bit"):
            store.query(ExperimentQuery(where=(("params.lr", "<", big),)))
    with pytest.raises(UsageError, match="NaN"):
        store.query(ExperimentQuery(where=(("metric_value", "<", nan),)))
