"""What an experiment needs and what a worker has: CPUs, GPUs, RAM and free disk.

Needs are recorded on the experiment as `resources = {cpus, gpus, ram, hdd}` (counts, and bytes
for ram/hdd). A worker advertises what it has (detected here, overridable by its flags) and the
metadata store's `claim` hands it only experiments whose every need is at most that.

GPUs: a worker's devices are those `nvidia-smi` lists, restricted to `CUDA_VISIBLE_DEVICES`
when the worker itself was started with it (that is how several workers share one box). An
experiment that needs k GPUs gets the worker's first k devices through `CUDA_VISIBLE_DEVICES`
in its environment; one that needs none inherits the worker's environment unchanged.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.exceptions import UsageError
from studio.units import MAX_COUNT, parse_size

RESOURCE_NAMES = ("cpus", "gpus", "ram", "hdd")
_COUNTS = ("cpus", "gpus")
_SIZES = ("ram", "hdd")


def parse_count(value: Any, name: str) -> int:
    """A non-negative whole number of CPUs or GPUs, from a flag or the config."""
    if isinstance(value, bool):
        raise UsageError(f"--{name} {value!r} must be a whole number")
    if isinstance(value, int):
        n = value
    else:
        try:
            n = int(str(value).strip())
        except ValueError:
            raise UsageError(f"--{name} {value!r} must be a whole number, e.g. --{name} 2") from None
    if n < 0:
        raise UsageError(f"--{name} {value!r} must not be negative")
    if n > MAX_COUNT:
        raise UsageError(f"--{name} {value!r} is more than {MAX_COUNT:,}; check the number")
    return n


def parse_needs(values: Mapping[str, Any]) -> dict[str, int]:
    """Normalize resource needs (flags or the config's `resources_needed:`) to numbers.

    `cpus`/`gpus` are counts; `ram`/`hdd` are sizes like `10g`, `10G`, `512MiB` (bytes when a
    bare number). Unknown names, malformed sizes and negative values raise UsageError, so bad
    input is rejected before anything is queued. None values are left out.
    """
    needs: dict[str, int] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name in _COUNTS:
            needs[name] = parse_count(value, name)
        elif name in _SIZES:
            if isinstance(value, bool) or isinstance(value, float):
                raise UsageError(f"--{name} {value!r}: use a size like 512m, 10G, 8GiB")
            try:
                needs[name] = parse_size(value)
            except UsageError as exc:
                raise UsageError(f"--{name}: {exc}") from None
        else:
            raise UsageError(f"unknown resource {name!r}: use cpus, gpus, ram or hdd")
    return needs


@dataclass(frozen=True)
class WorkerResources:
    """What a worker offers. `gpu_ids` are device ids for CUDA_VISIBLE_DEVICES."""

    cpus: int
    ram: int
    hdd: int
    gpu_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gpus(self) -> int:
        return len(self.gpu_ids)

    def as_claim(self) -> dict[str, Any]:
        """The `resources` argument of `MetaStore.claim`."""
        return {"cpus": self.cpus, "gpus": self.gpus, "ram": self.ram, "hdd": self.hdd}

    def child_env(self, needs: Mapping[str, Any]) -> dict[str, str]:
        """Environment additions for an experiment with these needs (GPU assignment)."""
        wanted = int(needs.get("gpus") or 0)
        if wanted <= 0:
            return {}
        return {"CUDA_VISIBLE_DEVICES": ",".join(self.gpu_ids[:wanted])}


def detect_gpu_ids(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Device ids this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        # CUDA stops at the first invalid id, e.g. "-1" hides every device.
        valid: list[str] = []
        for v in ids:
            if v.startswith("-"):
                break
            valid.append(v)
        return tuple(valid)
    from studio.capture.host import gpus

    return tuple(str(g["index"]) for g in gpus())


def detect(home: Path, environ: Mapping[str, str] | None = None) -> WorkerResources:
    """CPUs usable by this process, total RAM, free disk under `home`, visible GPUs."""
    import psutil

    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    probe = home
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return WorkerResources(
        cpus=cpus,
        ram=int(psutil.virtual_memory().total),
        hdd=int(shutil.disk_usage(probe).free),
        gpu_ids=detect_gpu_ids(environ),
    )


def with_overrides(found: WorkerResources, overrides: Mapping[str, Any]) -> WorkerResources:
    """Apply the worker's `--cpus/--gpus/--ram/--hdd` flags to what was detected.

    `--gpus N` keeps the first N detected devices, or, when fewer are detected (say, a test
    without GPUs), numbers them 0..N-1.
    """
    given = parse_needs({k: v for k, v in overrides.items() if v is not None})
    gpu_ids = found.gpu_ids
    if "gpus" in given:
        n = given["gpus"]
        gpu_ids = gpu_ids[:n] if len(gpu_ids) >= n else tuple(str(i) for i in range(n))
    return WorkerResources(
        cpus=given.get("cpus", found.cpus),
        ram=given.get("ram", found.ram),
        hdd=given.get("hdd", found.hdd),
        gpu_ids=gpu_ids,
    )
