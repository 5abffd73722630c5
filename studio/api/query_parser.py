"""A small, safe parser for experiment filter expressions.

    lr < 0.01 and status = finished
    metrics.val_loss <= 0.3 and optimizer = "adam" and status in (running, queued)
    project != scratch and params.layers >= 3

Grammar (keywords are case-insensitive)::

    filter     := condition ("and" condition)*
    condition  := name op value | name "in" "(" value ("," value)* ")"
    op         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | "~"
    name       := identifier ("." identifier)*   (identifier: letters, digits, _, -, /)
    value      := number | "quoted" | 'quoted' | bare word | true | false | null

Names: a known column (`key`, `project`, `owner`, `script`, `queue`, `metric`, `metric_value`,
`time_added`, ...) or `params.<name>` / `metrics.<name>` (a metric's last value); any other bare
name is a parameter, so `lr` means `params.lr`. `status` conditions become
`ExperimentQuery.status`; everything else becomes `ExperimentQuery.where` triples.
`~` means "contains" (case-insensitive substring) and applies to text.

Nothing is evaluated: the result is plain data that the metadata store turns into bound SQL
parameters. Malformed input raises `FilterSyntaxError` naming the 1-based position.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from studio.entities import ExperimentQuery, Status
from studio.exceptions import UsageError

#: Experiment columns a filter (or a sort) may name directly.
COLUMNS = frozenset(
    {
        "key", "project", "owner", "script", "status", "queue", "metric", "metric_value",
        "returncode", "attempts", "worker", "time_added", "time_started", "time_finished",
        "time_last_checkpoint", "heartbeat", "python_version",
    }
)  # fmt: skip
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "~")
_OP_ALIASES = {"==": "=", "<>": "!="}
_MAX_LENGTH = 4000
_MAX_CONDITIONS = 50

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<op><=|>=|==|!=|<>|<|>|=|~)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<word>[^\s()<>=!~,"']+)
    """,
    re.VERBOSE,
)
_NAME = re.compile(r"^[A-Za-z_][\w\-/]*(\.[\w\-/]+)*$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_ESCAPE = re.compile(r"\\(.)")


class FilterSyntaxError(UsageError):
    """A malformed filter; `position` is the 1-based character where the problem starts."""

    def __init__(self, message: str, position: int, text: str) -> None:
        self.position = position
        self.text = text
        self.reason = message
        super().__init__(f"filter: {message} at position {position}")


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int  # 0-based offset into the input
    quoted: bool = False


@dataclass(frozen=True)
class ParsedFilter:
    """What a filter asks for. `status` is None when no status condition was given."""

    where: tuple[tuple[str, str, Any], ...] = ()
    status: frozenset[Status] | None = None

    def apply(self, query: ExperimentQuery) -> ExperimentQuery:
        """`query` narrowed by this filter (conditions combine with AND)."""
        status = query.status
        where = query.where + self.where
        if self.status is not None:
            allowed = self.status if not status else self.status & frozenset(status)
            status = tuple(s for s in Status if s in allowed)
            if not status:
                # An empty status tuple means "any"; no experiment has an empty key, so this
                # condition keeps "matches nothing" meaning nothing.
                where += (("key", "=", ""),)
        return dataclasses.replace(query, where=where, status=status)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # an unterminated quote: the only thing the pattern cannot consume
            raise FilterSyntaxError(f"unterminated string starting with {text[pos]}", pos + 1, text)
        kind = m.lastgroup or ""
        if kind == "string":
            raw = m.group()
            tokens.append(_Token("value", _ESCAPE.sub(r"\1", raw[1:-1]), pos, quoted=True))
        elif kind != "ws":
            tokens.append(_Token(kind, m.group(), pos))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def error(self, message: str, token: _Token | None = None) -> FilterSyntaxError:
        pos = token.pos if token is not None else len(self.text)
        return FilterSyntaxError(message, pos + 1, self.text)

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, what: str) -> _Token:
        tok = self.peek()
        if tok is None:
            raise self.error(f"expected {what} but the filter ended")
        self.i += 1
        return tok

    def parse(self) -> list[tuple[str, str, Any, _Token]]:
        """(name, op, value, token to blame for a bad value) per condition."""
        conditions = [self.condition()]
        while (tok := self.peek()) is not None:
            word = tok.text.lower() if tok.kind == "word" else ""
            if word == "or":
                raise self.error("`or` is not supported: conditions combine with `and`", tok)
            if word != "and":
                raise self.error(f"expected `and` before {tok.text!r}", tok)
            self.i += 1
            conditions.append(self.condition())
            if len(conditions) > _MAX_CONDITIONS:
                raise self.error(f"too many conditions (at most {_MAX_CONDITIONS})", tok)
        return conditions

    def condition(self) -> tuple[str, str, Any, _Token]:
        tok = self.take("a name like `lr`, `metrics.loss` or `status`")
        if tok.kind != "word" or tok.quoted:
            raise self.error(f"expected a name like `lr` or `metrics.loss`, found {tok.text!r}", tok)
        if tok.text.lower() in ("and", "or", "in"):
            raise self.error(f"expected a name, found the keyword {tok.text!r}", tok)
        if not _NAME.match(tok.text):
            raise self.error(f"{tok.text!r} is not a valid name (letters, digits, _, - and dots)", tok)
        name = resolve_name(tok.text, self.error, tok)
        op_tok = self.take("an operator (=, !=, <, <=, >, >=, ~, in)")
        if op_tok.kind == "word" and op_tok.text.lower() == "in":
            values = self.value_list()
            return name, "in", values, self.tokens[self.i - 2] if len(values) == 1 else op_tok
        if op_tok.kind != "op":
            raise self.error(
                f"expected an operator (=, !=, <, <=, >, >=, ~, in) after {tok.text!r}, found {op_tok.text!r}",
                op_tok,
            )
        op = _OP_ALIASES.get(op_tok.text, op_tok.text)
        value = self.value()
        value_tok = self.tokens[self.i - 1]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if op in ("<", "<=", ">", ">=") and not numeric:
            raise self.error(f"{op} needs a number, found {value_tok.text!r}", value_tok)
        if op == "~":
            value = value_tok.text  # "contains" always compares text
        return name, op, value, value_tok

    def value(self) -> Any:
        tok = self.take("a value")
        if tok.kind != "value" and tok.kind != "word":
            raise self.error(f"expected a value, found {tok.text!r}", tok)
        if tok.quoted:
            return tok.text
        low = tok.text.lower()
        if low in ("and", "or", "in"):
            raise self.error(f"expected a value, found the keyword {tok.text!r}; quote it to mean the word", tok)
        if low == "true":
            return True
        if low == "false":
            return False
        if low in ("null", "none"):
            return None
        if _NUMBER.match(tok.text):
            number = float(tok.text)
            if number.is_integer() and re.fullmatch(r"[+-]?\d+", tok.text):
                return int(tok.text)
            return number
        return tok.text

    def value_list(self) -> tuple[Any, ...]:
        tok = self.take("`(`")
        if tok.kind != "lparen":
            raise self.error(f"expected `(` after `in`, found {tok.text!r}", tok)
        values = [self.value()]
        while True:
            tok = self.take("`,` or `)`")
            if tok.kind == "rparen":
                return tuple(values)
            if tok.kind != "comma":
                raise self.error(f"expected `,` or `)` in the list, found {tok.text!r}", tok)
            values.append(self.value())


