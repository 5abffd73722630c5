"""Optimizers (grid, Optuna samplers, plugins), the objective, sweep config, state and params."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest

from studio.entities import MetricSummary
from studio.exceptions import ConfigError, HyperParamError, UsageError
from studio.search import iter_grid, parse_hyperparams
from studio.search.fitness import Objective, parse_lines
from studio.search.optimizers import (
    Optimizer,
    OptimizerConfig,
    SearchSpace,
    load_optimizer,
)
from studio.search.state import (
    SweepState,
    TrialRecord,
    legacy_path,
    list_sweeps,
    load_state,
    sweep_exists,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sweep"


def space(*grid: str, ranges: tuple[str, ...] = ()) -> SearchSpace:
    from studio.search import parse_ranges

    return SearchSpace(grid=tuple(parse_hyperparams(grid)), ranges=tuple(parse_ranges(ranges)))


def rosenbrock(x: list[float]) -> float:
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


# -- config -------------------------------------------------------------------------------
def test_config_defaults_and_values() -> None:
    cfg = OptimizerConfig.from_mapping({"popsize": 8, "generations": "3", "target": 0.5, "seed": 1.0})
    assert (cfg.popsize, cfg.generations, cfg.target, cfg.seed) == (8, 3, 0.5, 1)
    assert OptimizerConfig.from_mapping(None) == OptimizerConfig()
    assert cfg.to_dict()["popsize"] == 8


def test_config_upstream_spelling() -> None:
    cfg = OptimizerConfig.from_mapping({
        "cmaes_config": {"popsize": 6, "sigma0": 0.25, "load_best_only": False},
        "termination_criterion": {"generation": 5, "fitness": 999, "skip_gen_thresh": 0.5, "skip_gen_timeout": 30},
        "visualization": True,
    })
    assert (cfg.popsize, cfg.sigma0, cfg.generations, cfg.target, cfg.skip_gen_thresh, cfg.timeout) == (
        6, 0.25, 5, 999.0, 0.5, 30.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"popsiz": 3}, "unknown key `optimizer.popsiz`"),
        ({"popsize": 0}, "at least 1"),
        ({"popsize": 2.5}, "whole number"),
        ({"popsize": True}, "must be a number"),
        ({"target": "high"}, "must be a number"),
        ({"target": float("nan")}, "finite"),
        ({"skip_gen_thresh": 1.5}, "(0, 1]"),
        ({"timeout": -1}, "must not be negative"),
        ({"termination_criterion": {"generations": 3}}, "termination_criterion.generations"),
        ({"plugin": 3}, "optimizer.plugin"),
    ],
)
def test_config_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        OptimizerConfig.from_mapping(data)


# -- grid ---------------------------------------------------------------------------------
def test_grid_enumerates_iter_grid_order_in_batches() -> None:
    sp = space("a=1,2,3", "b=:2", "c=x,y")
    grid = load_optimizer("grid", sp, OptimizerConfig())
    expected = list(iter_grid(sp.grid))
    got = grid.ask(5) + grid.ask(100)
    assert got == expected and grid.done and grid.ask(3) == []
    assert grid.default_popsize(2) == 18


def test_grid_state_round_trip() -> None:
    sp = space("a=1:10")
    grid = load_optimizer(None, sp, OptimizerConfig())
    grid.ask(4)
    again = load_optimizer(None, sp, OptimizerConfig())
    again.restore(json.loads(json.dumps(grid.state())))
    assert again.ask(2) == [{"a": 5}, {"a": 6}]


def test_grid_refuses_ranges() -> None:
    with pytest.raises(UsageError, match="value lists, not ranges"):
        load_optimizer("grid", space(ranges=("lr=0:1",)), OptimizerConfig())


# -- Optuna samplers ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["random", "tpe", "cmaes"])
def test_sampler_points_respect_the_space(name: str) -> None:
    if name == "cmaes":
        pytest.importorskip("cmaes")
    sp = space("opt=adam,sgd", "fixed=7", ranges=("lr=1e-4:1:l", "w=-1:1:3:a"))
    opt = load_optimizer(name, sp, OptimizerConfig(seed=1, popsize=4))
    for _ in range(3):
        batch = opt.ask(4)
        assert len(batch) == 4
        for p in batch:
            assert set(p) == {"opt", "fixed", "lr", "w"}
            assert p["opt"] in ("adam", "sgd") and p["fixed"] == 7
            assert 1e-4 <= p["lr"] <= 1 and len(p["w"]) == 3 and all(-1 <= v <= 1 for v in p["w"])
        opt.tell([(p, -p["lr"]) for p in batch])


@pytest.mark.parametrize("name", ["random", "tpe", "cmaes"])
def test_sampler_state_round_trip_continues(name: str) -> None:
    if name == "cmaes":
        pytest.importorskip("cmaes")
    sp = space(ranges=("x=-2:2:4:a",))
    cfg = OptimizerConfig(seed=5, popsize=4)
    opt = load_optimizer(name, sp, cfg)
    batch = opt.ask(4)
    opt.tell([(p, -rosenbrock(p["x"])) for p in batch])
    pending = opt.ask(4)
    state = json.loads(json.dumps(opt.state()))  # checkpoint with asked, untold points
    resumed = load_optimizer(name, sp, cfg)
    resumed.restore(state)
    told = json.loads(json.dumps(pending))
    resumed.tell([(p, -rosenbrock(p["x"])) for p in reversed(told)])
    assert len(resumed.study.trials) == 8  # type: ignore[attr-defined]
    assert all(t.state.name == "COMPLETE" for t in resumed.study.trials)  # type: ignore[attr-defined]
    assert len(resumed.ask(4)) == 4


def test_failed_trials_are_told_as_failures() -> None:
    opt = load_optimizer("random", space(ranges=("a=0:1",)), OptimizerConfig(seed=0))
    batch = opt.ask(2)
    opt.tell([(batch[0], None), (batch[1], math.nan)])
    assert [t.state.name for t in opt.study.trials] == ["FAIL", "FAIL"]  # type: ignore[attr-defined]


def test_tpe_beats_random_on_a_simple_bowl() -> None:
    sp = space(ranges=("x=-5:5", "y=-5:5"))

    def best(name: str) -> float:
        opt = load_optimizer(name, sp, OptimizerConfig(seed=2, n_startup_trials=5))
        found = -math.inf
        for _ in range(40):
            (p,) = opt.ask(1)
            fitness = -((p["x"] - 1) ** 2 + (p["y"] + 2) ** 2)
            opt.tell([(p, fitness)])
            found = max(found, fitness)
        return found

    assert best("tpe") > best("random")


def test_missing_cmaes_package_has_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from studio.exceptions import MissingDependencyError

    monkeypatch.setitem(sys.modules, "cmaes", None)
    with pytest.raises(MissingDependencyError, match=r"studio-experiments\[search\]"):
        load_optimizer("cmaes", space(ranges=("a=0:1",)), OptimizerConfig())


# -- plugins ------------------------------------------------------------------------------
def test_plugin_file_and_module_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sp = space(ranges=("a=0:1",))
    opt = load_optimizer(str(EXAMPLES / "random_plugin.py"), sp, OptimizerConfig(seed=1))
    assert isinstance(opt, Optimizer) and opt.name == "random-plugin"
    (p,) = opt.ask(1)
    assert 0 <= p["a"] <= 1
    opt.tell([(p, 1.0)])
    state = json.loads(json.dumps(opt.state()))
    (tmp_path / "myopts.py").write_text((EXAMPLES / "random_plugin.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    other = load_optimizer("myopts:RandomSearch", sp, OptimizerConfig(seed=1))
    other.restore(state)
    assert other.ask(1) == opt.ask(1)


def test_duck_typed_plugin_named_optimizer(tmp_path: Path) -> None:
    (tmp_path / "duck.py").write_text(textwrap.dedent("""\
        class Optimizer:
            def __init__(self, space, config):
                self.n = 0
            def ask(self, n):
                self.n += n
                return [{"a": 0.5}] * n
            def tell(self, results):
                pass
            def done(self):
                return self.n >= 2
        """))
    opt = load_optimizer("duck.py", space(ranges=("a=0:1",)), OptimizerConfig(), cwd=tmp_path)
    assert opt.ask(2) == [{"a": 0.5}, {"a": 0.5}] and opt.done and opt.state() == {}


@pytest.mark.parametrize(
    ("name", "source", "message"),
    [
        ("nosuch", None, "unknown optimizer 'nosuch'"),
        ("missing.py", None, "no such file"),
        ("nope.module:Thing", None, "cannot be imported"),
        ("plain.py", "class Helper:\n    pass\n", "defines no optimizer"),
        ("half.py", "from studio.search.optimizers import Optimizer\nclass Half(Optimizer):\n"
                    "    def ask(self, n):\n        return []\n", "Half does not implement ask and tell"),
        ("broken.py", "raise RuntimeError('boom')\n", "failed to load: RuntimeError: boom"),
        ("noask.py", "class Optimizer:\n    def tell(self, r):\n        pass\n", "has no ask method"),
    ],
)
def test_bad_plugins(tmp_path: Path, name: str, source: str | None, message: str) -> None:
    if source is not None:
        (tmp_path / name).write_text(source)
    with pytest.raises(UsageError, match=message):
        load_optimizer(name, space(ranges=("a=0:1",)), OptimizerConfig(), cwd=tmp_path)


# -- the sweep's search space -------------------------------------------------------------
def test_build_space_modes() -> None:
    from studio.api.sweep import build_space

    grid = build_space(["lr=0:2"], None, False)
    assert grid.grid[0].values == (0, 1, 2) and not grid.ranges
    mixed = build_space(["lr=1e-4:1:l", "opt=adam,sgd", "n=3", "w=0:1:4:a"], "tpe", False)
    assert [p.name for p in mixed.grid] == ["opt", "n"] and [r.name for r in mixed.ranges] == ["lr", "w"]
    assert mixed.dimensions == 2 + 1 + 4
    with pytest.raises(HyperParamError, match="more than once"):
        build_space(["lr=1", "lr=2"], None, False)
    with pytest.raises(HyperParamError, match="more than the limit"):
        build_space(["a=0:999", "b=0:999"], None, False)
    assert build_space(["a=0:999", "b=0:999"], None, True).grid[0].values[-1] == 999
    with pytest.raises(UsageError, match="at least one -hp"):
        build_space([], "tpe", False)


# -- the objective ------------------------------------------------------------------------
def test_objective_parsing_and_direction() -> None:
    assert Objective.parse(None) == Objective("fitness", "last", True, False)
    loss = Objective.parse("val_loss:min")
    assert (loss.name, loss.fold, loss.maximize, loss.spec) == ("val_loss", "min", False, "val_loss:min")
    assert loss.fitness(0.25) == -0.25 and loss.value(-0.25) == 0.25 and loss.fitness(math.nan) is None
    assert loss.better(0.1, 0.2) and not loss.better(None, 0.2) and loss.better(0.2, None)
    acc = Objective.parse("acc:max")
    assert acc.maximize and acc.fitness(0.9) == 0.9 and acc.better(0.9, 0.8)
    assert not Objective.parse("val_loss").maximize and Objective.parse("fitness").maximize
    for bad in ("val_loss:median", ":min", "two words"):
        with pytest.raises(UsageError):
            Objective.parse(bad)


def test_folds_keep_zero() -> None:
    """Upstream's fold dropped a running value of 0.0; ours must not."""
    from studio.runner.checkpoint import fold_metric

    loss = Objective.parse("loss:min")
    assert loss.fold_values([0.5, 0.0, 0.3]) == 0.0
    assert Objective.parse("loss").fold_values([0.5, 0.0]) == 0.0
    assert Objective.parse("loss:max").fold_values([-1.0, 0.0, -2.0]) == 0.0
    assert loss.fold_values([math.nan]) is None and loss.fold_values([]) is None
    summary = MetricSummary(key="loss", last=0.0, min=0.0, max=0.0, count=3)
    assert loss.from_summary(summary) == 0.0
    assert fold_metric("loss:min", [summary]) == 0.0 and fold_metric("loss", [summary]) == 0.0
    assert fold_metric("loss:max", [MetricSummary(key="loss", last=-1.0, min=-2.0, max=0.0, count=2)]) == 0.0


