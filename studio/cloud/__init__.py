"""Workers that someone else's machinery starts: a cluster scheduler or a cloud's own groups.

    Provisioner   the one interface (base.py): ensure workers for a queue, list, tear down
    slurm         an array job of `studio worker` through sbatch/squeue/scancel (slurm.py)
    ec2           a launch template + Auto Scaling group, spot through its instance
                  distribution (ec2.py, `studio-experiments[aws]`)
    gce           an instance template + managed instance group (gce.py, `studio-experiments[gcp]`)

Nothing here schedules experiments: workers claim them from the queue like any other worker.
Backends are imported only when asked for, so `import studio` stays cheap and a missing SDK
fails with the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.cloud.base import Provisioner

# kind -> (module:class, extra to install, the SDK module it needs)
BACKENDS: dict[str, tuple[str, str | None, str | None]] = {
    "slurm": ("studio.cloud.slurm:SlurmProvisioner", None, None),
    "ec2": ("studio.cloud.ec2:Ec2Provisioner", "aws", "boto3"),
    "ec2spot": ("studio.cloud.ec2:Ec2Provisioner", "aws", "boto3"),
    "gcloud": ("studio.cloud.gce:GceProvisioner", "gcp", "google.cloud.compute_v1"),
    "gcspot": ("studio.cloud.gce:GceProvisioner", "gcp", "google.cloud.compute_v1"),
}
CLOUDS = ("ec2", "ec2spot", "gcloud", "gcspot")
SPOT = ("ec2spot", "gcspot")


def check_kind(kind: str) -> str:
    from studio.exceptions import UsageError

    name = kind.strip().lower()
    if name not in CLOUDS:
        raise UsageError(f"unknown cloud {kind!r}: use --cloud with one of {', '.join(CLOUDS)}")
    return name


def provisioner(kind: str, settings: Any, **options: Any) -> Provisioner:
    """The backend for `kind` (slurm, ec2, ec2spot, gcloud, gcspot), its SDK imported now."""
    from studio.exceptions import MissingDependencyError, UsageError

    try:
        target, extra, sdk = BACKENDS[kind]
    except KeyError:
        raise UsageError(f"unknown worker backend {kind!r}: use one of {', '.join(BACKENDS)}") from None
    if sdk is not None and not _importable(sdk):
        from studio.cloud.config import install_hint

        raise MissingDependencyError(f"--cloud {kind} needs {sdk}: install it with `{install_hint(extra or '')}`")
    module, cls = target.split(":")
    backend: Provisioner = getattr(importlib.import_module(module), cls)(settings, kind=kind, **options)
    return backend


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False
