"""The machine an experiment runs on: OS, CPUs, RAM, GPUs, user.

GPUs come from `nvidia-smi` when it is on PATH (a short timeout: a wedged driver must not
stall a run), else from NVIDIA's management library (`pynvml`) when importable, else `[]`.
Nothing here raises; a value that cannot be read is None.

The facts that cost most to read and only change with a reboot (physical core count and RAM,
read through psutil, whose import alone takes ~10 ms; the GPUs, a subprocess) can be kept in
a small file per machine (`cache_dir`): reused while the kernel's boot id, the host name and
the user are the same, so `studio run` neither imports psutil nor starts nvidia-smi before
the script starts. Everything else is read every time.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from studio.capture.cache import write_cache

log = logging.getLogger(__name__)

NVIDIA_SMI_TIMEOUT = 3.0  # seconds
_MIB = 1024 * 1024
#: The boot-stable facts of `host_info` that `cache_dir` keeps (see the module docstring).
BOOT_FACTS = ("cpu_count_physical", "ram_total", "gpus")
HOST_CACHE_FILE = "host.json"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def host_info(cache_dir: Path | str | None = None) -> dict[str, Any]:
    """A JSON-ready description of this host.

    Keys: hostname, user, os (`Linux`), os_release (kernel), os_version, distro (e.g.
    `Debian GNU/Linux 12 (bookworm)`), machine (`x86_64`), python_implementation,
    python_version, cpu_model, cpu_count_logical, cpu_count_physical, cpu_count_usable (CPUs
    this process may run on), ram_total (bytes), gpus (list of {index, name, memory_total}
    with memory in bytes).

    `cache_dir`: where the `BOOT_FACTS` of this boot are kept (read, or written when missing
    or stale); without it, or where the system has no boot id, they are read every time.
    """
    uname = platform.uname()
    user = _user()
    info: dict[str, Any] = {
        "hostname": uname.node or None,
        "user": user,
        "os": uname.system,
        "os_release": uname.release,
        "os_version": uname.version,
        "distro": _safe(_distro),
        "machine": uname.machine,
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "cpu_model": _safe(_cpu_model),
        "cpu_count_logical": os.cpu_count(),
        "cpu_count_physical": None,
        "cpu_count_usable": _safe(_usable_cpus),
        "ram_total": None,
        "gpus": [],
    }
    key = _cache_key(uname.node, user) if cache_dir is not None else None
    facts = _read_cached(Path(cache_dir), key) if cache_dir is not None and key is not None else None
    if facts is None:
        facts = boot_facts()
        if cache_dir is not None and key is not None:
            write_cache(Path(cache_dir) / HOST_CACHE_FILE, {"key": key, "facts": facts})
    info.update(facts)
    return info


def boot_facts() -> dict[str, Any]:
    """The `BOOT_FACTS` of this machine, read now."""
    facts: dict[str, Any] = {"cpu_count_physical": None, "ram_total": None, "gpus": _safe(gpus) or []}
    try:
        import psutil

        facts["cpu_count_physical"] = psutil.cpu_count(logical=False)
        facts["ram_total"] = int(psutil.virtual_memory().total)
    except Exception:
        log.debug("psutil could not read CPU/RAM", exc_info=True)
    return facts


def _cache_key(hostname: str, user: str | None) -> list[Any] | None:
    """What the cached facts were read under: None where there is no boot id (not Linux)."""
    try:
        with open(_BOOT_ID, encoding="ascii") as fh:
            boot_id = fh.read().strip()
    except OSError:
        return None
    if not boot_id:
        return None
    # A container shares its host's boot id but may see other GPUs (and has its own name);
    # nvidia-smi appearing on PATH (a driver installed since) is a change too.
    return [boot_id, hostname, user, sys.platform, shutil.which("nvidia-smi")]


def _read_cached(cache_dir: Path, key: list[Any]) -> dict[str, Any] | None:
    try:
        with open(cache_dir / HOST_CACHE_FILE, encoding="utf-8") as fh:
            data = json.load(fh)
        if data.get("key") == key and isinstance(data.get("facts"), dict) and set(data["facts"]) == set(BOOT_FACTS):
            return dict(data["facts"])
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:
        log.debug("host collector %s failed", getattr(fn, "__name__", fn), exc_info=True)
        return None


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER") or None


def _usable_cpus() -> int | None:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def _distro() -> str | None:
    if sys.platform.startswith("linux"):
        try:
            return platform.freedesktop_os_release().get("PRETTY_NAME")
        except OSError:
            return None
    if sys.platform == "darwin":
        release = platform.mac_ver()[0]
        return f"macOS {release}" if release else None
    if sys.platform == "win32":
        release, version, *_ = platform.win32_ver()
        return f"Windows {release} {version}".strip()
    return None


def _cpu_model() -> str | None:
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    key, sep, value = line.partition(":")
                    # x86 says `model name`; some ARM kernels only say `Hardware` or `Model`.
                    if sep and key.strip() in ("model name", "Hardware", "Model", "cpu model"):
                        return value.strip() or None
        except OSError:
            pass
    elif sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"],
                capture_output=True, text=True, timeout=2, check=False,
            )  # fmt: skip
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or None


def gpus() -> list[dict[str, Any]]:
    """NVIDIA GPUs as [{index, name, memory_total (bytes)}], [] when there are none."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        found = _gpus_from_smi(smi)
        if found is not None:
            return found
    return _gpus_from_nvml() or []


def _gpus_from_smi(smi: str) -> list[dict[str, Any]] | None:
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("nvidia-smi failed: %s", exc)
        return None
    if out.returncode != 0:
        return None
    return parse_nvidia_smi(out.stdout)


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Parse `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`."""
    found: list[dict[str, Any]] = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3:
            continue
        # A GPU name may itself contain a comma: index first, memory last, name in between.
        index, name, memory = parts[0], ", ".join(parts[1:-1]), parts[-1]
        try:
            memory_total: int | None = int(float(memory) * _MIB)
        except ValueError:
            memory_total = None  # `[N/A]` on some boards
        try:
            idx = int(index)
        except ValueError:
            idx = len(found)
        found.append({"index": idx, "name": name, "memory_total": memory_total})
    return found


def _gpus_from_nvml() -> list[dict[str, Any]] | None:
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        found: list[dict[str, Any]] = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            memory = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
            found.append({"index": i, "name": str(name), "memory_total": memory})
        return found
    except Exception:
        log.debug("pynvml failed", exc_info=True)
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
