"""studio.log / Logger: buffering, steps, faithful values, crash safety, exit and signals."""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from studio.tracking import metrics, segments
from studio.tracking.series import read_series

REPO = Path(__file__).resolve().parents[2]


def rows(metrics_dir: Path, key: str | None = None) -> list[tuple[str, int, float]]:
    df = read_series(metrics_dir, None if key is None else [key])
    return list(zip(df["key"].astype(str), df["step"].tolist(), df["value"].tolist(), strict=True))


def run_script(code: str, metrics_dir: Path, **kwargs: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), STUDIOML_METRICS_DIR=str(metrics_dir))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def logger(tmp_path: Path):  # type: ignore[no-untyped-def]
    lg = metrics.Logger(tmp_path / "m", flush_interval=3600)
    yield lg
    lg.close()


def test_round_trip_and_auto_steps(tmp_path: Path) -> None:
    d = tmp_path / "m"
    with metrics.Logger(d, flush_interval=3600) as lg:
        lg.log(loss=1.0, acc=0.5)
        lg.log(loss=2.0)
        lg.flush()
        lg.log(10, loss=3.0, acc=0.75)  # explicit step for both keys
        lg.log(loss=4.0)  # continues after the explicit step
        lg.log(acc=np.float32(0.25))
    assert rows(d, "loss") == [
        ("loss", 0, 1.0),
        ("loss", 1, 2.0),
        ("loss", 10, 3.0),
        ("loss", 11, 4.0),
    ]
    assert rows(d, "acc") == [("acc", 0, 0.5), ("acc", 10, 0.75), ("acc", 11, 0.25)]
    assert all(n.endswith(".arrow") for n in segments.list_segments(d))  # one format written
    df = read_series(d)
    assert [str(t) for t in df.dtypes] == ["category", "int64", "float64", "float64"]
    assert abs(df["time"].iloc[0] - time.time()) < 60


def test_steps_interleaved_key_sets(logger: metrics.Logger) -> None:
    for i in range(10):
        logger.log(train=float(i))
        if i % 3 == 0:
            logger.log(train=100.0 + i, val=float(i))
    logger.flush()
    train = rows(logger.metrics_dir, "train")  # type: ignore[arg-type]
    assert [s for _, s, _ in train] == list(range(14))
    assert [v for _, _, v in train][:3] == [0.0, 100.0, 1.0]  # call order kept across groups
    assert [s for _, s, _ in rows(logger.metrics_dir, "val")] == [0, 1, 2, 3]  # type: ignore[arg-type]


def test_nan_and_inf_stored_faithfully(tmp_path: Path) -> None:
    d = tmp_path / "m"
    with metrics.Logger(d) as lg:
        lg.log(x=float("nan"))
        lg.log(x=float("inf"))
        lg.log(x=float("-inf"))
        lg.log(x=-0.0)
        lg.log(x=5e-324)
        lg.log(x=1.7976931348623157e308)
        lg.log(x=0.1)
    values = [v for _, _, v in rows(d)]
    assert math.isnan(values[0])
    assert values[1:3] == [math.inf, -math.inf]
    assert math.copysign(1, values[3]) == -1
    assert values[4:] == [5e-324, 1.7976931348623157e308, 0.1]


