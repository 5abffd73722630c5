"""Workers' Python environments (cached virtualenvs, real pip, offline) and resources."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest

from studio.capture.pythonenv import installed_packages
from studio.exceptions import UsageError
from studio.runner import venv
from studio.runner.resources import WorkerResources, detect, parse_needs, with_overrides


def build_wheel(dest: Path, name: str = "studiotinypkg", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel, built by hand so no build backend or index is needed."""
    dest.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: studio-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


@pytest.fixture
def offline_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip sees only a local folder of wheels: no network, as on an air-gapped worker."""
    wheels = tmp_path / "wheels"
    build_wheel(wheels)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    return wheels


def test_requirement_strings_are_validated() -> None:
    assert venv.check_requirements(["numpy", "torch>=2,<3", "x[extra]==1.0", "y @ https://h/y.whl"])
    for bad in ("numpy==", "not a requirement!", "==1.0", "pkg>>2"):
        with pytest.raises(UsageError, match="--python-pkg"):
            venv.check_requirements([bad])


def test_recorded_lines_that_pip_cannot_reproduce_are_skipped() -> None:
    lines = [
        "numpy==1.26.4",
        "studio==0.1.0  # editable install from file:///work/main",
        "studio-experiments==0.2.0",
        "mylib==0.3  # local install from file:///home/me/mylib",
        "pip==23.2.1",
        "tool @ git+https://example.org/tool@1f2e3d",
    ]
    assert venv.recorded_requirements(lines) == ["numpy==1.26.4", "tool @ git+https://example.org/tool@1f2e3d"]
    have = {"numpy": "1.26.4", "tool": "0.1"}
    assert venv.missing_requirements(venv.recorded_requirements(lines), have) == []
    assert venv.missing_requirements(["numpy==1.26.3", "numpy>=1", "new-pkg", "x; sys_platform=='nope'"], have) == [
        "new-pkg", "numpy==1.26.3"]


def test_same_environment_as_the_submitter_installs_nothing(tmp_path: Path) -> None:
    env = venv.prepare_env(tmp_path, installed_packages(), ["packaging", "pytest>=7"])
    assert env.path is None and env.python and not env.installed
    assert not (tmp_path / "venvs").exists()


def test_python_pkg_builds_a_cached_env_once(tmp_path: Path, offline_index: Path) -> None:
    recorded = installed_packages()
    first = venv.prepare_env(tmp_path, recorded, ["studiotinypkg==1.0"])
    assert first.created and first.path is not None and first.installed == ("studiotinypkg==1.0",)
    out = subprocess.run([first.python, "-c", "import studiotinypkg, pytest; print(studiotinypkg.VERSION)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1.0"  # the new package, and the worker's own ones through the venv
    second = venv.prepare_env(tmp_path, recorded, ["studiotinypkg==1.0"])
    assert not second.created and second.path == first.path


def test_concurrent_builds_of_one_env_make_it_once(tmp_path: Path, offline_index: Path) -> None:
    results: list[venv.PythonEnv] = []
    threads = [threading.Thread(target=lambda: results.append(venv.prepare_env(tmp_path, [], ["studiotinypkg"])))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len({r.path for r in results}) == 1
    assert sum(r.created for r in results) == 1


def test_install_failure_carries_pips_message(tmp_path: Path, offline_index: Path) -> None:
    with pytest.raises(venv.InstallError) as info:
        venv.prepare_env(tmp_path, [], ["no-such-package-studio==9.9"])
    assert "no-such-package-studio" in info.value.output
    assert "No matching distribution" in info.value.output or "ERROR" in info.value.output
    assert not any((tmp_path / "venvs").glob("*/.studio-ready"))


def test_unreproducible_recorded_versions_fall_back_to_the_workers(tmp_path: Path, offline_index: Path) -> None:
    env = venv.prepare_env(tmp_path, ["packaging==0.0.1"], ["studiotinypkg"])
    assert env.installed == ("studiotinypkg",)
    assert any("packaging==0.0.1" in note for note in env.notes)


def test_resource_needs_parse_strictly() -> None:
    assert parse_needs({"cpus": "2", "gpus": 1, "ram": "10G", "hdd": "512MiB"}) == {
        "cpus": 2, "gpus": 1, "ram": 10 * 2**30, "hdd": 512 * 2**20}
    assert parse_needs({"ram": "10g"}) == parse_needs({"ram": "10GB"})
    for bad in ({"cpus": "-1"}, {"gpus": "two"}, {"ram": "10x"}, {"hdd": "-5g"}, {"tpus": 1}, {"cpus": 1.5}):
        with pytest.raises(UsageError):
            parse_needs(bad)


def test_worker_resources_detection_overrides_and_gpu_assignment(tmp_path: Path) -> None:
    found = detect(tmp_path, environ={"CUDA_VISIBLE_DEVICES": "2,3"})
    assert found.cpus >= 1 and found.ram > 0 and found.hdd > 0 and found.gpu_ids == ("2", "3")
    assert detect(tmp_path, environ={"CUDA_VISIBLE_DEVICES": "-1"}).gpus == 0
    res = with_overrides(found, {"cpus": "1", "ram": "1g", "gpus": None})
    assert (res.cpus, res.ram, res.gpu_ids) == (1, 2**30, ("2", "3"))
    assert res.child_env({"gpus": 1}) == {"CUDA_VISIBLE_DEVICES": "2"}
    assert res.child_env({}) == {}
    none = with_overrides(WorkerResources(cpus=2, ram=1, hdd=1), {"gpus": "2"})
    assert none.gpu_ids == ("0", "1") and none.as_claim()["gpus"] == 2
