"""The grid grammar of `-hp/--hyperparam name=spec` and cartesian grid expansion.

Rules, tried in this order on ``spec`` (see docs/hyperparameters.md for the full story):

1. ``a,b,c``      those values; items that are not numbers are kept as strings.
2. ``a:b``        ``a, a+1, ..., b`` inclusive; an empty ``a`` means 0 (``:3`` is 0,1,2,3).
3. ``a:N:b``      N an integral number greater than ``|b-a|``: N evenly spaced points from a
                  to b inclusive; otherwise ``a:step:b``: a, a+step, ... up to b inclusive.
4. ``a:Nl:b``     also ``a:lN:b``: N points spaced logarithmically from a to b inclusive.
   ``a:uN:b``     also ``a:Nu:b``: N points spaced uniformly, whatever ``|b-a|`` is.
5. ``x``          just x (a number, or else a string).

Values are ``int`` when every number written in the spec is an integer literal and every
generated point is integral; otherwise ``float``. Generated floats are computed in decimal
arithmetic from the literals (``0.1 + 0.05*k`` is exactly 0.15, not 0.15000000000000002),
so they print the way a person would write them.

Every failure raises :class:`~studio.exceptions.HyperParamError` with a one-line message.
The size of a range is computed *before* any value is materialised, so a spec such as
``0:1e12:1`` fails fast instead of exhausting memory.
"""

from __future__ import annotations

import itertools
import keyword
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, localcontext

from studio.exceptions import HyperParamError

Value = int | float | str

#: Grids larger than this need ``force=True`` (the CLI's ``--force``).
DEFAULT_GRID_LIMIT = 100_000
#: No grid may exceed this, forced or not: each point becomes an experiment, and a bigger
#: list would take minutes and gigabytes just to build.
HARD_GRID_LIMIT = 1_000_000

GRID_HINT = (
    "valid specs look like lr=0.1, lr=0.1,0.2,0.5, opt=adam,sgd, n=0:5, lr=0:0.1:1 (step), "
    "lr=0:11:1 (11 points), lr=1e-5:5l:0.1 (5 log-spaced points), lr=0:u11:1"
)

_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_COUNT_RE = re.compile(r"(?:([lu])([0-9]+)|([0-9]+)([lu]))")
_MAX_SHOWN = 60


@dataclass(frozen=True)
class HyperParameter:
    """One ``-hp name=spec`` flag, expanded to its grid values.

    ``values`` is a non-empty tuple (immutable, like the dataclass); ``spec`` is the text after
    ``=`` as the user wrote it, kept for messages and for recording on the experiment.
    """

    name: str
    values: tuple[Value, ...]
    spec: str = ""

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class _Number:
    """A numeric literal: exact decimal value plus whether it was written as an integer."""

    exact: Decimal
    is_int: bool

    def value(self) -> int | float:
        return int(self.exact) if self.is_int else _to_float(self.exact)


def _shown(text: str) -> str:
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return repr(text)


def grid_error(text: str, problem: str, hint: str = GRID_HINT) -> HyperParamError:
    """A one-line error naming the offending text, the problem, and what valid input is."""
    return HyperParamError(f"bad hyperparameter {_shown(text)}: {problem}; {hint}")


def _to_float(exact: Decimal) -> float:
    # `+ 0.0` turns -0.0 (e.g. from -0.3 + 3*0.1) into 0.0
    return float(exact) + 0.0


def parse_number(token: str) -> _Number | None:
    """Parse a plain decimal literal (``3``, ``-0.5``, ``1e-5``); None if ``token`` is not one.

    Only ASCII decimal literals count: ``inf``, ``nan``, ``1_000`` and ``0x10`` are not numbers
    (in a comma list they stay strings). Literals outside the float range are rejected by the
    caller through :func:`require_number`, here they are None as well.
    """
    token = token.strip()
    if not _NUMBER_RE.fullmatch(token):
        return None
    as_float = float(token)
    if not math.isfinite(as_float):
        return None
    if _INT_RE.fullmatch(token):
        return _Number(Decimal(token), True)
    # Round-trip through the float so the exponent and digit count stay bounded.
    return _Number(Decimal(repr(as_float)), False)


def require_number(text: str, token: str, what: str, hint: str = GRID_HINT) -> _Number:
    number = parse_number(token)
    if number is None:
        if _NUMBER_RE.fullmatch(token.strip()):
            raise grid_error(text, f"{what} {_shown(token)} is out of the float range", hint)
        raise grid_error(text, f"{what} {_shown(token)} is not a number", hint)
    return number


def literal_value(text: str, token: str) -> Value:
    """A number if ``token`` is a numeric literal, else the stripped string itself."""
    token = token.strip()
    number = parse_number(token)
    if number is not None:
        return number.value()
    if _NUMBER_RE.fullmatch(token):
        raise grid_error(text, f"{_shown(token)} is out of the float range")
    return token


