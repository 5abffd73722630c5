from __future__ import annotations

from pathlib import Path

import pytest

from studio.api.specs import parse_capture, parse_reuse
from studio.config import load_settings
from studio.entities import Status, can_transition, check_transition
from studio.exceptions import ArtifactSpecError, ConfigError, ConflictError, UsageError
from studio.keys import check_key, new_key
from studio.units import parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("48h2m10s", 48 * 3600 + 130),
        ("90", 90),
        ("1.5m", 90),
        ("2d", 172800),
        ("250ms", 0.25),
        (30, 30),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["48x", "", "h", "1h2", "-5", "5 m s", "1h-2m"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(UsageError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10g", 10 * 2**30),
        ("10G", 10 * 2**30),
        ("10GB", 10 * 2**30),
        ("512MiB", 512 * 2**20),
        ("512m", 512 * 2**20),
        ("100", 100),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["10x", "-1g", "g", "5i", "ten"])
def test_bad_sizes_are_rejected(text: str) -> None:
    with pytest.raises(UsageError, match="size"):
        parse_size(text)


def test_capture_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = parse_capture("~/.weights:weights")
    assert spec.path == tmp_path / ".weights" and spec.tag == "weights"
    for bad in ["weights", ":weights", "path:", "p:bad tag"]:
        with pytest.raises(ArtifactSpecError, match="PATH:TAG|tag"):
            parse_capture(bad)


def test_reuse_spec() -> None:
    spec = parse_reuse("linear_regression/weights:w")
    assert (spec.experiment, spec.tag, spec.newtag) == ("linear_regression", "weights", "w")
    assert parse_reuse("exp/data").newtag == "data"
    for bad in ["noslash", "/tag:x", "exp/:x"]:
        with pytest.raises(ArtifactSpecError):
            parse_reuse(bad)


def test_keys() -> None:
    key = new_key(0)
    assert key.startswith("197001010000-") and len(key) == 23
    assert new_key() != new_key()
    with pytest.raises(UsageError):
        check_key("../etc")


def test_status_transitions() -> None:
    assert can_transition(Status.QUEUED, Status.RUNNING)
    assert can_transition(Status.RUNNING, Status.QUEUED)
    assert not can_transition(Status.FINISHED, Status.RUNNING)
    with pytest.raises(ConflictError):
        check_transition(Status.FAILED, Status.FINISHED)


def test_config_defaults_and_env(tmp_path: Path) -> None:
    s = load_settings(environ={"STUDIOML_HOME": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'studio.db'}"
    assert s.save_workspace_frequency == 60
    (tmp_path / "config.yaml").write_text(
        "saveWorkspaceFrequency: 5s\nenv:\n  DATA: $HOME/data\ndatabase:\n  url: sqlite:////x.db\n"
    )
    s = load_settings(environ={"STUDIOML_HOME": str(tmp_path), "HOME": "/h"})
    assert s.save_workspace_frequency == 5 and s.env == {"DATA": "/h/data"}
    assert s.database_url == "sqlite:////x.db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("datbase: {}\n", "unknown key `datbase`"),
        ("database:\n  uri: x\n", "unknown key `database.uri`"),
        ("saveWorkspaceFrequency: soon\n", "cannot parse duration"),
        ("env: [1, 2]\n", "`env` must be a mapping"),
        ("a: [\n", "not valid YAML at line"),
    ],
)
def test_invalid_config_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg, environ={"STUDIOML_HOME": str(tmp_path)})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(tmp_path / "nope.yaml", environ={"STUDIOML_HOME": str(tmp_path)})


def test_studioml_config_names_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "elsewhere.yaml"
    cfg.write_text("saveWorkspaceFrequency: 7\n")
    env = {"STUDIOML_HOME": str(tmp_path), "STUDIOML_CONFIG": str(cfg)}
    assert load_settings(environ=env).save_workspace_frequency == 7


def test_studio_server_settings(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    # Upstream's form of an API server, and a token for it.
    config.write_text("database:\n  type: http\n  serverUrl: https://studio.example.org\n  token: abc\nserver:\n  token: s3\n")
    s = load_settings(str(config), environ={"STUDIOML_HOME": str(tmp_path)})
    assert s.database_url == "https://studio.example.org" and s.api_token == "abc" and s.server_token == "s3"
    assert "abc" not in repr(s) and "s3" not in repr(s)
    env = {"STUDIOML_HOME": str(tmp_path), "STUDIOML_API_TOKEN": "env", "STUDIOML_SERVER_TOKEN": "senv"}
    s = load_settings(str(config), environ=env)
    assert s.api_token == "env" and s.server_token == "senv"
    config.write_text("server: yes\n")
    with pytest.raises(ConfigError, match="`server` must be a mapping"):
        load_settings(str(config), environ={"STUDIOML_HOME": str(tmp_path)})
