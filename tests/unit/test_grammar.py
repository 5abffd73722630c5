"""The grid grammar of `-hp name=spec` (UPSTREAM.md section 4) and grid expansion."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio.exceptions import HyperParamError, UsageError
from studio.search import grammar
from studio.search.grammar import (
    DEFAULT_GRID_LIMIT,
    HARD_GRID_LIMIT,
    HyperParameter,
    expand_grid,
    grid_size,
    iter_grid,
    parse_hyperparam,
    parse_hyperparams,
)


def values(text: str, **kwargs: object) -> list[object]:
    return list(parse_hyperparam(text, **kwargs).values)  # type: ignore[arg-type]


# --- upstream test vectors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1,2,3", [1, 2, 3]),
        (":5", [0, 1, 2, 3, 4, 5]),
        ("2:5", [2, 3, 4, 5]),
        ("0.1:0.05:0.3", [0.1, 0.15, 0.2, 0.25, 0.3]),
        ("0.1:3:0.3", [0.1, 0.2, 0.3]),
        ("0.01:4l:10", [0.01, 0.1, 1, 10]),
    ],
)
def test_upstream_vectors(spec: str, expected: list[object]) -> None:
    assert values(f"lr={spec}") == expected


def test_vectors_print_cleanly() -> None:
    # repr is what the user sees and what substitution writes into the script
    assert repr(values("lr=0.1:0.05:0.3")) == "[0.1, 0.15, 0.2, 0.25, 0.3]"
    assert repr(values("lr=0.01:4l:10")) == "[0.01, 0.1, 1.0, 10.0]"
    assert repr(values("lr=0.1:3:0.3")) == "[0.1, 0.2, 0.3]"


def test_integers_stay_ints() -> None:
    for spec in ("1,2,3", ":5", "2:5", "0:2:10", "0:3:2", "1:3l:100", "7"):
        assert all(type(v) is int for v in values(f"n={spec}")), spec
    assert values("n=0:2:10") == [0, 2, 4, 6, 8, 10]
    assert values("n=0:3:2") == [0, 1, 2]  # 3 > |2-0|: three points, all integral
    assert values("n=1:3l:100") == [1, 10, 100]


def test_floats_where_the_spec_is_not_integral() -> None:
    assert values("x=0:3:1") == [0.0, 0.5, 1.0]
    assert all(type(v) is float for v in values("x=0.5:3"))
    assert values("x=0.5:3") == [0.5, 1.5, 2.5]
    assert type(values("x=1.0")[0]) is float


# --- the rest of the grammar --------------------------------------------------------------


def test_log_spacing_both_spellings() -> None:
    expected = [1e-05, 0.0001, 0.001, 0.01, 0.1]
    assert values("lr=1e-5:5l:0.1") == expected
    assert values("lr=1e-5:l5:0.1") == expected
    assert values("lr=10:3l:0.1") == [10.0, 1.0, 0.1]  # descending is fine
    assert values("lr=1:3l:2")[1] == pytest.approx(math.sqrt(2), rel=1e-15)
    assert values("lr=1:3l:4") == [1, 2, 4]


def test_uniform_points() -> None:
    assert values("lr=0:u5:1") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert values("lr=0:5u:1") == [0.0, 0.25, 0.5, 0.75, 1.0]
    # uN is explicit: unlike a:N:b it does not depend on N > |b-a|
    assert values("n=0:u3:10") == [0, 5, 10]
    assert values("n=0:3:10") == [0, 3, 6, 9]  # here 3 is a step
    assert len(values("lr=1e-5:u10:0.1")) == 10


def test_count_versus_step() -> None:
    # N must be an integral number greater than |b-a| to count points
    assert values("x=0:11:1") == [k / 10 for k in range(11)]
    assert values("x=0:1:1") == [0, 1]  # 1 is not > 1: a step
    assert values("x=0:2:1") == [0, 1]  # two points
    assert values("x=0:2.0:1") == [0, 1]  # 2.0 is integral, so it counts points too
    assert values("x=3:4:3") == [3, 3, 3, 3]  # a == b: N copies, as upstream's linspace


def test_manual_example_step() -> None:
    lr = values("lr=0.01:0.01:0.1")
    assert lr == [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1]


def test_step_does_not_overshoot_the_end() -> None:
    assert values("x=0:0.6:1") == [0.0, 0.6]
    assert values("x=0:0.3:1") == [0.0, 0.3, 0.6, 0.9]


def test_negative_step_counts_down() -> None:
    assert values("n=5:-1:1") == [5, 4, 3, 2, 1]
    assert values("x=-0.3:0.1:0.3") == [-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3]
    assert repr(values("x=-0.3:0.1:0.3")[3]) == "0.0"  # not -0.0 nor 5.5e-17


def test_single_values_and_strings() -> None:
    assert values("lr=0.1") == [0.1]
    assert values("n=-3") == [-3]
    assert values("opt=adam") == ["adam"]
    assert values("opt=adam, sgd ,3") == ["adam", "sgd", 3]
    assert values("dev=cuda:0,cpu") == ["cuda:0", "cpu"]
    assert values("x=nan,inf") == ["nan", "inf"]  # not decimal literals: strings
    assert values("s=a=b") == ["a=b"]


def test_name_and_spec_are_recorded() -> None:
    param = parse_hyperparam(" lr = 0:2 ")
    assert param == HyperParameter(name="lr", values=(0, 1, 2), spec="0:2")
    assert len(param) == 3


def test_big_integers_stay_exact() -> None:
    big = 10**30
    assert values(f"n=1:3l:{big}") == [1, 10**15, big]
    odd = 12345678901234567890123456789012346
    assert values(f"n=0:u3:{odd}") == [0, odd // 2, odd]
    assert values(f"n={big}:{big + 3}") == [big, big + 1, big + 2, big + 3]


def test_callers_decimal_context_does_not_matter() -> None:
    import decimal

    with decimal.localcontext() as ctx:
        ctx.prec = 3
        assert values("x=1.23456:0.00001:1.2346") == [1.23456, 1.23457, 1.23458, 1.23459, 1.2346]
        assert ctx.prec == 3


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("lr=", "no values after 'lr='"),
        ("lr", "missing '='"),
        ("=3", "missing name"),
        ("l r=3", "not a Python identifier"),
        ("if=3", "not a Python identifier"),
        ("lr=1:0:2", "step is 0"),
        ("lr=1:-1:5", "goes the wrong way"),
        ("lr=5:1:1", "goes the wrong way"),
        ("lr=a:b", "start 'a' is not a number"),
        ("lr=1:b", "end 'b' is not a number"),
        ("lr=1:x:2", "'x' is not a number"),
        ("lr=1::2", "empty step"),
        ("lr=1:", "missing end"),
        ("lr=5:2", "end is smaller than start"),
        ("lr=0:4l:1", "greater than 0"),
        ("lr=-1:4l:1", "greater than 0"),
        ("lr=:4l:1", "greater than 0"),
        ("lr=1:0l:10", "0 points"),
        ("lr=1:u0:10", "0 points"),
        ("lr=1:l0:10", "0 points"),
        ("lr=1:2:3:4", "too many ':'"),
        ("lr=1e400", "out of the float range"),
        ("lr=0:1e400", "out of the float range"),
        ("lr=1,,2", "empty value"),
        ("lr=1,2,", "empty value"),
        ("lr=1:3,5", "inside a comma list"),
        ("lr=0:1e12:1", "more than the hard limit"),
        ("lr=0:200000", "more than the limit of 100000"),
    ],
)
def test_bad_specs(text: str, fragment: str) -> None:
    with pytest.raises(HyperParamError) as info:
        parse_hyperparam(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert message.startswith("bad hyperparameter ")


def test_errors_are_usage_errors_with_a_hint() -> None:
    with pytest.raises(UsageError) as info:
        parse_hyperparam("lr=a:b")
    assert "valid specs look like" in str(info.value)
    with pytest.raises(HyperParamError, match="log-spaced|1e-5:5l:0.1"):
        parse_hyperparam("lr=0:4l:1")
    with pytest.raises(HyperParamError, match="--force"):
        parse_hyperparam("lr=0:200000")


def test_long_input_is_shortened_in_the_message() -> None:
    with pytest.raises(HyperParamError) as info:
        parse_hyperparam("lr=" + "x" * 10_000 + ":1")
    assert len(str(info.value)) < 500


# --- limits -------------------------------------------------------------------------------


def test_limit_and_force() -> None:
    assert len(values(f"n=1:{DEFAULT_GRID_LIMIT}")) == DEFAULT_GRID_LIMIT
    with pytest.raises(HyperParamError, match="more than the limit"):
        parse_hyperparam(f"n=0:{DEFAULT_GRID_LIMIT}")
    assert len(values(f"n=0:{DEFAULT_GRID_LIMIT}", force=True)) == DEFAULT_GRID_LIMIT + 1
    with pytest.raises(HyperParamError, match="limit of 10"):
        parse_hyperparam("n=0:10", limit=10)


@pytest.mark.parametrize(
    "text",
    [
        "lr=0:1e12:1",
        "lr=0:1e300",
        "lr=1:" + "9" * 5000 + "l:2",
        "lr=0:0.0000000001:1",
        "n=0:u99999999999999999:1",
    ],
)
def test_huge_ranges_fail_fast_even_with_force(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(HyperParamError, match="hard limit"):
        parse_hyperparam(text, force=True)
    assert time.perf_counter() - started < 5.0  # refused up front, not built


def test_expand_grid_is_the_cartesian_product() -> None:
    params = parse_hyperparams(["lr=0.1,0.2", "opt=adam,sgd", "n=1"])
    assert expand_grid(params) == [
        {"lr": 0.1, "opt": "adam", "n": 1},
        {"lr": 0.1, "opt": "sgd", "n": 1},
        {"lr": 0.2, "opt": "adam", "n": 1},
        {"lr": 0.2, "opt": "sgd", "n": 1},
    ]
    assert list(iter_grid(params)) == expand_grid(params)
    assert grid_size(params) == 4
    assert expand_grid([]) == [{}]


def test_expand_grid_checks_size_before_building() -> None:
    thousand = tuple(range(1000))
    params = [
        HyperParameter("a", thousand),
        HyperParameter("b", thousand),
        HyperParameter("c", thousand),
    ]
    started = time.perf_counter()
    with pytest.raises(HyperParamError, match="more than the limit"):
        expand_grid(params[:2])
    with pytest.raises(HyperParamError, match="hard limit"):
        expand_grid(params, force=True)  # 10**9 points: refused, not built
    assert time.perf_counter() - started < 5.0  # refused up front, not built
    assert len(expand_grid([params[0], HyperParameter("b", (1, 2))])) == 2000


def test_force_goes_up_to_the_hard_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grammar, "HARD_GRID_LIMIT", 100)
    params = [HyperParameter("a", tuple(range(10))), HyperParameter("b", tuple(range(10)))]
    assert len(expand_grid(params, limit=10, force=True)) == 100
    with pytest.raises(HyperParamError, match="hard limit of 100 "):
        expand_grid([*params, HyperParameter("c", (1, 2))], limit=10, force=True)
    assert len(parse_hyperparam("n=1:100", limit=10, force=True)) == 100
    with pytest.raises(HyperParamError, match="hard limit"):
        parse_hyperparam("n=0:100", force=True)
    assert HARD_GRID_LIMIT == 1_000_000


def test_product_over_limit_needs_force() -> None:
    params = parse_hyperparams(["a=1:400", "b=1:400"], force=True)
    with pytest.raises(HyperParamError, match="--force"):
        expand_grid(params)
    with pytest.raises(HyperParamError, match="more than the limit"):
        parse_hyperparams(["a=1:400", "b=1:400"])
    assert grid_size(params, force=True) == 160_000


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(HyperParamError, match="more than once"):
        parse_hyperparams(["lr=1", "lr=2"])
    with pytest.raises(HyperParamError, match="more than once"):
        expand_grid([HyperParameter("lr", (1,)), HyperParameter("lr", (2,))])


# --- properties ---------------------------------------------------------------------------

_SPEC_ALPHABET = st.sampled_from(list("0123456789.:,-+eElu ax=_"))
_numbers = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.sampled_from(["", "0", "1", "1e12", "1e-12", "1e308", "1e400", "-0", ".5", "5."]),
)
_middles = st.one_of(_numbers, st.integers(0, 10**7).map(lambda n: f"{n}l"))
_structured = st.one_of(
    st.builds(lambda a, b: f"{a}:{b}", _numbers, _numbers),
    st.builds(lambda a, m, b: f"{a}:{m}:{b}", _numbers, _middles, _numbers),
    st.builds(lambda a, m, b: f"{a}:u{m}:{b}", _numbers, st.integers(0, 10**7), _numbers),
    st.lists(_numbers, min_size=1, max_size=5).map(",".join),
)
_specs = st.one_of(st.text(_SPEC_ALPHABET, max_size=30), st.text(max_size=30), _structured)

PROPERTY_LIMIT = 2_000


def _check_outcome(text: str) -> None:
    try:
        param = parse_hyperparam(text, limit=PROPERTY_LIMIT)
    except HyperParamError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    assert 1 <= len(param.values) <= PROPERTY_LIMIT
    for value in param.values:
        assert isinstance(value, (int, float, str))
        if isinstance(value, float):
            assert math.isfinite(value)


@settings(max_examples=400, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["lr", "x", "n_layers"]), spec=_specs)
def test_any_spec_parses_within_the_limit_or_raises_hyperparam_error(name: str, spec: str) -> None:
    _check_outcome(f"{name}={spec}")


@settings(max_examples=200, deadline=1000)
@given(st.text(max_size=40))
def test_any_text_at_all(text: str) -> None:
    _check_outcome(text)


@settings(max_examples=200, deadline=None)
@given(
    start=st.integers(-1000, 1000),
    step=st.integers(1, 50),
    count=st.integers(2, 200),
)
def test_integer_steps_hit_the_end_exactly(start: int, step: int, count: int) -> None:
    end = start + step * (count - 1)
    assert values(f"n={start}:{step}:{end}") == list(range(start, end + 1, step))
    assert values(f"n={end}:{-step}:{start}") == list(range(end, start - 1, -step))


@settings(max_examples=200, deadline=None)
@given(
    start=st.decimals(min_value=-100, max_value=100, places=2),
    step=st.decimals(min_value="0.01", max_value=5, places=2),
    count=st.integers(2, 100),
)
def test_decimal_steps_print_like_decimals(start: object, step: object, count: int) -> None:
    from decimal import Decimal

    assert isinstance(start, Decimal) and isinstance(step, Decimal)
    end = start + step * (count - 1)
    if step.to_integral_value() == step and step > abs(end - start):
        return  # that middle field is a point count, covered elsewhere
    got = values(f"x={start}:{step}:{end}")
    assert len(got) == count
    assert got == [float(start + step * k) for k in range(count)]
