"""The Python environment an experiment runs in on a worker.

Wanted: the packages recorded when the experiment was submitted (`pythonenv`, pip-freeze
lines) plus its `--python-pkg` requirements. Most of the time the submitter's environment is
the worker's (same machine, or machines set up alike), so the rule is to install nothing that
the worker already has:

- a `--python-pkg` requirement already satisfied by the worker's own interpreter, and a
  recorded `name==version` the worker has at that version, need nothing;
- recorded lines that pip cannot reproduce from an index (editable and local installs, pip's
  own tooling, studio itself) are skipped;
- when nothing is left, the experiment runs with the worker's own interpreter: no virtualenv,
  no pip, no network.

Otherwise the remaining requirements go into a virtualenv cached under
`$STUDIOML_HOME/venvs/<sha256 of the normalized requirement set and interpreter>`, made with
`python -m venv --system-site-packages --without-pip` (plus a `.pth` file pointing at the
worker's own site-packages, in case the worker itself runs in a virtualenv) and filled by the
worker's pip running in that interpreter: only the differences are installed, the rest is
seen through. The second experiment with the same set reuses the directory at once.

Concurrency and crashes: creation holds an exclusive `flock` on `<hash>.lock` (released by
the kernel if the process dies) and is complete only when the `.studio-ready` marker exists
(written temp-then-rename as the last step); a directory without it is a crash's leftover and
is rebuilt. The venv is built at its final path rather than in a temp dir renamed into place
because virtualenvs are not relocatable: pip writes absolute paths into console scripts.

Failures: if the recorded differences cannot be installed (say, a package of another OS),
the environment falls back to the `--python-pkg` requirements alone and says so in the
experiment's output; if those cannot be installed, `InstallError` carries pip's output and
the experiment fails with it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from studio._version import DISTRIBUTION
from studio.exceptions import StudioError, UsageError

log = logging.getLogger(__name__)

PIP_TIMEOUT = 1800.0
_NAME_SEPARATORS = re.compile(r"[-_.]+")
READY = ".studio-ready"
#: Recorded distributions never reinstalled: packaging tooling, and studio itself (the worker's
#: studio supervises the run and serves the script's `fs_tracker`; `studio` is its name in
#: environments recorded before it became studio-experiments).
NEVER_INSTALL = frozenset(
    {"pip", "setuptools", "wheel", "distribute", "pkg-resources", DISTRIBUTION, "studio"}
)


class InstallError(StudioError):
    """The experiment's Python packages could not be installed; `output` is pip's."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class PythonEnv:
    python: str  # the interpreter to run the script with
    path: Path | None = None  # the cached virtualenv; None: the worker's own interpreter
    installed: tuple[str, ...] = ()  # requirements installed into it
    created: bool = False  # built by this call (vs found in the cache)
    notes: tuple[str, ...] = field(default_factory=tuple)  # lines for the experiment's output


def check_requirements(reqs: Iterable[str]) -> list[str]:
    """Validate `--python-pkg` strings (PEP 508) at submit time; UsageError names the bad one."""
    reqs = list(reqs)
    if not reqs:  # the common case: spare `studio run` importing packaging's parser
        return []
    from packaging.requirements import InvalidRequirement, Requirement

    out: list[str] = []
    for text in reqs:
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise UsageError(
                f"--python-pkg {text!r} is not a valid requirement ({exc}); use forms like "
                "numpy, numpy==1.26.4, 'torch>=2,<3'"
            ) from None
        out.append(text.strip())
    return out


def _canon(name: str) -> str:
    """PEP 503 normalized name (what `packaging.utils.canonicalize_name` does, without the import)."""
    return _NAME_SEPARATORS.sub("-", name).lower()


def parse_freeze(lines: Iterable[str]) -> dict[str, str]:
    """name -> version from pip-freeze lines of `name==version` (notes after `#` ignored)."""
    found: dict[str, str] = {}
    for line in lines:
        spec = line.split("#", 1)[0].strip()
        name, sep, version = spec.partition("==")
        if sep and name.strip() and version.strip():
            found[_canon(name.strip())] = version.strip()
    return found


def recorded_requirements(pythonenv: Iterable[str]) -> list[str]:
    """The recorded lines pip could reinstall from an index (see the module docstring)."""
    return _recorded(pythonenv, {})


def _recorded(pythonenv: Iterable[str], have: Mapping[str, str]) -> list[str]:
    """Recorded requirements pip could reinstall, less the plain `name==version` pins that
    `have` matches exactly (checked by string, so the common case parses nothing)."""
    from packaging.requirements import InvalidRequirement, Requirement

    out: list[str] = []
    for line in pythonenv:
        spec, _, note = line.partition("#")
        spec = spec.strip()
        if not spec or note.strip():  # editable/local/direct-URL installs carry a note
            continue
        name, sep, version = spec.partition("==")
        if sep and have.get(_canon(name.strip())) == version.strip():
            continue
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            continue
        if _canon(req.name) in NEVER_INSTALL:
            continue
        out.append(spec)
    return out


def _satisfied(req_text: str, installed: Mapping[str, str]) -> bool:
    from packaging.requirements import Requirement
    from packaging.version import InvalidVersion

    req = Requirement(req_text)
    if req.marker is not None and not req.marker.evaluate():
        return True  # not for this platform: nothing to install
    have = installed.get(_canon(req.name))
    if have is None or req.extras:
        return False  # extras may pull in more: let pip decide
    if req.url:
        return True  # a direct reference the worker already has under that name
    try:
        return req.specifier.contains(have, prereleases=True)
    except InvalidVersion:
        return False


