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
    """Local path of the artifact `tag` (a directory, or a file such as `output`).

    Inside an experiment, a tag it does not have raises NotFoundError naming the tags it has
    (a typo would otherwise read an empty folder). Outside one, the tag's folder under
    `$STUDIOML_HOME/experiments/local/` is created on demand."""
    mapping = _mapping()
    if tag in mapping:
        return mapping[tag]
    if mapping:
        from studio.exceptions import NotFoundError

        key = get_experiment_key() or "this experiment"
        raise NotFoundError(
            f"experiment {key} has no artifact {tag!r}; it has: {', '.join(sorted(mapping))} "
            f"(give it one with `studio run --capture PATH:{tag}` or `--capture-once PATH:{tag}`)"
        )
    return str(get_artifact_cache(tag))


def get_artifacts() -> dict[str, str]:
    """tag -> local path for every artifact of the current experiment."""
    return _mapping()


def get_model_directory(experiment_name: str | None = None) -> str:
    """The `modeldir` folder: the current experiment's, or (upstream's signature) that of
    experiment `experiment_name`, a local cache folder when it is another experiment."""
    return _own_or_cached("modeldir", experiment_name)


def get_tensorboard_dir(experiment_name: str | None = None) -> str:
    """The `tb` (TensorBoard logs) folder, like `get_model_directory`."""
    return _own_or_cached("tb", experiment_name)


def _own_or_cached(tag: str, experiment: str | None) -> str:
    if experiment is None or experiment == get_experiment_key():
        mapping = _mapping()
        return _ensure_dir(mapping[tag]) if tag in mapping else get_artifact_cache(tag)
    return get_artifact_cache(tag, experiment)


def get_artifact_cache(tag: str, experiment: str | None = None) -> str:
    """Directory where artifact `tag` of `experiment` (default: the current one) lives locally."""
    key = experiment or get_experiment_key() or "local"
    if experiment:
        from studio.keys import check_key

        check_key(experiment)  # a name, never a path out of the cache
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
