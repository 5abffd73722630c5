"""Machine-independent access to an experiment's artifacts from inside the script.

Under `studio run` (or a worker), `STUDIOML_ARTIFACT_MAPPING` names a JSON file mapping each
artifact tag to its local path: the original path on a local run, a directory filled from
storage on a worker. Outside an experiment the functions still work: artifacts live under
`$STUDIOML_HOME/experiments/<experiment or "local">/<tag>`, created on demand.

Only the standard library is imported here, so calling these costs nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

_DEFAULT_HOME = "~/.studioml"


def _home() -> Path:
    return Path(os.path.expanduser(os.environ.get("STUDIOML_HOME") or _DEFAULT_HOME))


def _mapping() -> dict[str, str]:
    path = os.environ.get("STUDIOML_ARTIFACT_MAPPING")
    if not path:
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def get_experiment_key() -> str | None:
    """The key of the experiment this process belongs to, if any."""
    return os.environ.get("STUDIOML_EXPERIMENT") or None


def get_artifact(tag: str) -> str:
    """Local path of the artifact `tag` (a directory, or a file such as `output`)."""
    mapping = _mapping()
    if tag in mapping:
        return mapping[tag]
    return str(get_artifact_cache(tag))


def get_artifacts() -> dict[str, str]:
    """tag -> local path for every artifact of the current experiment."""
    return _mapping()


def get_model_directory() -> str:
    return _ensure_dir(get_artifact("modeldir"))


def get_tensorboard_dir() -> str:
    return _ensure_dir(get_artifact("tb"))


def get_artifact_cache(tag: str, experiment: str | None = None) -> str:
    """Directory where artifact `tag` of `experiment` (default: the current one) lives locally."""
    key = experiment or get_experiment_key() or "local"
    return _ensure_dir(str(_home() / "experiments" / key / tag))


def get_blob_cache(key: str) -> str:
    """Path in the local blob cache for a stored object or tree with this key (hash)."""
    root = _home() / "blobcache"
    root.mkdir(parents=True, exist_ok=True)
    return str(root / key)


def _ensure_dir(path: str) -> str:
    p = Path(path)
    if not p.exists():
        p.mkdir(parents=True, exist_ok=True)
    return path