def test_bad_input(logger: metrics.Logger, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(TypeError):
        logger.log(1.5, x=1.0)  # type: ignore[arg-type]
    logger.log(x="not a number")  # type: ignore[arg-type]
    logger.log(x=2.0, y=3.0)
    logger.log(np.int64(7), y=4.0)  # numpy ints are fine as steps
    with caplog.at_level(logging.WARNING):
        logger.flush()
    assert rows(logger.metrics_dir) == [("x", 0, 2.0), ("y", 0, 3.0), ("y", 7, 4.0)]  # type: ignore[arg-type]


def test_bad_value_in_wide_calls(logger: metrics.Logger) -> None:
    for i in range(3):
        logger.log(a=float(i), b="bad" if i == 1 else float(i), c=1.0, d=2.0)  # type: ignore[arg-type]
    logger.flush()
    got = rows(logger.metrics_dir)  # type: ignore[arg-type]
    assert [(s, v) for k, s, v in got if k == "b"] == [(0, 0.0), (1, 2.0)]  # dropped, no step used
    assert [(s, v) for k, s, v in got if k == "a"] == [(0, 0.0), (1, 1.0), (2, 2.0)]


def test_threads_log_concurrently(logger: metrics.Logger) -> None:
    def work(k: int) -> None:
        for i in range(5000):
            logger.log(**{f"t{k}": float(i)})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for _ in range(5):
        logger.flush()  # flushing while others log
    for t in threads:
        t.join()
    logger.flush()
    df = read_series(logger.metrics_dir)  # type: ignore[arg-type]
    assert len(df) == 20000
    for k in range(4):
        part = df[df["key"] == f"t{k}"]
        assert part["step"].tolist() == list(range(5000))
        assert (part["value"] == part["step"]).all()


def test_background_flush_by_time_and_count(tmp_path: Path) -> None:
    with metrics.Logger(tmp_path / "t", flush_interval=0.05) as lg:
        lg.log(a=1.0)
        deadline = time.time() + 5
        while not segments.list_segments(tmp_path / "t") and time.time() < deadline:
            time.sleep(0.01)
        assert segments.list_segments(tmp_path / "t")
    with metrics.Logger(tmp_path / "c", flush_interval=3600, max_pending=100) as lg:
        for i in range(1000):
            lg.log(a=float(i))
        deadline = time.time() + 5
        while lg.segments_written == 0 and time.time() < deadline:
            time.sleep(0.01)
        assert lg.segments_written >= 1


def test_no_directory_is_a_noop_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.delenv(metrics.ENV_METRICS_DIR, raising=False)
    monkeypatch.setattr(metrics, "_default", None)
    with caplog.at_level(logging.WARNING, logger="studio.tracking.metrics"):
        metrics.log(a=1.0)
        metrics.log(a=2.0)
    assert len([r for r in caplog.records if "not recorded" in r.getMessage()]) == 1
    lg = metrics.configure(tmp_path / "cfg")
    try:
        metrics.log(a=3.0)
        metrics.log(5, a=4.0, b=1.0)
        metrics.flush()
        assert rows(tmp_path / "cfg") == [("a", 0, 3.0), ("a", 5, 4.0), ("b", 5, 1.0)]
    finally:
        metrics.configure(None)
        lg.close()
        monkeypatch.setattr(metrics, "_default", None)


def test_import_is_cheap() -> None:
    code = (
        "import sys, studio; f = studio.log; import studio.tracking.metrics;"
        "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert out.stdout.strip() == "[]"


def test_flush_at_exit(tmp_path: Path) -> None:
    proc = run_script(
        """
        import studio
        for i in range(1000):
            studio.log(loss=i * 0.5)
        """,
        tmp_path,
    )
    assert proc.wait(30) == 0, proc.stderr.read()  # type: ignore[union-attr]
    assert len(rows(tmp_path)) == 1000


def test_flush_on_sigterm_then_die_of_it(tmp_path: Path) -> None:
    proc = run_script(
        """
        import time, studio
        from studio.tracking import metrics
        metrics.configure(__import__('os').environ['STUDIOML_METRICS_DIR'], flush_interval=3600)
        for i in range(500):
            studio.log(loss=float(i))
        print('ready', flush=True)
        time.sleep(60)
        """,
        tmp_path,
    )
    assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM  # still killed by the signal, as the supervisor expects
    assert [s for _, s, _ in rows(tmp_path)] == list(range(500))


def test_sigint_flushes_and_keeps_keyboardinterrupt(tmp_path: Path) -> None:
    proc = run_script(
        """
        import time, studio
        from studio.tracking import metrics
        metrics.configure(__import__('os').environ['STUDIOML_METRICS_DIR'], flush_interval=3600)
        studio.log(a=1.0)
        try:
            print('ready', flush=True)
            time.sleep(60)
        except KeyboardInterrupt:
            print('interrupted', flush=True)
        """,
        tmp_path,
    )
    assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.strip() == "interrupted"
    assert rows(tmp_path) == [("a", 0, 1.0)]


def test_previous_sigterm_handler_is_chained(tmp_path: Path) -> None:
    proc = run_script(
        """
        import signal, sys, time, studio
        from studio.tracking import metrics
        def mine(signum, frame):
            print('mine', flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, mine)
        metrics.configure(__import__('os').environ['STUDIOML_METRICS_DIR'], flush_interval=3600)
        studio.log(a=1.0)
        print('ready', flush=True)
        time.sleep(60)
        """,
        tmp_path,
    )
    assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3 and out.strip() == "mine"
    assert rows(tmp_path) == [("a", 0, 1.0)]


WRITER = """
import os, sys, time
from studio.tracking import metrics
lg = metrics.Logger(os.environ['STUDIOML_METRICS_DIR'], flush_interval=0.02, fsync=False)
tag = float(sys.argv[1])
print('ready', flush=True)
i = 0
while i < int(sys.argv[2]):
    lg.log(i, shared=tag * 1e9 + i, **{f'p{int(tag)}': float(i)})
    i += 1
    if i % 500 == 0:
        time.sleep(0.001)
lg.close()
"""


def test_two_processes_write_one_directory(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), STUDIOML_METRICS_DIR=str(tmp_path))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(k), "20000"], env=env, stdout=subprocess.DEVNULL
        )
        for k in (1, 2)
    ]
    for p in procs:
        assert p.wait(60) == 0
    df = read_series(tmp_path)
    for k in (1, 2):
        own = df[df["key"] == f"p{k}"]
        assert own["step"].tolist() == list(range(20000))
    shared = df[df["key"] == "shared"]
    assert len(shared) == 40000
    # every row is whole: its value encodes which process wrote it and at which step
    tags, steps = np.divmod(shared["value"].to_numpy(), 1e9)
    assert (steps == shared["step"].to_numpy()).all()
    assert sorted(set(tags.tolist())) == [1.0, 2.0]
    assert len({n.split("-")[2] for n in segments.list_segments(tmp_path)}) == 2  # two pids