def test_output_lines() -> None:
    assert parse_lines("fitness: 1.5\nepoch 3 done\nval_loss=0.25\n  fitness: -2e-3 \n") == [
        ("fitness", 1.5), ("val_loss", 0.25), ("fitness", -0.002)]


# -- state and params ---------------------------------------------------------------------
def test_state_round_trip(tmp_path: Path) -> None:
    from studio.meta import open_meta_store

    meta = open_meta_store(f"sqlite:///{tmp_path / 'studio.db'}")
    state = SweepState(project="p/x", script="t.py", args=["3"], cwd="/w", hyperparams=["lr=0:1"],
                       optimizer="tpe", metric="loss:min", pruner="none", queue="q", local_queue=True,
                       num_workers=2, trials=[TrialRecord("k1", {"lr": 0.5}, 0, "finished", math.nan)])
    state.save(meta)
    again = load_state(meta, tmp_path, "p/x")
    assert again.trials[0].value is not None and math.isnan(again.trials[0].value)
    again.trials[0].value = state.trials[0].value = 0.25
    assert again == state and again.trial("k1") is not None
    assert list_sweeps(meta, tmp_path) == ["p/x"] and sweep_exists(meta, tmp_path, "p/x")
    with pytest.raises(Exception, match="no sweep 'nope'"):
        load_state(meta, tmp_path, "nope")
    # A checkpoint file of studio before schema 0006 is found, then copied into the store.
    old = SweepState(project="old", script="t.py", args=[], cwd="/w", hyperparams=["lr=0:1"],
                     optimizer="grid", metric=None, pruner="none", queue="q", local_queue=True, num_workers=1)
    legacy_path(tmp_path, "old").parent.mkdir(parents=True)
    legacy_path(tmp_path, "old").write_text(json.dumps(old.to_dict()))
    assert list_sweeps(meta, tmp_path) == ["old", "p/x"]
    assert load_state(meta, tmp_path, "old") == old and "old" in meta.sweeps()
    meta.close()


