"""What the build puts in the wheel, and the one version (the build itself is checked by
scripts/check_install: sdist + wheel, twine, a fresh venv)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib
from setuptools import find_packages

import studio
from studio._version import __version__

ROOT = Path(__file__).resolve().parents[2]


def _config() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_file_of_the_package_goes_into_the_wheel() -> None:
    setuptools = _config()["tool"]["setuptools"]
    packages = find_packages(str(ROOT), include=setuptools["packages"]["find"]["include"])
    shipped = {
        p.relative_to(ROOT).as_posix()
        for package in packages
        for p in (ROOT / package.replace(".", "/")).glob("*.py")
    }
    for pattern in setuptools["package-data"]["studio"]:
        shipped |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "studio").glob(pattern)}
    tracked = subprocess.run(
        ["git", "ls-files", "studio"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked and set(tracked) - shipped == set()


def test_one_version() -> None:
    config = _config()
    assert "version" in config["project"]["dynamic"] and "version" not in config["project"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "studio._version.__version__"}
    assert studio.__version__ == __version__
    out = subprocess.run(
        [sys.executable, "-m", "studio", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["studio,", "version", __version__]


def test_metadata_as_packaging_expects() -> None:
    project = _config()["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().split()[:3] == ["Apache", "License", "Version"]
    assert not any(c.startswith("License ::") for c in project["classifiers"])  # SPDX instead
    assert project["requires-python"] and project["urls"]
    assert project["name"] != "studio"  # that name on the index belongs to another project