def test_sigkill_mid_logging_leaves_readable_series(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), STUDIOML_METRICS_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, "1", str(10**9)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
    deadline = time.time() + 20
    while len(segments.list_segments(tmp_path)) < 5 and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait(10)
    (tmp_path / ".seg-0-1-000000-deadbeef.arrow.abc123.tmp").write_bytes(
        b"ARROW1\0\0torn"
    )  # as a kill mid-write leaves
    df = read_series(tmp_path)
    assert len(df) > 0
    own = df[df["key"] == "p1"]
    assert own["step"].tolist() == list(range(len(own)))  # a prefix, no gap, nothing torn
    shared = df[df["key"] == "shared"]
    assert (shared["value"].to_numpy() - 1e9 == shared["step"].to_numpy()).all()


def test_live_reading_while_a_writer_runs(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), STUDIOML_METRICS_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, "1", "60000"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
    seen = []
    while proc.poll() is None:
        df = read_series(tmp_path, ["p1"])
        assert df["step"].tolist() == list(range(len(df)))  # every read is a consistent prefix
        seen.append(len(df))
        time.sleep(0.02)
    assert proc.returncode == 0
    assert len(read_series(tmp_path, ["p1"])) == 60000
    assert seen == sorted(seen) and len(set(seen)) > 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_does_not_duplicate_parent_points(tmp_path: Path) -> None:
    with metrics.Logger(tmp_path / "f", flush_interval=3600) as lg:
        lg.log(parent=1.0)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            lg.log(child=2.0)
            lg.flush()
            os._exit(0)
        os.waitpid(pid, 0)
    assert sorted(rows(tmp_path / "f")) == [("child", 0, 2.0), ("parent", 0, 1.0)]


def test_system_sampler(tmp_path: Path) -> None:
    from studio.tracking.system import SystemSampler

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sampler = SystemSampler(child.pid, tmp_path, interval=0.05).start()
        time.sleep(0.4)
        sampler.stop()
    finally:
        child.kill()
        child.wait()
    df = read_series(tmp_path)
    keys = set(df["key"].astype(str))
    assert {"sys/cpu_percent", "sys/memory_rss", "sys/num_processes"} <= keys
    rss = df[df["key"] == "sys/memory_rss"]["value"]
    assert len(rss) >= 2 and (rss > 1e6).all()


def test_system_sampler_of_a_short_run_imports_nothing(tmp_path: Path) -> None:
    """A script done before the first (priming, unlogged) sample costs its supervisor no
    psutil import; one still running then is sampled every interval from the start."""
    code = (
        "import os, sys, time; from studio.tracking.system import SystemSampler; "
        f"s = SystemSampler(os.getpid(), {str(tmp_path / 'short')!r}).start(); time.sleep(0.05); s.stop(); "
        "print('psutil' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

    from studio.tracking.system import SystemSampler

    sampler = SystemSampler(os.getpid(), tmp_path / "long", interval=0.4, first_sample=0.1).start()
    time.sleep(0.65)  # primed at 0.1 s, logged at 0.4 s
    sampler.stop()
    df = read_series(tmp_path / "long")
    assert len(df[df["key"] == "sys/cpu_percent"]) >= 1
