"""Metrics printed by a script: ``fitness: 1.5``, ``val_loss=0.3``, ``loss: 0.3, acc: 0.9``.

A line counts only if it is made entirely of ``name: number`` / ``name=number`` pairs
(separated by spaces, commas, semicolons or ``|``); anything else on the line (progress bars,
log prefixes, units such as ``0.3s``, times such as ``12:30:45``) makes it junk, and junk is
ignored. ANSI colour codes and carriage-return progress redraws are stripped first. Numbers
may be ints, floats with exponents, ``nan`` and ``inf``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["parse_metric_lines"]

_NAME = r"[A-Za-z_][\w.\-/]*"
_NUMBER = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)"
_PAIR = rf"({_NAME})\s*[:=]\s*({_NUMBER})"
_SEP = r"[\s,;|]"
_LINE = re.compile(rf"{_SEP}*{_PAIR}(?:{_SEP}+{_PAIR})*{_SEP}*", re.IGNORECASE)
_PAIRS = re.compile(_PAIR, re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_MAX_LINE = 10_000  # longer lines are data dumps, not metrics


def parse_metric_lines(text: str) -> Iterator[tuple[str, float]]:
    """(name, value) for every metric pair in `text`, in order."""
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    for line in re.split(r"[\r\n]+", text):
        if not line or len(line) > _MAX_LINE or ("=" not in line and ":" not in line):
            continue
        if _LINE.fullmatch(line) is None:
            continue
        for name, number in _PAIRS.findall(line):
            yield name, float(number)
