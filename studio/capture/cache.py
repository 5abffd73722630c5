"""Small JSON files that spare `studio run` a slow reading (host facts, installed packages):
kept in `$STUDIOML_HOME/cache`, each written whole or not at all."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_cache(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON: readers see the old file or the new one. A cache:
    a file that cannot be written is only a slower next run."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except OSError:
        log.debug("could not write the cache file %s", path, exc_info=True)
        try:
            tmp.unlink()
        except OSError:
            pass