def split_assignment(text: str, hint: str = GRID_HINT) -> tuple[str, str]:
    """Split ``name=spec`` at the first ``=``; the name must be a Python identifier."""
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep:
        raise grid_error(text, "missing '=' between name and values", hint)
    if not name:
        raise grid_error(text, "missing name before '='", hint)
    if not name.isidentifier() or keyword.iskeyword(name):
        raise grid_error(
            text,
            f"name {_shown(name)} is not a Python identifier (it is substituted in the script)",
            hint,
        )
    if not spec:
        raise grid_error(text, f"no values after '{name}='", hint)
    return name, spec


def _size_text(size: int | Decimal) -> str:
    return f"{Decimal(size):.3E}" if size > 10**15 else str(int(size))


def _check_size(text: str, size: int | Decimal, limit: int, force: bool) -> None:
    if size > HARD_GRID_LIMIT:
        raise grid_error(
            text,
            f"{_size_text(size)} values is more than the hard limit of {HARD_GRID_LIMIT} (even with --force)",
            "use a coarser step or fewer points",
        )
    if size > limit and not force:
        raise grid_error(
            text,
            f"{_size_text(size)} values is more than the limit of {limit}",
            "use a coarser step or fewer points, or pass --force to run it anyway",
        )


def _comma_list(text: str, spec: str) -> list[Value]:
    values: list[Value] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise grid_error(text, "empty value in a comma list")
        if ":" in item and all(
            not part.strip() or parse_number(part) or _COUNT_RE.fullmatch(part.strip())
            for part in item.split(":")
        ):
            raise grid_error(
                text, f"range {_shown(item)} inside a comma list (give either a list or a range)"
            )
        values.append(literal_value(text, item))
    return values


def _range_ends(text: str, parts: Sequence[str]) -> tuple[_Number, _Number]:
    start_token, end_token = parts[0].strip(), parts[-1].strip()
    start = require_number(text, start_token, "start") if start_token else _Number(Decimal(0), True)
    if not end_token:
        raise grid_error(text, "missing end of range after the last ':'")
    return start, require_number(text, end_token, "end")


def _arithmetic(start: _Number, step: Decimal, count: int, all_int: bool) -> list[Value]:
    """``start + k*step`` for k < count, exactly in decimal, then converted once."""
    if all_int:
        first, delta = int(start.exact), int(step)
        return [first + k * delta for k in range(count)]
    return [_to_float(start.exact + k * step) for k in range(count)]


def _count_from_step(start: Decimal, end: Decimal, step: Decimal) -> Decimal:
    return ((end - start) / step).to_integral_value(rounding=ROUND_FLOOR) + 1


def _colon_range(text: str, spec: str, limit: int, force: bool) -> list[Value]:
    parts = spec.split(":")
    if len(parts) > 3:
        raise grid_error(
            text,
            "too many ':' for a grid range (the min:max[:len]:flags form is for --optimizer)",
        )
    start, end = _range_ends(text, parts)
    span = end.exact - start.exact
    if len(parts) == 2:
        if span < 0:
            raise grid_error(text, "empty range: end is smaller than start (a:b counts up by 1)")
        count = _count_from_step(start.exact, end.exact, Decimal(1))
        _check_size(text, count, limit, force)
        return _arithmetic(start, Decimal(1), int(count), start.is_int and end.is_int)

    middle = parts[1].strip()
    counted = _COUNT_RE.fullmatch(middle)
    if counted:
        kind = counted.group(1) or counted.group(4)
        digits = counted.group(2) or counted.group(3)
        # Decimal parses any number of digits quickly; int() would hit CPython's digit limit.
        points = Decimal(digits)
        if points == 0:
            raise grid_error(text, f"{middle!r} asks for 0 points (N must be at least 1)")
        if kind == "l":
            if start.exact <= 0 or end.exact <= 0:
                raise grid_error(
                    text,
                    "a log range needs both ends greater than 0",
                    "write e.g. lr=1e-5:5l:0.1 for 1e-05, 0.0001, 0.001, 0.01, 0.1",
                )
            _check_size(text, points, limit, force)
            return _logspace(start, end, int(points))
        _check_size(text, points, limit, force)
        return _linspace(start, end, int(points))

    if not middle:
        raise grid_error(text, "empty step or point count between ':'s")
    mid = require_number(text, middle, "step or point count")
    if mid.exact == mid.exact.to_integral_value() and mid.exact > abs(span):
        _check_size(text, mid.exact, limit, force)
        return _linspace(start, end, int(mid.exact))
    step = mid.exact
    if step == 0:
        raise grid_error(text, "step is 0 (it would never reach the end)")
    if span == 0:
        return [start.value()]
    if (span > 0) != (step > 0):
        direction = "up" if span > 0 else "down"
        raise grid_error(
            text,
            f"step {middle} goes the wrong way: from {parts[0] or 0} to {parts[2]} counts {direction}",
        )
    count = _count_from_step(start.exact, end.exact, step)
    _check_size(text, count, limit, force)
    return _arithmetic(start, step, int(count), start.is_int and mid.is_int and end.is_int)


