"""Settings, built once and passed down.

Sources, later ones win: built-in defaults < `$STUDIOML_HOME/config.yaml` (or `--config FILE`,
or `$STUDIOML_CONFIG`)
< `STUDIOML_*` environment variables < command-line flags (applied by the caller with
`Settings.replace`). Secrets in the config (database passwords, tokens, cloud keys) stay in
this object: they are never written into experiment records, queue entries or logs.
"""

from __future__ import annotations

import dataclasses
import functools
import getpass
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.credentials import default_server, login_for
from studio.exceptions import ConfigError, UsageError
from studio.units import parse_duration, parse_size

DEFAULT_HOME = "~/.studioml"

_KNOWN_KEYS = {
    "database",
    "storage",
    "saveWorkspaceFrequency",
    "env",
    "cloud",
    "optimizer",
    "resources_needed",
    "worker",
    "owner",
    "verbose",
    "server",
}
_DB_KEYS = {"url", "type", "serverUrl", "token", "guest"}
_STORAGE_KEYS = {"url", "cache"}
_WORKER_KEYS = {"lease", "heartbeat", "max_attempts", "poll"}
MIN_LEASE = 1.0
MAX_LEASE = 86400.0


def studio_home(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(os.path.expanduser(env.get("STUDIOML_HOME") or DEFAULT_HOME)).absolute()


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    storage_url: str
    save_workspace_frequency: float = 60.0
    env: dict[str, str] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    resources_needed: dict[str, Any] = field(default_factory=dict)
    cloud: dict[str, Any] = field(default_factory=dict)
    owner: str = "guest"
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    max_attempts: int = 3
    poll_seconds: float = 0.2
    config_path: Path | None = None
    api_token: str | None = field(default=None, repr=False)  # for an http(s):// database URL
    server_token: str | None = field(default=None, repr=False)  # turns on a server's store API
    cache_max_bytes: int | None = None  # `storage.cache`: size budget of `blob_cache` (None: default)
    verbose: str | None = None  # `verbose:` log level when a command gets no --verbose
    signed_url_seconds: float = 900.0  # lifetime of the presigned storage URLs a server issues

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def blob_cache(self) -> Path:
        return self.home / "blobcache"

    def cache_budget(self) -> int:
        """Bytes the local cache folder may hold (`storage.cache`, else a quarter of its disk)."""
        if self.cache_max_bytes is not None:
            return self.cache_max_bytes
        from studio.objects.cache import default_budget

        return default_budget(self.blob_cache)

    @property
    def experiments_dir(self) -> Path:
        return self.home / "experiments"

    def experiment_dir(self, key: str) -> Path:
        return self.experiments_dir / key


def _default_owner() -> str:
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # what getpass.getuser() reads first
        if os.environ.get(name):
            return os.environ[name]
    return _account_name(os.getuid() if hasattr(os, "getuid") else -1)


@functools.lru_cache(maxsize=4)  # the password database, read once per uid (settings are built often)
def _account_name(uid: int) -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "guest"


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}; fix the path given to --config") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config {path} is not valid YAML{where}: fix the syntax") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of keys like `database:` and `storage:`")
    return data


