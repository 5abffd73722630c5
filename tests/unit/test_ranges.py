"""The optimizer range grammar `name=min:max[:len]:flags`."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.exceptions import HyperParamError
from studio.search.ranges import MAX_ARRAY_LENGTH, RangeParameter, parse_range, parse_ranges


def test_scalar_range() -> None:
    param = parse_range("lr=0:1")
    assert param == RangeParameter(name="lr", low=0.0, high=1.0, spec="0:1", integer=True)
    assert parse_range("lr=0.0:1").integer is False
    assert not param.is_array and param.size == 1
    assert not (param.unbounded or param.random_init or param.log)


def test_flags_in_any_order() -> None:
    a = parse_range("lr=1e-5:0.1:lru")
    b = parse_range("lr=1e-5:0.1:url")
    assert (a.log, a.random_init, a.unbounded) == (True, True, True)
    assert (a.low, a.high, a.length) == (b.low, b.high, b.length) == (1e-05, 0.1, None)


def test_manual_examples() -> None:
    # `5:5:10:alu` from the manual: an array of 10, log scale, unbounded, min == max
    param = parse_range("lr=5:5:10:alu")
    assert (param.low, param.high, param.length) == (5.0, 5.0, 10)
    assert param.is_array and param.size == 10 and param.log and param.unbounded
    assert not param.random_init
    # `0:1:10:urla` from the manual asks for a log scale from 0, which has no logarithm
    with pytest.raises(HyperParamError, match="greater than 0"):
        parse_range("lr=0:1:10:urla")
    assert parse_range("lr=0.001:1:10:urla").size == 10
    # `0:5:1` from the manual: min:max:len, and a length of 1 without 'a' is a scalar
    assert parse_range("lr=0:5:1") == RangeParameter(name="lr", low=0, high=5, spec="0:5:1", integer=True)
    assert parse_range("lr=0.5:5:1:l").log and parse_range("lr=0.5:5:1:l").length is None
    with pytest.raises(HyperParamError, match="without the 'a' flag.*0:5:3:a"):
        parse_range("lr=0:5:3")


def test_integer_bounds_give_integers() -> None:
    depth = parse_range("depth=2:8")
    assert depth.integer and depth.cast(7.40321) == 7 and isinstance(depth.cast(2.0), int)
    assert parse_range("depth=2:8:r").initial_values() != [] and all(
        isinstance(v, int) for v in parse_range("depth=2:8:r").initial_values())
    assert parse_range("lr=0.1:1").cast(0.5) == 0.5


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("lr=", "no values"),
        ("lr", "missing '='"),
        ("lr=0", "at least min:max"),
        ("lr=0:1:2:a:u", "too many ':'"),
        ("lr=a:b", "min 'a' is not a number"),
        ("lr=0:b", "max 'b' is not a number"),
        ("lr=:1", "min and max are both required"),
        ("lr=1:0", "larger than max"),
        ("lr=0:1:", "empty flags"),
        ("lr=0:1:x", "unknown flag 'x'"),
        ("lr=0:1:uu", "flag 'u' is given twice"),
        ("lr=0:1:a", "needs an array length"),
        ("lr=0:1:3:u", "array length 3 given without the 'a' flag"),
        ("lr=0:1:0:a", "at least 1"),
        ("lr=0:1:-2:a", "not a positive integer"),
        ("lr=0:1:2.5:a", "not a positive integer"),
        ("lr=0:1:" + "9" * 5000 + ":a", f"more than {MAX_ARRAY_LENGTH}"),
        ("lr=0:1:l", "greater than 0"),
        ("lr=-1:1:l", "greater than 0"),
        ("lr=0:1e400", "out of the float range"),
    ],
)
def test_bad_ranges(text: str, fragment: str) -> None:
    with pytest.raises(HyperParamError) as info:
        parse_range(text)
    message = str(info.value)
    assert fragment in message
    assert "optimizer ranges look like" in message or "valid specs" in message
    assert "\n" not in message


def test_initial_values() -> None:
    assert parse_range("x=0:10").initial_values() == [5.0]
    assert parse_range("x=1e-4:1:l").initial_values() == [pytest.approx(0.01)]
    assert parse_range("x=0:2:3:a").initial_values() == [1.0, 1.0, 1.0]
    drawn = parse_range("x=0:10:4:ar").initial_values(random.Random(0))
    assert len(drawn) == 4 and all(0 <= v <= 10 for v in drawn)
    assert drawn == parse_range("x=0:10:4:ar").initial_values(random.Random(0))
    logged = parse_range("x=1e-6:1:rl").initial_values(random.Random(1))
    assert 1e-6 <= logged[0] <= 1


def test_clip() -> None:
    bounded = parse_range("x=0:1")
    assert (bounded.clip(-1), bounded.clip(0.5), bounded.clip(2)) == (0.0, 0.5, 1.0)
    assert parse_range("x=0:1:u").clip(2) == 2


def test_duplicate_names() -> None:
    assert [p.name for p in parse_ranges(["a=0:1", "b=0:1"])] == ["a", "b"]
    with pytest.raises(HyperParamError, match="more than once"):
        parse_ranges(["a=0:1", "a=0:2"])


_fields = st.one_of(
    st.sampled_from(
        ["", "0", "1", "-1", "1e-5", "1e400", "5", "10", "a", "u", "r", "l", "ualr", "aa"]
    ),
    st.text(st.sampled_from(list("0123456789.-eualrx")), max_size=8),
)


@settings(max_examples=300, deadline=1000)
@given(st.one_of(st.lists(_fields, min_size=1, max_size=5).map(":".join), st.text(max_size=30)))
def test_any_spec_parses_or_raises_hyperparam_error(spec: str) -> None:
    try:
        param = parse_range(f"x={spec}")
    except HyperParamError as exc:
        assert "\n" not in str(exc)
        return
    assert math.isfinite(param.low) and math.isfinite(param.high) and param.low <= param.high
    assert param.size >= 1
    if param.log:
        assert param.low > 0
