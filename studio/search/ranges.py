"""The range grammar for plugin optimizers: ``-hp name=min:max[:len]:flags`` with ``--optimizer``.

Where the grid grammar (:mod:`studio.search.grammar`) lists values, an optimizer needs a search
box. The spec has two to four ``:``-separated fields:

``min:max``              a scalar in [min, max]; integers when both ends are written as
                         integers (``depth=2:8`` proposes 2, 3, ..., 8, never 7.40321)
``min:max:flags``        the same with flags
``min:max:len:flags``    a vector of ``len`` values; ``flags`` must contain ``a``
``min:max:1``            the manual's ``lr=0:5:1``: a length of 1 without ``a`` is a scalar

Flags are letters, each at most once, in any order:

``u``  unbounded: the optimizer may leave [min, max] (default: clipped to it)
``r``  random start: the first guess is drawn from the range (default: its middle)
``l``  log scale: search log(value); both ends must be greater than 0
``a``  array: the value is a vector of ``len`` floats, handed to the script as an artifact
       to ``np.load`` (``len`` is required with ``a`` and only allowed with it)

``min <= max`` is required (``5:5:10:alu`` from the manual is a valid, if degenerate, range).
Every failure raises :class:`~studio.exceptions.HyperParamError` with a one-line message.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from studio.search.grammar import grid_error, require_number, split_assignment

RANGE_HINT = (
    "optimizer ranges look like lr=0:1, lr=1e-5:0.1:l (log), lr=0:1:ur (unbounded, random "
    "start), w=0:1:10:a (array of 10); flags are u, r, l, a"
)
RANGE_FLAGS = "ualr"
#: Longest array a range may describe.
MAX_ARRAY_LENGTH = 1_000_000


@dataclass(frozen=True)
class RangeParameter:
    """One optimizer dimension (or a block of ``length`` dimensions when it is an array).

    ``low``/``high`` are the range as written (not log-transformed: an optimizer working in
    log space takes ``math.log`` itself when ``log`` is set).
    """

    name: str
    low: float
    high: float
    length: int | None = None
    unbounded: bool = False
    random_init: bool = False
    log: bool = False
    spec: str = ""
    integer: bool = False  # both ends written as integers (`depth=2:8`): values are integers

    def cast(self, value: float) -> int | float:
        """A proposed value as the script receives it: rounded for an integer range."""
        return int(round(value)) if self.integer else float(value)

    @property
    def is_array(self) -> bool:
        return self.length is not None

    @property
    def size(self) -> int:
        """How many scalar dimensions this parameter contributes."""
        return self.length if self.length is not None else 1

    def initial_values(self, rng: random.Random | None = None) -> list[float]:
        """Starting point, ``size`` values long.

        The middle of the range (the geometric middle for ``log``), or with ``random_init``
        a uniform draw from it (log-uniform for ``log``) using ``rng``, which makes the start
        reproducible when the caller seeds it.
        """
        if not self.random_init:
            return [self.cast(self._middle())] * self.size
        rng = rng or random.Random()
        if self.log:
            low, high = math.log(self.low), math.log(self.high)
            return [self.cast(math.exp(rng.uniform(low, high))) for _ in range(self.size)]
        return [self.cast(rng.uniform(self.low, self.high)) for _ in range(self.size)]

    def clip(self, value: float) -> float:
        """``value`` forced into [low, high], unless the range is unbounded."""
        if self.unbounded:
            return value
        return min(max(value, self.low), self.high)

    def _middle(self) -> float:
        if self.log:
            return math.sqrt(self.low) * math.sqrt(self.high)
        return self.low / 2 + self.high / 2


def _parse_flags(text: str, flags: str) -> str:
    if not flags:
        raise grid_error(text, "empty flags after the last ':'", RANGE_HINT)
    for letter in flags:
        if letter not in RANGE_FLAGS:
            raise grid_error(text, f"unknown flag {letter!r}", RANGE_HINT)
        if flags.count(letter) > 1:
            raise grid_error(text, f"flag {letter!r} is given twice", RANGE_HINT)
    return flags


def _parse_length(text: str, token: str) -> int:
    token = token.strip()
    if not token.isascii() or not token.isdigit():
        raise grid_error(text, f"array length {token!r} is not a positive integer", RANGE_HINT)
    # Compare the digit count first: int() of a huge digit string is slow or refused.
    if len(token.lstrip("0")) > len(str(MAX_ARRAY_LENGTH)) or int(token) > MAX_ARRAY_LENGTH:
        raise grid_error(text, f"array length is more than {MAX_ARRAY_LENGTH}", RANGE_HINT)
    length = int(token)
    if length == 0:
        raise grid_error(text, "array length must be at least 1", RANGE_HINT)
    return length


def parse_range(text: str) -> RangeParameter:
    """Parse one ``name=min:max[:len]:flags`` flag into a :class:`RangeParameter`."""
    name, spec = split_assignment(text, RANGE_HINT)
    fields = [field.strip() for field in spec.split(":")]
    if len(fields) < 2:
        raise grid_error(text, "an optimizer range needs at least min:max", RANGE_HINT)
    if len(fields) > 4:
        raise grid_error(text, "too many ':' (at most min:max:len:flags)", RANGE_HINT)

    flags = ""
    length_token: str | None = None
    if len(fields) == 3:
        if fields[2] and (fields[2][0].isdigit() or fields[2][0] in "+-."):
            length_token = fields[2]  # the manual's `lr=0:5:1`: min:max:len without flags
        else:
            flags = _parse_flags(text, fields[2])
            if "a" in flags:
                raise grid_error(text, "flag 'a' needs an array length: min:max:len:a", RANGE_HINT)
    elif len(fields) == 4:
        flags = _parse_flags(text, fields[3])
        length_token = fields[2]

    if not fields[0] or not fields[1]:
        raise grid_error(text, "min and max are both required", RANGE_HINT)
    low = require_number(text, fields[0], "min", RANGE_HINT)
    high = require_number(text, fields[1], "max", RANGE_HINT)
    if low.exact > high.exact:
        raise grid_error(text, f"min {fields[0]} is larger than max {fields[1]}", RANGE_HINT)
    if "l" in flags and low.exact <= 0:
        raise grid_error(
            text, "a log range ('l' flag) needs min and max greater than 0", RANGE_HINT
        )
    length = _parse_length(text, length_token) if length_token is not None else None
    if "a" not in flags and length is not None:
        if length != 1:
            raise grid_error(
                text,
                f"array length {length} given without the 'a' flag (write {fields[0]}:{fields[1]}:{length}:a "
                f"for an array, or {fields[0]}:{fields[1]} for a scalar)",
                RANGE_HINT,
            )
        length = None  # upstream's length 1 without 'a': a scalar
    return RangeParameter(
        name=name,
        low=float(low.value()),
        high=float(high.value()),
        length=length,
        unbounded="u" in flags,
        random_init="r" in flags,
        log="l" in flags,
        spec=spec,
        integer=low.is_int and high.is_int,
    )


def parse_ranges(texts: Iterable[str]) -> list[RangeParameter]:
    """Parse several flags; a name given twice is an error."""
    ranges: list[RangeParameter] = []
    seen: set[str] = set()
    for text in texts:
        param = parse_range(text)
        if param.name in seen:
            raise grid_error(text, f"{param.name!r} is given more than once", "give each name once")
        seen.add(param.name)
        ranges.append(param)
    return ranges