def missing_requirements(reqs: Sequence[str], installed: Mapping[str, str]) -> list[str]:
    """The requirements `installed` does not satisfy, normalized, deduplicated, sorted."""
    from packaging.requirements import Requirement

    todo: dict[str, str] = {}
    for text in reqs:
        if not _satisfied(text, installed):
            req = Requirement(text)
            todo[f"{_canon(req.name)}|{req}"] = str(req)
    return [todo[k] for k in sorted(todo)]


def worker_packages() -> dict[str, str]:
    """What the worker's own interpreter has installed (the scan is cached per process)."""
    from studio.capture.pythonenv import installed_packages

    return _parsed(tuple(installed_packages()))


@functools.lru_cache(maxsize=4)
def _parsed(lines: tuple[str, ...]) -> dict[str, str]:
    return parse_freeze(lines)


def env_key(requirements: Sequence[str], python: str) -> str:
    ident = {"python": os.path.realpath(python), "version": sys.version, "requirements": sorted(requirements)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def prepare_env(
    home: Path,
    pythonenv: Sequence[str],
    python_pkgs: Sequence[str],
    installed: Mapping[str, str] | None = None,
    base_python: str | None = None,
) -> PythonEnv:
    """The interpreter for an experiment with these recorded packages and extra requirements."""
    base = base_python or sys.executable
    have = worker_packages() if installed is None else installed
    extra = missing_requirements(list(python_pkgs), have)
    from packaging.requirements import Requirement

    extra_names = {_canon(Requirement(r).name) for r in python_pkgs}
    # `--python-pkg` wins over a recorded pin of the same package.
    recorded = [r for r in _recorded(pythonenv, have) if _canon(Requirement(r).name) not in extra_names]
    differing = missing_requirements(recorded, have)
    if not extra and not differing:
        return PythonEnv(python=base)
    wanted = sorted(set(extra) | set(differing))
    return _cached_venv(home / "venvs", wanted, extra, differing, base)


def _cached_venv(root: Path, wanted: list[str], extra: list[str], differing: list[str], base: str) -> PythonEnv:
    digest = env_key(wanted, base)
    dest = root / digest
    found = _read_ready(dest)
    if found is not None:
        return found
    root.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(root / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another worker builds the same env
        found = _read_ready(dest)
        if found is not None:
            return found
        if dest.exists():
            log.warning("removing incomplete environment %s (an earlier build was interrupted)", dest)
            shutil.rmtree(dest, ignore_errors=True)
        started = time.monotonic()
        from studio.progress import DISPLAY

        with DISPLAY.status(f"building Python environment: {' '.join(wanted)}"):
            return _build(dest, wanted, extra, differing, base, started)


def _build(dest: Path, wanted: list[str], extra: list[str], differing: list[str], base: str,
           started: float) -> PythonEnv:
    """Make the virtualenv at `dest` and install into it (the caller holds its lock)."""
    python = _make_venv(dest, base)
    notes: list[str] = []
    installed = wanted
    try:
        _pip_install(python, wanted)
    except InstallError as exc:
        if not differing:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        notes.append(
            "studio: could not install the submitter's versions of "
            f"{', '.join(differing)}; running with the worker's versions instead\n"
            + _tail(exc.output, 20)
        )
        installed = extra
        if extra:
            try:
                _pip_install(python, extra)
            except InstallError:
                shutil.rmtree(dest, ignore_errors=True)
                raise
    notes.append(
        f"studio: created Python environment {dest.name} in {time.monotonic() - started:.1f}s"
        + (f" with {' '.join(installed)}" if installed else "")
    )
    info = {"python": python, "installed": installed, "notes": notes, "created": time.time()}
    tmp = dest / f".ready-{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, dest / READY)
    return PythonEnv(python=python, path=dest, installed=tuple(installed), created=True, notes=tuple(notes))


def _read_ready(dest: Path) -> PythonEnv | None:
    try:
        info = json.loads((dest / READY).read_text())
    except (OSError, ValueError):
        return None
    python = str(info.get("python") or dest / "bin" / "python")
    if not os.path.exists(python):
        return None
    return PythonEnv(python=python, path=dest, installed=tuple(info.get("installed") or ()), created=False)


def _make_venv(dest: Path, base: str) -> str:
    cmd = [base, "-m", "venv", "--system-site-packages", "--without-pip", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    if proc.returncode != 0:
        shutil.rmtree(dest, ignore_errors=True)
        raise InstallError(f"could not create a virtualenv at {dest}", proc.stdout + proc.stderr)
    python = str(dest / "bin" / "python")
    # The worker's own packages (and pip) stay visible even when the worker runs in a venv,
    # whose --system-site-packages would only reach the base interpreter's.
    site_dir = _venv_site_packages(python)
    paths = [p for p in dict.fromkeys([*sysconfig.get_paths().values(), *sys.path]) if p.endswith("-packages")]
    (Path(site_dir) / "_studio_worker_site.pth").write_text("".join(f"{p}\n" for p in paths if os.path.isdir(p)))
    return python


def _venv_site_packages(python: str) -> str:
    out = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


def _pip_install(python: str, requirements: Sequence[str]) -> None:
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *requirements]
    log.info("installing %s", " ".join(requirements))
    env = dict(os.environ, PIP_NO_WARN_SCRIPT_LOCATION="1", PYTHONNOUSERSITE="1")
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              check=False, timeout=PIP_TIMEOUT, env=env)
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"pip install timed out after {PIP_TIMEOUT:.0f}s", str(exc.output or "")) from None
    if proc.returncode != 0:
        raise InstallError(f"pip install {' '.join(requirements)} failed (exit {proc.returncode})", proc.stdout)


def _tail(text: str, lines: int) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept) + ("\n" if kept else "")
