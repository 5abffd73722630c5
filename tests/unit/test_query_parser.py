"""The filter expression parser behind the dashboard's filter box and `?filter=`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.api.query_parser import (
    COLUMNS,
    OPERATORS,
    FilterSyntaxError,
    ParsedFilter,
    parse_filter,
    parse_sort,
    resolve_name,
)
from studio.entities import ExperimentQuery, Status
from studio.exceptions import UsageError


def test_issue_example() -> None:
    f = parse_filter("lr < 0.01 and status = finished")
    assert f.where == (("params.lr", "<", 0.01),)
    assert f.status == frozenset({Status.FINISHED})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lr = 0.1", ("params.lr", "=", 0.1)),
        ("lr == 1e-3", ("params.lr", "=", 0.001)),
        ("layers >= 3", ("params.layers", ">=", 3)),
        ("layers <> 3", ("params.layers", "!=", 3)),
        ("n > -5", ("params.n", ">", -5)),
        ("x <= .5", ("params.x", "<=", 0.5)),
        ("metrics.val_loss < 0.3", ("metrics.val_loss", "<", 0.3)),
        ("params.lr != 2", ("params.lr", "!=", 2)),
        ("optimizer = adam", ("params.optimizer", "=", "adam")),
        ("optimizer = 'adam w'", ("params.optimizer", "=", "adam w")),
        ('optimizer = "a \\"q\\""', ("params.optimizer", "=", 'a "q"')),
        ("optimizer = 'and'", ("params.optimizer", "=", "and")),
        ("model = resnet-50", ("params.model", "=", "resnet-50")),
        ("flag = true", ("params.flag", "=", True)),
        ("flag = False", ("params.flag", "=", False)),
        ("params.note = null", ("params.note", "=", None)),
            ("note ~ plateau", ("note", "like", "%plateau%")),
            ("tag = good", ("tags", "=", "good")),
        ("version = '3'", ("params.version", "=", "3")),
        ("project = mnist", ("project", "=", "mnist")),
        ("Owner = alice", ("owner", "=", "alice")),
        ("metric_value < 1", ("metric_value", "<", 1)),
        ("script ~ train", ("script", "like", "%train%")),
        ("script ~ 12", ("script", "like", "%12%")),
        ("script like 'tr%n_'", ("script", "like", "tr%n_")),
        ("opt ~ 'a b'", ("params.opt", "like", "%a b%")),
        ("project = 2024", ("project", "=", "2024")),
        ("project = 1e3", ("project", "=", "1e3")),
        ("duration > 60", ("duration", ">", 60)),
        ("metrics.loss != null", ("metrics.loss", "!=", None)),
        ("module = true", ("module", "=", True)),
        ("sys/cpu = 1", ("params.sys/cpu", "=", 1)),
    ],
)
def test_single_conditions(text: str, expected: tuple[str, str, object]) -> None:
    assert parse_filter(text).where == (expected,)
    assert parse_filter(text).status is None


def test_many_conditions_and_case_insensitive_keywords() -> None:
    f = parse_filter("lr<0.01 AND layers>=2 And metrics.acc > 0.9")
    assert f.where == (("params.lr", "<", 0.01), ("params.layers", ">=", 2), ("metrics.acc", ">", 0.9))


def test_status_forms() -> None:
    assert parse_filter("status = RUNNING").status == {Status.RUNNING}
    assert parse_filter("status in (running, queued)").status == {Status.RUNNING, Status.QUEUED}
    assert parse_filter("status != finished").status == set(Status) - {Status.FINISHED}
    both = parse_filter("status != finished and status in (finished, failed)")
    assert both.status == {Status.FAILED}


def test_empty_input_means_no_conditions() -> None:
    assert parse_filter(None) == ParsedFilter()
    assert parse_filter("   ") == ParsedFilter()


def test_apply_to_query() -> None:
    q = ExperimentQuery(project="p", status=(Status.FINISHED, Status.FAILED), where=(("a", "=", 1),))
    out = parse_filter("lr < 1 and status in (failed, running)").apply(q)
    assert out.status == (Status.FAILED,)
    assert out.where == (("a", "=", 1), ("params.lr", "<", 1))
    assert out.project == "p"


def test_apply_contradiction_matches_nothing() -> None:
    out = parse_filter("status = running and status = finished").apply(ExperimentQuery())
    assert out.status == ()
    assert ("key", "=", "") in out.where


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("lr <", 5, "ended"),
        ("lr 3", 4, "operator"),
        ("lr < abc", 6, "needs a number"),
        ("lr < true", 6, "needs a number"),
        ("a = 1 or b = 2", 7, "`or` is not supported"),
        ("a = 1 b = 2", 7, "expected `and`"),
        ('x = "open', 5, "unterminated"),
        ("x = 'open", 5, "unterminated"),
        ("(a = 1)", 1, "expected a name"),
        ("and = 1", 1, "keyword"),
        ("a = and", 5, "keyword"),
        ("status = bogus", 10, "unknown status"),
        ("status < 3", 10, "status supports"),
        ("status in 1", 11, "expected `(`"),
        ("status in (running queued)", 20, "`,` or `)`"),
        ("status in (running,", 20, "ended"),
        ("a in (1, 2)", 3, "status only"),
        ("metrics.loss = low", 16, "is a number"),
        ("time_added = yesterday", 14, "is a number"),
        ("module = 1", 10, "true or false"),
        ("metric_value ~ 3", 16, "compares text"),
        ("a = 1\x00", 6, "control character"),
        ("'lr' = 1", 1, "expected a name"),
        ("1abc = 2", 1, "not a valid name"),
        ("a = 1 and", 10, "ended"),
        ("a = = 1", 5, "expected a value"),
    ],
)
def test_malformed_input_names_the_position(text: str, position: int, words: str) -> None:
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    assert info.value.position == position
    assert words in str(info.value)
    assert f"position {position}" in str(info.value)
    assert isinstance(info.value, UsageError)


def test_limits() -> None:
    with pytest.raises(FilterSyntaxError, match="too long"):
        parse_filter("a = 1 and " * 500 + "b = 2")
    with pytest.raises(FilterSyntaxError, match="too many"):
        parse_filter(" and ".join(f"a{i} = 1" for i in range(60)))


@given(st.text(max_size=80))
@settings(max_examples=400, deadline=None)
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        f = parse_filter(text)
    except FilterSyntaxError as exc:
        assert 1 <= exc.position <= len(text) + 1
        return
    for name, op, _ in f.where:
        assert op in ("=", "!=", "<", "<=", ">", ">=", "like")
        assert name.startswith(("params.", "metrics.")) or name in COLUMNS


def test_columns_agree_with_the_sql_store() -> None:
    from studio.meta.sql.query import COLUMN_NAMES
    from studio.meta.sql.query import OPERATORS as STORE_OPERATORS

    assert COLUMNS == set(COLUMN_NAMES) | {"duration", "tags"}
    assert set(OPERATORS) <= set(STORE_OPERATORS)


_names = st.sampled_from(["lr", "params.n", "project", "owner", "batch_size"])
_values = st.one_of(
    st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(alphabet="abcxyz _-", min_size=1, max_size=8),
)


@given(st.lists(st.tuples(_names, st.sampled_from(["=", "!=", "<", ">="]), _values), min_size=1, max_size=6))
@settings(max_examples=200, deadline=None)
def test_round_trip(conds: list[tuple[str, str, object]]) -> None:
    parts = []
    expected = []
    for name, op, value in conds:
        if op in ("<", ">=") and isinstance(value, str):
            op = "="
        lit = repr(value) if not isinstance(value, str) else '"' + value + '"'
        parts.append(f"{name} {op} {lit}")
        if name in ("project", "owner") and not isinstance(value, str):
            value = lit  # text columns compare with the text as written
        expected.append((resolve_name(name), op, value))
    assert list(parse_filter(" and ".join(parts)).where) == expected


def test_parse_sort() -> None:
    assert parse_sort(None) == "-time_added"
    assert parse_sort("lr") == "params.lr"
    assert parse_sort("-metrics.loss") == "-metrics.loss"
    assert parse_sort("-metric_value") == "-metric_value"
    assert parse_sort("-duration") == "-duration"
    assert parse_sort("best") == "best" and parse_sort("-Best") == "-best"
    with pytest.raises(UsageError):
        parse_sort("drop table;")
