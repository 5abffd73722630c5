"""Upstream's text substitution of grid values into the entry script.

For each grid point the worker copies the workspace and rewrites the entry script (only that
file) with :func:`substitute_file`. The rule, kept from upstream so old scripts behave the same:

* The script is split into lines at ``\\n``, ``\\r\\n`` or ``\\r`` (Python's own line ends);
  line endings are preserved byte for byte.
* On each line, an occurrence of a parameter name is replaced when it is a *whole word* (the
  characters just before and after it are not letters, digits or ``_``) **and no ``=``
  appears anywhere after it on the same line**. Put differently: only the text after the
  last ``=`` of a line is rewritten, so a right-hand side is substituted and a left-hand side,
  a keyword argument name or a default is not::

      lr = 0.01                 ->  lr = 0.01             (an '=' follows 'lr')
      opt = SGD(lr=lr)          ->  opt = SGD(lr=0.05)    (only the last 'lr' is after '=')
      print(learning_rate)      ->  print(0.4)

* The value is written as a Python literal: ``repr`` of a string (``'adam'``) or of a number
  (``0.05``, ``1e-05``, ``3``); a negative number is parenthesised (``(-1)``) so that
  ``-lr**2`` or ``x-lr`` keep their meaning. Names are all replaced in one pass, so a value
  that happens to spell another parameter's name is never substituted again.
* It is plain text substitution, as upstream did: an occurrence inside a string literal, a
  comment or after a dot (``self.lr``) on the right of the last ``=`` is replaced too, and
  ``if lr == 0.1`` is left alone (it contains ``=``). Scripts that want no surprises read
  their values explicitly (``studio.params()``) instead.
"""

from __future__ import annotations

import keyword
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from studio.exceptions import HyperParamError

_LINE_END = re.compile(r"(\r\n|\r|\n)")


def python_literal(value: object) -> str:
    """The source text that stands for ``value`` in the script (see the module docstring)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int):
        return f"({value!r})" if value < 0 else repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HyperParamError(
                f"cannot substitute {value!r}: only finite numbers have a literal"
            )
        # -0.0 is negative too: parenthesise by sign, not by comparison
        return f"({value!r})" if math.copysign(1.0, value) < 0 else repr(value)
    raise HyperParamError(
        f"cannot substitute a {type(value).__name__} value {value!r}: use a number or a string"
    )


def _pattern(names: list[str]) -> re.Pattern[str]:
    for name in names:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise HyperParamError(
                f"cannot substitute {name!r}: hyperparameter names must be Python identifiers"
            )
    # Longest first so that alternation never stops at a prefix (lookarounds make it moot,
    # but the order keeps the regex obviously right).
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def substitute_script_counted(
    text: str, params: Mapping[str, object]
) -> tuple[str, dict[str, int]]:
    """:func:`substitute_script` plus how many occurrences of each name were replaced.

    A count of 0 tells the caller that the script never uses that parameter on a right-hand
    side, which is worth a warning.
    """
    counts = dict.fromkeys(params, 0)
    if not params:
        return text, counts
    literals = {name: python_literal(value) for name, value in params.items()}
    pattern = _pattern(list(params))

    def replace(match: re.Match[str]) -> str:
        counts[match.group(0)] += 1
        return literals[match.group(0)]

    pieces = _LINE_END.split(text)
    # split() with a capturing group alternates line bodies and line ends: bodies at even
    # indexes, the ends themselves (kept verbatim) at odd ones.
    for index in range(0, len(pieces), 2):
        line = pieces[index]
        cut = line.rfind("=") + 1
        tail = line[cut:]
        if tail:
            # The character before the tail is '=' (or the tail is the whole line), so a
            # match at the tail's start is a whole word in the full line too.
            pieces[index] = line[:cut] + pattern.sub(replace, tail)
    return "".join(pieces), counts


def substitute_script(text: str, params: Mapping[str, object]) -> str:
    """Return ``text`` with every name of ``params`` substituted by its value.

    See the module docstring for the exact rule. ``params`` maps identifiers to ``int``,
    ``float`` (finite), ``str`` (or ``bool``/``None``); anything else, a non-identifier name or
    a keyword raises :class:`HyperParamError`. Text with no occurrences comes back unchanged.
    """
    return substitute_script_counted(text, params)[0]


def substitute_file(path: str | os.PathLike[str], params: Mapping[str, object]) -> dict[str, int]:
    """Rewrite the script at ``path`` in place with :func:`substitute_script`.

    The file is read and written as UTF-8 with line endings untouched. The new text goes to a
    temporary file in the same directory which then replaces the original with
    :func:`os.replace`, so a reader sees either the old or the new script, never half of one;
    the file's permission bits are kept. Returns the per-name replacement counts. A script
    that is not UTF-8 raises :class:`HyperParamError`.
    """
    target = Path(path)
    try:
        original = target.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HyperParamError(
            f"cannot substitute hyperparameters in {target}: it is not UTF-8 text ({exc.reason}); "
            "read the values with studio.params() instead"
        ) from exc
    text, counts = substitute_script_counted(original, params)
    if text == original:
        return counts
    mode = target.stat().st_mode & 0o7777
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return counts
