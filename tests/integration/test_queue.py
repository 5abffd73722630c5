"""The queue on both metadata backends: exactly-once claims, leases, requeue, hand-back, purge.

In-process claim loops against real stores (SQLite file, PostgreSQL server on 127.0.0.1);
each simulated worker has its own store object, i.e. its own connections, as processes would.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.api.context import Context
from studio.config import load_settings
from studio.entities import Experiment, Status
from studio.exceptions import ConflictError, StudioError
from studio.meta import MetaStore, open_meta_store
from studio.queue import Claimer, list_queues, purge_queue, queue_experiments


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[MetaStore]:
    s = open_meta_store(db_url)
    yield s
    s.close()


def make_ctx(studio_home: Path, db_url: str, **worker: float) -> Context:
    settings = load_settings(environ={"STUDIOML_HOME": str(studio_home), "STUDIOML_DATABASE_URL": db_url})
    return Context(settings.replace(**worker) if worker else settings)


def add(store: MetaStore, n: int, queue: str = "q", start: float | None = None, **fields: object) -> list[str]:
    t0 = time.time() if start is None else start
    keys = []
    for i in range(n):
        exp = Experiment(key=f"e{i:04d}-{queue}", queue=queue, time_added=t0 + i * 1e-3, **fields)  # type: ignore[arg-type]
        keys.append(store.create_experiment(exp).key)
    return keys


def test_four_workers_hundred_experiments_each_runs_exactly_once(db_url: str, store: MetaStore) -> None:
    keys = add(store, 100)
    claimed: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        own = open_meta_store(db_url)
        try:
            idle = 0
            while idle < 3:
                exp = own.claim("q", f"w{n}", 30.0, {"cpus": 2, "gpus": 0, "ram": 2**33, "hdd": 2**35})
                if exp is None:
                    idle += 1
                    time.sleep(0.02)
                    continue
                idle = 0
                own.heartbeat(exp.key, f"w{n}", 30.0)
                own.set_status(exp.key, Status.FINISHED, expect=[Status.RUNNING], worker=f"w{n}", returncode=0)
                with lock:
                    claimed.append(exp.key)
        except BaseException as exc:  # surfaced below: e.g. "database is locked"
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    counts = Counter(claimed)
    assert sorted(counts) == keys
    assert set(counts.values()) == {1}
    exps = store.get_experiments(keys)
    assert {e.status for e in exps} == {Status.FINISHED}
    assert {e.attempts for e in exps} == {1}


def test_claim_takes_oldest_fitting_experiment(store: MetaStore) -> None:
    gpu, small = add(store, 2, resources={"gpus": 0})
    store.update_experiment(gpu, resources={"gpus": 2, "ram": 2**30})
    exp = store.claim("q", "w", 30.0, {"cpus": 1, "gpus": 0, "ram": 2**34, "hdd": 2**34})
    assert exp is not None and exp.key == small  # the GPU one does not fit
    assert store.claim("q", "w", 30.0, {"cpus": 1, "gpus": 1, "ram": 2**34, "hdd": 2**34}) is None
    exp = store.claim("q", "w", 30.0, {"cpus": 1, "gpus": 2, "ram": 2**34, "hdd": 2**34})
    assert exp is not None and exp.key == gpu
    assert store.claim("other-queue", "w", 30.0) is None


def test_lapsed_lease_requeues_then_loses_after_max_attempts(store: MetaStore) -> None:
    (key,) = add(store, 1)
    for attempt in (1, 2):
        exp = store.claim("q", f"w{attempt}", 0.01)
        assert exp is not None and exp.attempts == attempt
        time.sleep(0.03)
        assert store.requeue_expired(max_attempts=2) == [key]
        exp = store.get_experiment(key)
        assert exp.lease_expires is None
        assert exp.status == (Status.QUEUED if attempt == 1 else Status.LOST)
        assert exp.worker == (None if attempt == 1 else "w2")  # a lost one names its last worker
    assert "2 attempts" in (store.get_experiment(key).status_reason or "")
    with pytest.raises(ConflictError):  # the first worker's lease is gone for good
        store.heartbeat(key, "w1", 30.0)


def test_hand_back_clears_worker_and_lease(studio_home: Path, db_url: str, store: MetaStore) -> None:
    from studio.runner.worker import Worker, WorkerOptions

    (key,) = add(store, 1)
    ctx = make_ctx(studio_home, db_url)
    worker = Worker(ctx, WorkerOptions(queue="q"))
    exp = worker.claimer.try_claim()
    assert exp is not None and exp.worker == worker.id
    outcome = worker.hand_back(exp)
    assert outcome.status == Status.QUEUED
    back = store.get_experiment(key)
    assert back.status == Status.QUEUED and back.worker is None and back.lease_expires is None
    assert [e.status for e in store.status_history(key)][-2:] == [Status.RUNNING, Status.QUEUED]
    again = store.claim("q", "other", 30.0)
    assert again is not None and again.attempts == 2 and again.worker == "other"
    ctx.close()


def test_lifetime_discards_old_queued_experiments(studio_home: Path, db_url: str, store: MetaStore) -> None:
    old, fresh = add(store, 1, queue="a", start=time.time() - 100, lifetime=10.0) + add(store, 1, queue="b", lifetime=3600.0)
    ctx = make_ctx(studio_home, db_url)
    claimer = Claimer(ctx.meta, ctx.settings, "a", "w")
    assert claimer.wait_claim(idle_timeout=0.3) is None
    exp = store.get_experiment(old)
    assert exp.status == Status.LOST and "lifetime" in (exp.status_reason or "")
    assert store.get_experiment(fresh).status == Status.QUEUED
    ctx.close()


def test_idle_claim_latency_is_well_under_a_second(studio_home: Path, db_url: str, store: MetaStore) -> None:
    ctx = make_ctx(studio_home, db_url)
    claimer = Claimer(ctx.meta, ctx.settings, "q", "w")
    got: list[tuple[float, Experiment | None]] = []
    t = threading.Thread(target=lambda: got.append((time.monotonic(), claimer.wait_claim(idle_timeout=10))))
    t.start()
    time.sleep(0.5)
    submitted = time.monotonic()
    add(store, 1)
    t.join()
    assert got[0][1] is not None
    assert got[0][0] - submitted < 5.0  # picked up while polling, long before the 10 s idle timeout; bench_queue measures the latency
    ctx.close()


def test_list_show_and_purge_leave_running_alone(studio_home: Path, db_url: str, store: MetaStore) -> None:
    keys = add(store, 3)
    running = store.claim("q", "w", 30.0)
    assert running is not None
    ctx = make_ctx(studio_home, db_url)
    (info,) = list_queues(ctx)
    assert info.name == "q" and info.counts == {"queued": 2, "running": 1} and info.total == 3
    assert [e.key for e in queue_experiments(ctx, "q")] == keys
    result = purge_queue(ctx, "q")
    assert sorted(result.deleted) == keys[1:] and result.running == [running.key]
    assert [e.key for e in store.get_experiments(keys)] == [running.key]
    with pytest.raises(StudioError, match="no queue named"):
        queue_experiments(ctx, "nope")
    ctx.close()


def test_idle_worker_on_sqlite_claims_on_a_commit_not_the_next_poll(studio_home: Path, tmp_path: Path) -> None:
    """With a poll far longer than the test, the submitted experiment is still claimed: the
    worker saw the database files change (SQLite, one machine: `ChangeProbe`)."""
    db_url = f"sqlite:///{tmp_path / 'probe.db'}"
    ctx = make_ctx(studio_home, db_url, poll_seconds=600.0)
    store = open_meta_store(db_url)
    claimer = Claimer(ctx.meta, ctx.settings, "q", "w")
    got: list[Experiment | None] = []
    t = threading.Thread(target=lambda: got.append(claimer.wait_claim(idle_timeout=None)), daemon=True)
    t.start()
    time.sleep(0.3)  # it has found the queue empty and sleeps for its 600 s poll
    key = add(store, 1)[0]
    t.join(timeout=30)
    assert got and got[0] is not None and got[0].key == key
    store.close()
    ctx.close()


def test_change_probe(tmp_path: Path) -> None:
    from studio.queue.claimer import ChangeProbe

    db_url = f"sqlite:///{tmp_path / 'p.db'}"
    store = open_meta_store(db_url)
    probe = ChangeProbe(db_url)
    assert probe() is False  # nothing since it was made
    add(store, 1)
    assert probe() is True and probe() is False
    assert ChangeProbe("postgresql://u@h/db")() is False and ChangeProbe(None)() is False
    store.close()
