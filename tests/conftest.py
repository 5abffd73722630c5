"""Shared fixtures. Server fixtures (PostgreSQL, S3, ...) live in tests/fixtures/ as plugins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One line per fixture plugin module in tests/fixtures/.
pytest_plugins: list[str] = [
    "tests.fixtures.postgres", "tests.fixtures.s3", "tests.fixtures.store_server", "tests.fixtures.team_server",
    "tests.fixtures.slurm", "tests.fixtures.gce", "tests.fixtures.expiring_s3", "tests.fixtures.netns", "tests.fixtures.disk",
]


@pytest.fixture
def studio_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh STUDIOML_HOME (and HOME, so `~` paths stay inside the test) for one test."""
    home = tmp_path / "studiohome"
    home.mkdir()
    user_home = tmp_path / "userhome"
    user_home.mkdir()
    monkeypatch.setenv("STUDIOML_HOME", str(home))
    monkeypatch.setenv("HOME", str(user_home))
    for var in (
        "STUDIOML_DATABASE_URL",
        "STUDIOML_STORAGE_URL",
        "STUDIOML_EXPERIMENT",
        "STUDIOML_ARTIFACT_MAPPING",
    ):
        monkeypatch.delenv(var, raising=False)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return home
