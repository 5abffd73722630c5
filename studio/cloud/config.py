"""The config's `cloud:` section, validated once with errors that name the key.

```yaml
cloud:
  region: us-east-1           # EC2 (else boto3's configured region)
  projectId: my-project       # GCE (required for gcloud/gcspot)
  zone: us-central1-a         # GCE
  image: ami-0abc...          # EC2 AMI / GCE image (default: Amazon Linux 2023 / Debian 12)
  max_workers: 8              # a fleet grows toward this while work waits
  idleTimeout: 5m             # a cloud worker exits after this long without work
  install: "studio-experiments[aws,postgres,s3]==0.1.0"   # what the instance pip-installs
  tokenParameter: /studio/worker-token        # SSM parameter (EC2) holding the worker's token
  instanceProfile: studio-worker              # EC2 instance profile that may read it
  serviceAccount: studio-worker@P.iam.gserviceaccount.com   # GCE
  subnets: [subnet-1, subnet-2]               # EC2 (default: the region's zones, default VPC)
  securityGroups: [sg-1]
  cpus: 2, ram: 4g, hdd: 30g                  # instance defaults when the run asks for none
  prices: {m5.large: 0.096}                   # USD/hour overrides of the EC2 price table
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from studio import __version__
from studio.exceptions import ConfigError, UsageError


def distribution() -> str:
    """The name studio is installed under from the package index."""
    try:
        from studio._version import DISTRIBUTION  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return "studio"
    return str(DISTRIBUTION)


def install_hint(extra: str) -> str:
    return f"pip install '{distribution()}[{extra}]'"


KNOWN = {"region", "projectId", "zone", "image", "max_workers", "idleTimeout", "install", "tokenParameter",
         "tokenSecret", "instanceProfile", "serviceAccount", "subnets", "securityGroups", "cpus", "ram", "hdd",
         "gpus", "prices", "slurm", "keyName", "network", "scaleInterval", "machinePrefix"}


@dataclass(frozen=True)
class CloudConfig:
    region: str | None = None
    project_id: str | None = None
    zone: str | None = None
    image: str | None = None
    max_workers: int | None = None
    idle_timeout: float = 300.0
    install: str | None = None  # None: the backend's default (see default_install)
    token_parameter: str = "/studio/worker-token"
    token_secret: str | None = None
    instance_profile: str | None = "studio-worker"
    service_account: str | None = None
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    defaults: dict[str, int] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)
    key_name: str | None = None
    network: str | None = None
    scale_interval: float = 30.0

    def install_spec(self, backend: str) -> str:
        """What the instance pip-installs: the submitter's studio version with the backend's extras."""
        if self.install:
            return self.install
        extras = "aws,postgres,s3,remote" if backend.startswith("ec2") else "gcp,postgres,gcs,remote"
        return f"{distribution()}[{extras}]=={__version__}"

    @classmethod
    def from_settings(cls, settings: Any) -> CloudConfig:
        from studio.runner.resources import parse_needs
        from studio.units import parse_duration

        data: dict[str, Any] = dict(settings.cloud or {})
        where = f"config {settings.config_path}" if settings.config_path else "config"
        for key in data:
            if key not in KNOWN:
                raise ConfigError(f"{where}: unknown key `cloud.{key}`; known keys: {', '.join(sorted(KNOWN))}")
        try:
            max_workers = int(data["max_workers"]) if data.get("max_workers") is not None else None
            if max_workers is not None and max_workers < 1:
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: `cloud.max_workers` must be a whole number of at least 1") from None
        prices = data.get("prices") or {}
        if not isinstance(prices, dict) or not all(isinstance(v, int | float) for v in prices.values()):
            raise ConfigError(f"{where}: `cloud.prices` must map instance types to USD per hour")
        for key in ("subnets", "securityGroups"):
            if not isinstance(data.get(key) or [], list):
                raise ConfigError(f"{where}: `cloud.{key}` must be a list")
        try:
            defaults = parse_needs({k: data[k] for k in ("cpus", "gpus", "ram", "hdd") if data.get(k) is not None})
            idle = parse_duration(data.get("idleTimeout", "5m"))
            interval = parse_duration(data.get("scaleInterval", "30s"))
        except UsageError as exc:
            raise ConfigError(f"{where}: cloud: {exc}") from None
        return cls(
            region=data.get("region"), project_id=data.get("projectId"), zone=data.get("zone"),
            image=data.get("image"), max_workers=max_workers, idle_timeout=idle,
            install=str(data["install"]) if data.get("install") else None, token_parameter=str(data.get("tokenParameter")
                                                                                  or cls.token_parameter),
            token_secret=data.get("tokenSecret"), instance_profile=data.get("instanceProfile", cls.instance_profile),
            service_account=data.get("serviceAccount"), subnets=tuple(data.get("subnets") or ()),
            security_groups=tuple(data.get("securityGroups") or ()), defaults=defaults,
            prices={str(k): float(v) for k, v in prices.items()}, key_name=data.get("keyName"),
            network=data.get("network"), scale_interval=interval,
        )