def _linspace(start: _Number, end: _Number, points: int) -> list[Value]:
    if points == 1:
        return [start.value()]
    if start.is_int and end.is_int:
        first, int_span = int(start.exact), int(end.exact) - int(start.exact)
        if int_span % (points - 1) == 0:
            delta = int_span // (points - 1)
            return [first + k * delta for k in range(points)]
    step = (end.exact - start.exact) / (points - 1)
    values: list[Value] = [_to_float(start.exact + k * step) for k in range(points - 1)]
    values.append(_to_float(end.exact))
    return values


def _logspace(start: _Number, end: _Number, points: int) -> list[Value]:
    if points == 1:
        return [start.value()]
    # A constant ratio applied in 34-digit decimals: the error stays ~1e-27 even after a
    # million steps, far below a float's resolution, so 0.01:4l:10 gives exactly 0.1 and 1
    # rather than 0.09999999999999999.
    ratio = (end.exact / start.exact) ** (Decimal(1) / (points - 1))
    inner: list[float] = []
    current = start.exact
    for _ in range(points - 2):
        current *= ratio
        inner.append(_to_float(current))
    if start.is_int and end.is_int and all(v.is_integer() for v in inner):
        return [start.value(), *(int(v) for v in inner), end.value()]
    return [_to_float(start.exact), *inner, _to_float(end.exact)]


def parse_hyperparam(
    text: str, *, limit: int = DEFAULT_GRID_LIMIT, force: bool = False
) -> HyperParameter:
    """Parse one ``name=spec`` flag into a :class:`HyperParameter`.

    Raises :class:`HyperParamError` for malformed text, for a range that yields no values or
    more than ``limit`` values (unless ``force``), and for anything over
    :data:`HARD_GRID_LIMIT`. No other exception escapes for any ``str`` input.
    """
    name, spec = split_assignment(text)
    values: list[Value]
    if "," in spec:
        values = _comma_list(text, spec)
    elif ":" in spec:
        # A private context: 34 digits (beyond a float's 17) whatever the caller's context says.
        with localcontext(Context(prec=34, rounding=ROUND_HALF_EVEN)):
            values = _colon_range(text, spec, limit, force)
    else:
        values = [literal_value(text, spec)]
    _check_size(text, len(values), limit, force)
    return HyperParameter(name=name, values=tuple(values), spec=spec)


def parse_hyperparams(
    texts: Iterable[str], *, limit: int = DEFAULT_GRID_LIMIT, force: bool = False
) -> list[HyperParameter]:
    """Parse several flags; a name given twice is an error. Grid size is checked too."""
    params: list[HyperParameter] = []
    seen: set[str] = set()
    for text in texts:
        param = parse_hyperparam(text, limit=limit, force=force)
        if param.name in seen:
            raise grid_error(text, f"{param.name!r} is given more than once", "give each name once")
        seen.add(param.name)
        params.append(param)
    grid_size(params, limit=limit, force=force)
    return params


def grid_size(
    params: Sequence[HyperParameter], *, limit: int = DEFAULT_GRID_LIMIT, force: bool = False
) -> int:
    """Number of points of the cartesian product; raises if it is over the limit."""
    size = math.prod(len(p.values) for p in params)
    if size > HARD_GRID_LIMIT or (size > limit and not force):
        text = " ".join(f"{p.name}={p.spec}" for p in params)
        _check_size(text, size, limit, force)
    return size


def iter_grid(params: Sequence[HyperParameter]) -> Iterator[dict[str, Value]]:
    """Lazily yield every point of the grid; the last parameter varies fastest."""
    names = [p.name for p in params]
    for combo in itertools.product(*(p.values for p in params)):
        yield dict(zip(names, combo, strict=True))


def expand_grid(
    params: Sequence[HyperParameter], limit: int = DEFAULT_GRID_LIMIT, force: bool = False
) -> list[dict[str, Value]]:
    """The cartesian product as a list of ``{name: value}`` dicts, in :func:`iter_grid` order.

    The size is checked before anything is built. No parameters gives one empty point (a plain
    run). Duplicate names raise :class:`HyperParamError`.
    """
    names = [p.name for p in params]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise HyperParamError(
            f"hyperparameter {duplicates[0]!r} is given more than once; give each name once"
        )
    grid_size(params, limit=limit, force=force)
    return list(iter_grid(params))