def _check_keys(section: str, data: Any, known: set[str], path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: `{section}` must be a mapping")
    for key in data:
        if key not in known:
            raise ConfigError(
                f"config {path}: unknown key `{section}.{key}`; known keys: {', '.join(sorted(known))}"
            )
    return data


def _check_sqlite_folder(url: str, home: Path) -> None:
    """A SQLite database outside studio's home must be in a folder that exists: a typo in the
    URL would otherwise create a folder and an empty database, and the runs recorded there
    would seem lost."""
    if not url.startswith("sqlite:///"):
        return
    raw = url[len("sqlite:///") :].partition("?")[0]
    if raw in ("", ":memory:"):
        return
    folder = Path(os.path.expanduser(raw)).absolute().parent
    if folder.is_dir() or folder == home.absolute():
        return
    raise ConfigError(
        f"database {url}: folder {folder} does not exist; create it (mkdir -p {folder}) or fix the database URL"
    )


def expand_env(values: dict[str, Any], environ: dict[str, str]) -> dict[str, str]:
    """Expand `$VAR` / `${VAR}` in the config's `env:` section from the submitting environment."""
    pattern = re.compile(r"\$(\w+)|\$\{(\w+)\}")

    def sub(m: re.Match[str]) -> str:
        return environ.get(m.group(1) or m.group(2), "")

    return {str(k): pattern.sub(sub, str(v)) for k, v in values.items()}


def load_settings(config: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build Settings from defaults, the config file and `STUDIOML_*` variables."""
    env = dict(os.environ if environ is None else environ)
    home = studio_home(env)
    # STUDIOML_CONFIG is how a supervisor hands its --config to the script's own studio calls.
    config = config or env.get("STUDIOML_CONFIG") or None
    path = Path(os.path.expanduser(str(config))) if config else home / "config.yaml"
    data: dict[str, Any] = {}
    if config or path.exists():
        data = _load_yaml(path)
    for key in data:
        if key not in _KNOWN_KEYS:
            raise ConfigError(f"config {path}: unknown key `{key}`; known keys: {', '.join(sorted(_KNOWN_KEYS))}")

    db = _check_keys("database", data.get("database") or {}, _DB_KEYS, path)
    storage = _check_keys("storage", data.get("storage") or {}, _STORAGE_KEYS, path)
    worker = _check_keys("worker", data.get("worker") or {}, _WORKER_KEYS, path)
    # Upstream's configs name an API server as `type: http` + `serverUrl:`.
    server_url = db.get("serverUrl") if str(db.get("type") or "").lower() in ("http", "https") else None
    database_url = (
        env.get("STUDIOML_DATABASE_URL") or db.get("url") or server_url or default_server(home)
        or f"sqlite:///{home / 'studio.db'}"
    )
    guest = db.get("guest", False)
    if not isinstance(guest, bool):
        raise ConfigError(f"config {path}: `database.guest` must be true or false")
    # The seed's `guest: true`: talk to a server started with `--guest` as nobody (no token).
    api_token = None if guest else (env.get("STUDIOML_API_TOKEN") or db.get("token") or None)
    login_user = None
    if database_url.lower().startswith(("http://", "https://")):
        kept_token, login_user = login_for(home, database_url)  # from `studio login`
        api_token = api_token or (None if guest else kept_token)
    # A client of a studio server keeps its objects there too (the seed: "remove the storage
    # section"), so it needs no storage credentials.
    served = database_url if database_url.split("://", 1)[0].lower() in ("http", "https") else None
    storage_url = env.get("STUDIOML_STORAGE_URL") or storage.get("url") or served or str(home / "objects")
    _check_sqlite_folder(database_url, home)

    def duration(key: str, value: Any) -> float:
        try:
            return parse_duration(value)
        except UsageError as exc:
            raise ConfigError(f"config {path}: `{key}`: {exc}") from None

    freq = duration("saveWorkspaceFrequency", env.get("STUDIOML_SAVE_FREQUENCY") or data.get("saveWorkspaceFrequency", 60))
    lease = duration("worker.lease", worker.get("lease", 30))
    heartbeat = duration("worker.heartbeat", worker.get("heartbeat", min(5.0, lease / 3)))
    poll = duration("worker.poll", worker.get("poll", 0.2))
    signed = duration("server.signedUrlSeconds", env.get("STUDIOML_SIGNED_URL_SECONDS")
                      or _server_section(data, path).get("signedUrlSeconds", 900))
    # A lease is how long a run may go unheard before it counts as lost: it must expire.
    if not MIN_LEASE <= lease <= MAX_LEASE:
        raise ConfigError(f"config {path}: `worker.lease` must be between {MIN_LEASE:g}s and {MAX_LEASE:g}s (1 day)")
    if not 0 < heartbeat < lease:
        raise ConfigError(f"config {path}: `worker.heartbeat` must be above 0 and below `worker.lease` ({lease:g}s)")
    cache_max_bytes = None
    if storage.get("cache") is not None:
        try:
            raw = storage["cache"]
            cache_max_bytes = parse_size(raw if isinstance(raw, int) else str(raw))
        except UsageError as exc:
            raise ConfigError(f"config {path}: `storage.cache` (the local cache's size budget, e.g. 20G): {exc}") from None
    verbose = data.get("verbose")
    if verbose is not None:
        verbose = str(verbose).lower()
        if verbose not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(f"config {path}: `verbose` must be one of debug, info, warning, error, critical")
    try:
        max_attempts = int(worker.get("max_attempts", 3))
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"config {path}: `worker.max_attempts` must be an integer") from None
    if not 1 <= max_attempts <= 1000:
        raise ConfigError(f"config {path}: `worker.max_attempts` must be between 1 and 1000")
    env_section = data.get("env") or {}
    if not isinstance(env_section, dict):
        raise ConfigError(f"config {path}: `env` must be a mapping of NAME: value")
    for section in ("optimizer", "resources_needed", "cloud"):
        if not isinstance(data.get(section) or {}, dict):
            raise ConfigError(f"config {path}: `{section}` must be a mapping")

    return Settings(
        home=home,
        database_url=database_url,
        storage_url=storage_url,
        save_workspace_frequency=freq,
        env=expand_env(env_section, env),
        optimizer=dict(data.get("optimizer") or {}),
        resources_needed=dict(data.get("resources_needed") or {}),
        cloud=dict(data.get("cloud") or {}),
        # On a team server the owner is the logged-in account (the server sets it anyway).
        owner=str(env.get("STUDIOML_OWNER") or data.get("owner") or login_user or _default_owner()),
        lease_seconds=lease,
        heartbeat_seconds=heartbeat,
        max_attempts=max_attempts,
        poll_seconds=poll,
        config_path=path if path.exists() else None,
        api_token=api_token,
        server_token=env.get("STUDIOML_SERVER_TOKEN") or _server_section(data, path).get("token") or None,
        cache_max_bytes=cache_max_bytes,
        verbose=verbose,
        signed_url_seconds=signed,
    )


def _server_section(data: dict[str, Any], path: Path) -> dict[str, Any]:
    server = data.get("server") or {}
    if not isinstance(server, dict):
        raise ConfigError(f"config {path}: `server` must be a mapping")
    return server
