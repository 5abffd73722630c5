"""Experiment keys: `YYYYMMDDHHMM-XXXXXXXXXX` (UTC minute + 10 random alphanumerics).

The lab workbook's tag format; sortable by creation time, unique without coordination.
"""

from __future__ import annotations

import random
import re
import string
import time

_ALPHABET = string.ascii_uppercase + string.digits
# What `secrets.choice` uses (os.urandom), without importing `secrets` (hmac, base64) for it.
_SYSTEM_RANDOM = random.SystemRandom()
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


def new_key(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d%H%M", time.gmtime(time.time() if now is None else now))
    return stamp + "-" + "".join(_SYSTEM_RANDOM.choice(_ALPHABET) for _ in range(10))


def check_key(key: str) -> str:
    from studio.exceptions import UsageError

    if not _KEY.match(key):
        raise UsageError(
            f"experiment key {key!r} must be 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return key


# Names stored in VARCHAR(255) columns (project, owner, queue, metric, sweep, artifact tag):
# checked before anything is written, so SQLite (which would not mind) and PostgreSQL (which
# would fail mid-run) behave the same.
MAX_NAME = 255


def check_name(value: str | None, what: str) -> None:
    from studio.exceptions import UsageError

    if value is not None and len(value) > MAX_NAME:
        raise UsageError(f"{what} is {len(value)} characters long; use at most {MAX_NAME}")