def resolve_name(name: str, error: Any = None, tok: Any = None) -> str:
    """`lr` -> `params.lr`; columns, `params.x` and `metrics.x` stay as they are."""
    low = name.lower()
    if low in COLUMNS:
        return low
    head, _, rest = name.partition(".")
    if head.lower() in ("params", "param", "p") and rest:
        return f"params.{rest}"
    if head.lower() in ("metrics", "metric", "m") and rest:
        return f"metrics.{rest}"
    return f"params.{name}"


def _status_set(op: str, value: Any, parser: _Parser, tok: _Token) -> frozenset[Status]:
    if op not in ("=", "!=", "in"):
        raise parser.error(f"status supports =, != and in, not {op}", tok)
    values = value if isinstance(value, tuple) else (value,)
    chosen: set[Status] = set()
    for v in values:
        try:
            chosen.add(Status(str(v).lower()))
        except ValueError:
            names = ", ".join(s.value for s in Status)
            raise parser.error(f"unknown status {v!r}; statuses are {names}", tok) from None
    return frozenset(Status) - chosen if op == "!=" else frozenset(chosen)


def parse_filter(text: str | None) -> ParsedFilter:
    """Parse a filter expression. Empty or blank input means no conditions."""
    if text is None or not text.strip():
        return ParsedFilter()
    if len(text) > _MAX_LENGTH:
        raise FilterSyntaxError(f"filter is too long (at most {_MAX_LENGTH} characters)", _MAX_LENGTH + 1, text)
    parser = _Parser(text)
    where: list[tuple[str, str, Any]] = []
    status: frozenset[Status] | None = None
    for name, op, value, tok in parser.parse():
        if name == "status":
            chosen = _status_set(op, value, parser, tok)
            status = chosen if status is None else status & chosen
        else:
            where.append((name, op, value))
    return ParsedFilter(where=tuple(where), status=status)


def parse_sort(text: str | None, default: str = "-time_added") -> str:
    """Validate a sort key: a column, `params.x` or `metrics.x` (bare names are params),
    optionally prefixed with `-` for descending."""
    if text is None or not text.strip():
        return default
    raw = text.strip()
    desc = raw.startswith("-")
    name = raw[1:] if desc else raw
    if name == "duration":
        name = "time_started"  # duration is derived; the closest sortable column
    if not _NAME.match(name):
        raise UsageError(f"cannot sort by {raw!r}: use a column, params.<name> or metrics.<name>")
    return ("-" if desc else "") + resolve_name(name)


__all__ = ["COLUMNS", "OPERATORS", "FilterSyntaxError", "ParsedFilter", "parse_filter", "parse_sort", "resolve_name"]
