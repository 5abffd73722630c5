"""Re-running a named experiment: numbered keys, and references to a family of runs.

Keys stay unique and nothing is overwritten. `studio run --experiment NAME` records the first run
as `NAME`; running it again records `NAME.2`, then `NAME.3`, ... (one more than the highest number
taken). These runs are the family NAME. Where a command reads an experiment by a name the user
gives (`--reuse NAME/TAG`, `runs show`, `artifacts get`, `rerun`):

- `NAME` means the newest finished run of the family (the highest number); when none has
  finished yet, the run whose key is exactly NAME.
- `NAME.N` names one run exactly, and `NAME.1` is the first run (key `NAME`). So a name that
  itself ends in a dot and a number (`v1.5`) is always read as that exact run.

Commands that change or follow a run (`runs stop`, `runs kill`, `runs logs`) take exact keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from studio.entities import Experiment, Status
from studio.exceptions import NotFoundError
from studio.meta.base import MetaStore

_NUMBERED = re.compile(r"^(?P<name>.+)\.(?P<n>[1-9][0-9]*)$")
_PROBE = 64  # keys asked for at a time; a family ends at a batch with none of them


def numbered(name: str, n: int) -> str:
    """The key of run `n` of family `name` (1 is the name itself)."""
    return name if n == 1 else f"{name}.{n}"


def split(key: str) -> tuple[str, int]:
    """(family, number) of a key: `a.3` -> ("a", 3), `a` -> ("a", 1)."""
    m = _NUMBERED.match(key)
    if m is None or int(m["n"]) < 2:
        return key, 1
    return m["name"], int(m["n"])


def family(meta: MetaStore, name: str) -> Iterator[tuple[int, Experiment]]:
    """(number, run) of every run of family `name`, lowest number first."""
    start = 1
    while True:
        numbers = range(start, start + _PROBE)
        found = {e.key: e for e in meta.get_experiments([numbered(name, n) for n in numbers])}
        if not found:
            return
        for n in numbers:
            exp = found.get(numbered(name, n))
            if exp is not None:
                yield n, exp
        start += _PROBE


def free_key(meta: MetaStore, requested: str) -> str:
    """`requested` if no run has it, else the next number of its family (so the highest number
    is always the newest run)."""
    name, n = split(requested)
    taken = [number for number, _ in family(meta, name)]
    if not taken or (n not in taken and n != 1):
        return requested
    return numbered(name, max(taken) + 1)


def renamed(requested: str | None, key: str) -> str:
    """What to tell the user when a requested key was taken ("" when it was not)."""
    if not requested or requested == key:
        return ""
    return f"; {requested} exists, so this run is {key}"


def resolve(meta: MetaStore, ref: str) -> Experiment:
    """The run a user's reference names (see the module docstring). NotFoundError if none."""
    name, n = split(ref)
    if n > 1:
        return meta.get_experiment(ref)
    m = _NUMBERED.match(ref)
    if m is not None:  # `NAME.1`: the first run, unless a key is literally that
        try:
            return meta.get_experiment(ref)
        except NotFoundError:
            return meta.get_experiment(m["name"])
    newest_finished = None
    for _, exp in family(meta, ref):
        if exp.status == Status.FINISHED:
            newest_finished = exp
    if newest_finished is not None:
        return newest_finished
    return meta.get_experiment(ref)
