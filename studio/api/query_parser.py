"""A small, safe parser for experiment filter expressions.

    lr < 0.01 and status = finished
    metrics.val_loss <= 0.3 and optimizer = "adam" and status in (running, queued)
    project != scratch and params.layers >= 3

Grammar (keywords are case-insensitive)::

    filter     := condition ("and" condition)*
    condition  := name op value | "status" "in" "(" value ("," value)* ")"
    op         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | "~" | "like"
    name       := identifier ("." identifier)*   (identifier: letters, digits, _, -, /)
    value      := number | "quoted" | 'quoted' | bare word | true | false | null

Names: a known column (`key`, `project`, `owner`, `script`, `queue`, `metric`, `metric_value`,
`time_added`, `name`, `note`, `tags` (`tags = baseline`: has that tag; `tag` works too), ...)
or `params.<name>` / `metrics.<name>` (a metric's last value); any other bare
name is a parameter, so `lr` means `params.lr`. `status` conditions become
`ExperimentQuery.status`; everything else becomes `ExperimentQuery.where` triples with the
store's operators (`studio.meta.sql.query`). `~` means "contains" (`like %text%`); `like`
takes SQL wildcards (`%`, `_`). Numbers compare with numeric columns and `metrics.*` only;
`= null` / `!= null` test for absence.

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

#: Experiment columns that hold numbers (`duration` is derived by the store).
NUMERIC_COLUMNS = frozenset(
    {
        "metric_value", "returncode", "attempts", "max_duration", "lifetime", "time_added",
        "time_started", "time_last_checkpoint", "time_finished", "heartbeat", "lease_expires",
        "duration",
    }
)  # fmt: skip
BOOL_COLUMNS = frozenset({"module", "stop_requested"})
#: Experiment columns a filter (or a sort) may name directly (as `studio.meta.sql.query`).
COLUMNS = NUMERIC_COLUMNS | BOOL_COLUMNS | frozenset(
    {"key", "project", "owner", "script", "status", "status_reason", "queue", "python_version", "metric", "worker",
     "name", "note", "tags"}
)
#: What `where` triples may carry (the metadata store's operators).
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "like")
_OP_ALIASES = {"==": "=", "<>": "!="}
_OP_LIST = "=, !=, <, <=, >, >=, ~, like, in"
_KEYWORDS = ("and", "or", "in", "like")
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
        if tok.text.lower() in _KEYWORDS:
            raise self.error(f"expected a name, found the keyword {tok.text!r}", tok)
        if not _NAME.match(tok.text):
            raise self.error(f"{tok.text!r} is not a valid name (letters, digits, _, - and dots)", tok)
        name = resolve_name(tok.text)
        op_tok = self.take(f"an operator ({_OP_LIST})")
        word = op_tok.text.lower() if op_tok.kind == "word" else ""
        if word == "in":
            if name != "status":
                raise self.error("`in (...)` works for status only; use = for other names", op_tok)
            values = self.value_list()
            return name, "in", values, self.tokens[self.i - 2] if len(values) == 1 else op_tok
        if op_tok.kind != "op" and word != "like":
            raise self.error(f"expected an operator ({_OP_LIST}) after {tok.text!r}, found {op_tok.text!r}", op_tok)
        op = word or _OP_ALIASES.get(op_tok.text, op_tok.text)
        value = self.value()
        value_tok = self.tokens[self.i - 1]
        return (name, *self.typed(name, op, value, value_tok), value_tok)

    def typed(self, name: str, op: str, value: Any, tok: _Token) -> tuple[str, Any]:
        """(operator, value) as the metadata store wants them, or an error naming `tok`."""
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if op in ("~", "like"):
            if name in NUMERIC_COLUMNS or name in BOOL_COLUMNS or name.startswith("metrics."):
                raise self.error(f"{op} compares text, and {name} is a number", tok)
            text = tok.text if not tok.quoted else value
            # `~` is "contains"; `like` passes its own % and _ wildcards through.
            return "like", f"%{text}%" if op == "~" else text
        if op in ("<", "<=", ">", ">=") and not numeric:
            raise self.error(f"{op} needs a number, found {tok.text!r}", tok)
        if value is None or name == "status":
            return op, value
        if name in NUMERIC_COLUMNS or name.startswith("metrics."):
            if not numeric:
                raise self.error(f"{name} is a number; found {tok.text!r}", tok)
        elif name in BOOL_COLUMNS:
            if not isinstance(value, bool):
                raise self.error(f"{name} is true or false; found {tok.text!r}", tok)
        elif name in COLUMNS and not isinstance(value, str):
            value = tok.text  # a text column: `project = 2024` means the text "2024"
        return op, value

    def value(self) -> Any:
        tok = self.take("a value")
        if tok.kind != "value" and tok.kind != "word":
            raise self.error(f"expected a value, found {tok.text!r}", tok)
        if tok.quoted:
            return tok.text
        low = tok.text.lower()
        if low in _KEYWORDS:
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
                if not -(2**63) <= int(tok.text) < 2**63:
                    raise self.error(f"{tok.text} is beyond 64-bit integers; write it as a float (e.g. 1e19)", tok)
                return int(tok.text)
            if number != number or number in (float("inf"), float("-inf")):
                raise self.error(f"{tok.text} is too large for a number; use a smaller one", tok)
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


def resolve_name(name: str) -> str:
    """`lr` -> `params.lr`; columns, `params.x` and `metrics.x` stay as they are."""
    low = name.lower()
    if low == "tag":
        return "tags"
    if low in COLUMNS:
        return low
    head, _, rest = name.partition(".")
    if head.lower() in ("params", "param") and rest:
        return f"params.{rest}"
    if head.lower() in ("metrics", "metric") and rest:
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
    for i, ch in enumerate(text):
        if ord(ch) < 32 and ch not in "\t\n\r":
            raise FilterSyntaxError(f"control character {ch!r} is not allowed", i + 1, text)
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


#: Names only a sort may use: `best` orders by `metric_value` in each run's goal direction
#: (ascending `best` = best first for `:min` and `:max` metrics alike).
SORT_ONLY = frozenset({"best"})


def parse_sort(text: str | None, default: str = "-time_added") -> str:
    """Validate a sort key: a column, `best`, `params.x` or `metrics.x` (bare names are
    params), optionally prefixed with `-` for descending."""
    if text is None or not text.strip():
        return default
    raw = text.strip()
    desc = raw.startswith("-")
    name = raw[1:] if desc else raw
    if not _NAME.match(name):
        raise UsageError(f"cannot sort by {raw!r}: use a column, best, params.<name> or metrics.<name>")
    if name.lower() in SORT_ONLY:
        return ("-" if desc else "") + name.lower()
    return ("-" if desc else "") + resolve_name(name)


__all__ = ["COLUMNS", "OPERATORS", "SORT_ONLY", "FilterSyntaxError", "ParsedFilter", "parse_filter", "parse_sort", "resolve_name"]
