"""Pruners over reported series, and the stop path that records `pruned` with its reason."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from studio.api.context import Context
from studio.entities import Experiment, Status
from studio.exceptions import UsageError
from studio.search.fitness import Objective
from studio.search.optimizers import OptimizerConfig
from studio.search.pruning import TrialPruner, check_pruner

LOSS = Objective.parse("val_loss:min")


def decay(rate: float, steps: int = 20) -> list[tuple[int, float]]:
    return [(s, (1 - rate) ** (s + 1)) for s in range(steps)]


def test_check_pruner() -> None:
    assert check_pruner(None) == "none" and check_pruner("Median") == "median"
    with pytest.raises(UsageError, match="unknown --pruner 'hyperband'"):
        check_pruner("hyperband")


def test_median_prunes_a_worse_trial_after_the_startup_trials() -> None:
    pruner = TrialPruner("median", LOSS, OptimizerConfig(pruner_startup_trials=2))
    pruner.finish("a", decay(0.3), 0.001)
    assert pruner.update("bad", decay(0.01)[:3]) is None  # one finished trial: too early
    pruner.finish("b", decay(0.2), 0.01)
    decision = pruner.update("bad", decay(0.01)[:4])
    assert decision is not None and decision.key == "bad" and decision.step == 3
    assert decision.reason.startswith("pruned by the median pruner at step 3: val_loss = ")
    assert pruner.update("bad", decay(0.01)[:5]) is None  # decided once
    assert pruner.update("good", decay(0.5)[:4]) is None
    pruner.finish("bad", decay(0.01)[:5], 0.95)
    states = [t.state.name for t in pruner.study.trials]
    assert states.count("PRUNED") == 1 and states.count("COMPLETE") == 2


def test_median_maximizing_metric() -> None:
    acc = Objective.parse("acc:max")
    pruner = TrialPruner("median", acc, OptimizerConfig(pruner_startup_trials=1))
    pruner.finish("a", [(s, 0.5 + 0.02 * s) for s in range(10)], 0.7)
    assert pruner.update("worse", [(0, 0.1), (1, 0.12)]) is not None
    assert pruner.update("better", [(0, 0.6), (1, 0.7)]) is None


def test_warmup_steps_are_never_pruned() -> None:
    pruner = TrialPruner("median", LOSS, OptimizerConfig(pruner_startup_trials=1, pruner_warmup_steps=5))
    pruner.finish("a", decay(0.3), 0.001)
    assert pruner.update("bad", decay(0.01)[:5]) is None
    assert pruner.update("bad", decay(0.01)[:7]) is not None


def test_halving_prunes_the_bottom_of_a_rung() -> None:
    pruner = TrialPruner("halving", LOSS, OptimizerConfig())
    for i, rate in enumerate((0.5, 0.4, 0.3, 0.2)):
        pruner.finish(f"t{i}", decay(rate, 10), (1 - rate) ** 10)
    assert pruner.update("worst", decay(0.01, 10)) is not None
    assert pruner.update("best", decay(0.6, 10)) is None


def test_none_never_prunes_and_series_gaps_are_harmless() -> None:
    pruner = TrialPruner("none", LOSS, OptimizerConfig())
    pruner.finish("a", decay(0.3), 0.001)
    assert pruner.update("bad", decay(0.01)) is None and not pruner.active
    median = TrialPruner("median", LOSS, OptimizerConfig(pruner_startup_trials=1))
    median.finish("a", [(0, 0.5), (10, 0.1)], 0.1)
    assert median.update("other", [(3, 9.0), (5, float("nan"))]) is None  # no comparable step
    median.replay("c", decay(0.2), None)  # failed trial: not a reference
    assert [t.state.name for t in median.study.trials][-1] == "FAIL"


# -- the stop path: request_stop(status=PRUNED) -> the executor records `pruned` --------------
@pytest.fixture
def ctx(studio_home: Path) -> Context:
    context = Context.from_env()
    context.settings = context.settings.replace(heartbeat_seconds=0.2, save_workspace_frequency=0)
    yield context
    context.close()


def test_request_stop_records_status_and_reason(ctx: Context) -> None:
    meta = ctx.meta
    meta.create_experiment(Experiment(key="q1", queue="q"))
    stopped = meta.request_stop("q1", status=Status.PRUNED, reason="pruned early")
    assert stopped.status == Status.STOPPED and stopped.status_reason == "pruned early"  # queued: at once
    meta.create_experiment(Experiment(key="r1", queue="q2"))
    assert meta.claim("q2", "w", 30).key == "r1"
    running = meta.request_stop("r1", status=Status.PRUNED, reason="pruned by test")
    assert running.status == Status.RUNNING and running.stop_requested
    assert (running.stop_status, running.stop_reason) == (Status.PRUNED, "pruned by test")
    again = meta.request_stop("r1")  # the first request wins
    assert again.stop_status == Status.PRUNED
    assert meta.heartbeat("r1", "w", 30) is True
    assert meta.get_experiment("r1").to_dict()["stop_status"] == "pruned"


def test_executor_records_pruned_with_the_reason(ctx: Context, tmp_path: Path) -> None:
    from studio.runner.executor import Executor, Launch

    meta = ctx.meta
    meta.create_experiment(Experiment(key="p1", queue="q", sweep="s"))
    exp = meta.claim("q", "worker-1", 30)
    assert exp is not None
    script = "import time\nfor i in range(200):\n    print(f'val_loss: {1/(i+1)}', flush=True)\n    time.sleep(0.05)\n"
    launch = Launch(argv=[sys.executable, "-c", script], cwd=tmp_path, env={"PYTHONUNBUFFERED": "1"},
                    paths={"output": tmp_path / "output.log"}, capture={}, echo=False)

    def prune_soon() -> None:
        time.sleep(0.8)
        meta.request_stop("p1", status=Status.PRUNED, reason="pruned by the median pruner at step 7")

    threading.Thread(target=prune_soon, daemon=True).start()
    started = time.monotonic()
    outcome = Executor(ctx, "worker-1").run(exp, launch)
    assert time.monotonic() - started < 8  # the script alone would run 10 s
    assert outcome.status == Status.PRUNED
    done = meta.get_experiment("p1")
    assert done.status == Status.PRUNED and done.status_reason == "pruned by the median pruner at step 7"
    assert [e.status for e in meta.status_history("p1")][-1] == Status.PRUNED


def test_stored_launch_substitutes_sweep_params_only(ctx: Context, tmp_path: Path) -> None:
    from studio.entities import ArtifactSpec
    from studio.runner.remote import stored_launch

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text("lr = 0.3\nprint(lr)\n")
    tree = ctx.objects.put_tree(ws).tree
    arts = {"workspace": ArtifactSpec(tag="workspace", tree=tree)}
    swept = Experiment(key="s1", script="train.py", params={"lr": 0.4, "w": [1.0]}, sweep="p", artifacts=arts)
    launch = stored_launch(ctx, swept, tmp_path / "run1")
    assert (launch.cwd / "train.py").read_text() == "lr = 0.3\nprint(0.4)\n"
    assert '"lr": 0.4' in launch.env["STUDIOML_PARAMS"]
    plain = Experiment(key="s2", script="train.py", params={"lr": 0.4}, artifacts=arts)
    launch = stored_launch(ctx, plain, tmp_path / "run2")
    assert (launch.cwd / "train.py").read_text() == "lr = 0.3\nprint(lr)\n"
    assert (ws / "train.py").read_text() == "lr = 0.3\nprint(lr)\n"


def test_a_stop_before_the_script_starts_does_not_start_it(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal between the executor taking over signals and the launch: the script is not
    started (a reaper that has not yet forked it ignores signals, so it could be lost)."""
    import signal

    from studio.runner import executor as executor_module
    from studio.runner.executor import Executor, Launch
    from studio.runner.process import Signals

    class SignalledAtOnce(Signals):
        def install(self) -> None:
            super().install()
            if self.on_signal is not None:
                self.on_signal(signal.SIGINT)

    monkeypatch.setattr(executor_module, "Signals", SignalledAtOnce)
    started = tmp_path / "started"
    meta = ctx.meta
    meta.create_experiment(Experiment(key="e1", queue="q"))
    exp = meta.claim("q", "worker-1", 30)
    assert exp is not None
    launch = Launch(argv=[sys.executable, "-c", f"open({str(started)!r}, 'w')"], cwd=tmp_path, env={},
                    paths={"output": tmp_path / "output.log"}, capture={}, echo=False)
    outcome = Executor(ctx, "worker-1").run(exp, launch)
    assert (outcome.status, outcome.returncode, outcome.exit_code) == (Status.STOPPED, -2, 130)
    done = meta.get_experiment("e1")
    assert done.status == Status.STOPPED and done.status_reason == "interrupted (Ctrl-C) while starting"
    assert done.returncode == -2 and done.time_finished is not None
    time.sleep(0.3)
    assert not started.exists()