def test_params(monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.tracking.params import params

    monkeypatch.delenv("STUDIOML_PARAMS", raising=False)
    assert params() == {}
    monkeypatch.setenv("STUDIOML_PARAMS", json.dumps({"lr": 0.1, "w": [1.0, 2.0]}))
    import studio

    assert studio.params() == {"lr": 0.1, "w": [1.0, 2.0]}
    first = params()
    first["lr"] = 5
    assert params()["lr"] == 0.1  # a fresh dict each time
    monkeypatch.setenv("STUDIOML_PARAMS", "not json")
    assert params() == {}
    monkeypatch.setenv("STUDIOML_PARAMS", "[1, 2]")
    assert params() == {}


@pytest.mark.parametrize("name", ["random", "tpe", "cmaes"])
def test_integer_bounds_propose_integers(name: str) -> None:
    """README's `-opt tpe -hp depth=2:8`: integers, never depth=7.40321; `0.0:1` stays float."""
    opt = load_optimizer(name, space(ranges=("depth=2:8", "lr=0.0:1", "n=1:1000:l")), OptimizerConfig(seed=1, popsize=4))
    for _ in range(3):
        batch = opt.ask(4)
        for p in batch:
            assert isinstance(p["depth"], int) and 2 <= p["depth"] <= 8
            assert isinstance(p["n"], int) and 1 <= p["n"] <= 1000
            assert isinstance(p["lr"], float)
        opt.tell([(p, float(p["depth"])) for p in batch])
