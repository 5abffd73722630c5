"""Tokens for studio servers, kept in ``$STUDIOML_HOME/credentials.json`` (mode 0600).

    {"default": "https://studio.example.org",
     "servers": {"https://studio.example.org": {"token": "studio_...", "user": "alice"}}}

`studio login URL` writes it; `load_settings` reads it: a server URL used as the database
gets its token from here unless ``STUDIOML_API_TOKEN`` or ``database: token:`` give one, and
the default server is the database when nothing else names one. The token never goes into a
config file, an experiment record or a log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from studio.exceptions import ConfigError

FILE_NAME = "credentials.json"


def normalize_url(url: str) -> str:
    return url.strip().rstrip("/")


def credentials_path(home: Path) -> Path:
    return home / FILE_NAME


def read_credentials(home: Path) -> dict[str, Any]:
    path = credentials_path(home)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"servers": {}}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{path} is not valid JSON: delete it and run `studio login URL` again") from None
    if not isinstance(data, dict) or not isinstance(data.get("servers", {}), dict):
        raise ConfigError(f"{path} is not a studio credentials file: delete it and run `studio login URL` again")
    data.setdefault("servers", {})
    return data


def login_for(home: Path, url: str) -> tuple[str | None, str | None]:
    """(token, user name) kept for the server at `url` by `studio login`."""
    entry = read_credentials(home)["servers"].get(normalize_url(url))
    if not isinstance(entry, dict):
        return None, None
    token, user = entry.get("token"), entry.get("user")
    return (str(token) if token else None), (str(user) if user else None)


def token_for(home: Path, url: str) -> str | None:
    return login_for(home, url)[0]


def default_server(home: Path) -> str | None:
    if not credentials_path(home).exists():
        return None
    url = read_credentials(home).get("default")
    return str(url) if url else None


def _write(home: Path, data: dict[str, Any]) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = credentials_path(home)
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    # Created 0600 from the start: the token is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def save_token(home: Path, url: str, token: str, user: str, make_default: bool = True) -> Path:
    data = read_credentials(home)
    url = normalize_url(url)
    data["servers"][url] = {"token": token, "user": user}
    if make_default:
        data["default"] = url
    return _write(home, data)


def forget(home: Path, url: str) -> bool:
    data = read_credentials(home)
    url = normalize_url(url)
    found = data["servers"].pop(url, None) is not None
    if data.get("default") == url:
        data.pop("default")
    if found:
        _write(home, data)
    return found
