"""Strict parsers for durations (`48h2m10s`, `90`, `1.5m`) and sizes (`10g`, `10G`, `512MiB`).

Upstream parsed these with permissive regexes that accepted junk; these reject anything that
is not fully understood.
"""

from __future__ import annotations

import math
import re

from studio.exceptions import UsageError

# Upper bounds: a value past them is a typo, and would not fit the database's 64-bit integers
# or would make a lease or a timeout never expire.
MAX_DURATION = 100 * 365 * 86400.0  # 100 years
MAX_SIZE = 1 << 60  # 1 EiB
MAX_COUNT = 1 << 20

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration: a bare number is seconds; otherwise parts like `2h30m10s`."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = text.strip().lower()
        try:
            value = float(s)
        except ValueError:
            pos, value, matched = 0, 0.0, False
            for m in _DURATION_PART.finditer(s):
                if m.start() != pos:
                    break
                value += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
                pos, matched = m.end(), True
            if not matched or pos != len(s):
                raise UsageError(
                    f"cannot parse duration {text!r}: use seconds or parts like 48h2m10s, 90m, 1.5h"
                ) from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"duration {text!r} must be a finite, non-negative number of seconds, e.g. 90, 1.5h")
    if value > MAX_DURATION:
        raise UsageError(f"duration {text!r} is longer than 100 years; check the unit")
    return value


def parse_size(text: str | int) -> int:
    """Bytes in a size. Units are case-insensitive and binary, as upstream had them:
    `10g`, `10G`, `10GB` and `10GiB` all mean 10 * 1024**3 bytes; a bare number is bytes."""
    if isinstance(text, int):
        value = text
    else:
        m = _SIZE.match(text)
        if not m or (m.group(3) and m.group(3).lower() == "i"):
            raise UsageError(f"cannot parse size {text!r}: use a number with a unit like 512m, 10G, 8GiB")
        number = float(m.group(1)) * 1024 ** _SIZE_POWER[m.group(2).lower()]
        if not number <= MAX_SIZE:  # also catches inf (a number with hundreds of digits)
            raise UsageError(f"size {text!r} is larger than 1 EiB; check the unit")
        value = int(number)
    if value < 0:
        raise UsageError(f"size {text!r} must not be negative")
    if value > MAX_SIZE:
        raise UsageError(f"size {text!r} is larger than 1 EiB; check the unit")
    return value


def format_size(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
