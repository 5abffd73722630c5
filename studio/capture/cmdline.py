"""The command line an experiment was started with."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def command_line(argv: Sequence[str] | None = None) -> list[str]:
    """`sys.argv` as run (`['/usr/bin/studio', 'run', 'train.py', '--lr', '0.1']`), a copy."""
    return [str(arg) for arg in (sys.argv if argv is None else argv)]
