"""Pure logic of the cloud backends: bids, fitting types, machine types, URLs, config, tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio import __version__ as VERSION
from studio.cloud import check_kind, provisioner
from studio.cloud.config import CloudConfig, distribution
from studio.cloud.ec2 import describe_needs, fits, group_name, offline_prices, parse_bid
from studio.cloud.gce import machine_type, resource_name
from studio.cloud.secrets import resolve_token
from studio.cloud.userdata import shared_urls, startup_script
from studio.config import load_settings
from studio.exceptions import ConfigError, UsageError

GiB = 2**30
DIST = distribution()


def settings(tmp_path: Path, config: str = "", **env: str):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    if config:
        (home / "config.yaml").write_text(config)
    return load_settings(environ={"STUDIOML_HOME": str(home), **env})


def test_bids() -> None:
    assert parse_bid("0.35", 1.0) == "0.3500"
    assert parse_bid("$0.5", 1.0) == "0.5000"
    assert parse_bid("80%", 0.526) == "0.4208"
    for bad in ("cheap", "-1", "0%", "%"):
        with pytest.raises(UsageError):
            parse_bid(bad, 1.0)


def test_fitting_types() -> None:
    gpu = {"VCpuInfo": {"DefaultVCpus": 4}, "MemoryInfo": {"SizeInMiB": 16384},
           "GpuInfo": {"Gpus": [{"Count": 1}]}}
    assert fits(gpu, {"cpus": 4, "ram": 16 * GiB, "gpus": 1})
    assert not fits(gpu, {"gpus": 2}) and not fits(gpu, {"cpus": 5}) and not fits(gpu, {"ram": 17 * GiB})
    assert not fits({**gpu, "BareMetal": True}, {})
    assert describe_needs({"gpus": 8, "ram": 2 * GiB}) == "8 GPUs and 2 GB RAM"
    assert describe_needs({"cpus": 2, "gpus": 1, "ram": 512 * 2**20}) == "2 CPUs, 1 GPUs and 512 MB RAM"


def test_price_table_and_names() -> None:
    prices = offline_prices()
    assert prices["t3.micro"] < prices["m5.large"] < prices["p3.2xlarge"]
    assert group_name("a b/c") == "studio-a-b-c"
    assert resource_name("My_Queue.1") == "studio-my-queue-1"
    assert len(resource_name("x" * 100)) <= 63


def test_gce_machine_types() -> None:
    assert machine_type({}) == "custom-1-1024"
    assert machine_type({"cpus": 2, "ram": 8 * GiB}) == "custom-2-8192"
    assert machine_type({"cpus": 4}) == "custom-4-4096"  # at least 1 GB per CPU
    assert machine_type({"cpus": 1, "ram": 13 * GiB}) == "custom-2-13312"  # at most 6.5 GB per CPU
    assert machine_type({"cpus": 3}) == "custom-4-4096"  # even CPU counts
    with pytest.raises(UsageError, match="96 CPUs"):
        machine_type({"cpus": 128})


def test_shared_urls_drop_the_password(tmp_path: Path) -> None:
    s = settings(tmp_path, STUDIOML_DATABASE_URL="postgresql+psycopg://me:pw@db:5432/studio",
                 STUDIOML_STORAGE_URL="s3://b/p")
    assert shared_urls(s) == ("postgresql+psycopg://me@db:5432/studio", "s3://b/p")
    with pytest.raises(UsageError, match="cannot reach the database sqlite"):
        shared_urls(settings(tmp_path, STUDIOML_STORAGE_URL="s3://b/p"))
    with pytest.raises(UsageError, match="local object store"):
        shared_urls(settings(tmp_path, STUDIOML_DATABASE_URL="postgresql+psycopg://me@db/studio"))
    # A studio server is the object store of its clients too: workers need only its URL.
    served = settings(tmp_path, STUDIOML_DATABASE_URL="https://studio.example.org")
    assert shared_urls(served) == ("https://studio.example.org", "https://studio.example.org")
    script = startup_script(queue="q", backend="ec2", group="studio-q", settings=s, install="studio==1",
                            idle_timeout=60, token_from=None, max_workers=2)
    assert "pw" not in script.replace("python3", "") and "url: postgresql+psycopg://me@db:5432/studio" in script


def test_cloud_config(tmp_path: Path) -> None:
    cfg = CloudConfig.from_settings(settings(tmp_path, "cloud:\n  max_workers: 4\n  idleTimeout: 2m\n  ram: 8g\n"))
    assert (cfg.max_workers, cfg.idle_timeout, cfg.defaults) == (4, 120.0, {"ram": 8 * GiB})
    assert cfg.install_spec("ec2spot") == f"{DIST}[aws,postgres,s3,remote]=={VERSION}"
    assert cfg.install_spec("gcloud") == f"{DIST}[gcp,postgres,gcs,remote]=={VERSION}"
    for bad, message in (("cloud:\n  max_workers: 0\n", "max_workers"), ("cloud:\n  regoin: x\n", "cloud.regoin"),
                         ("cloud:\n  ram: lots\n", "cloud:"), ("cloud:\n  prices: {m5.large: cheap}\n", "prices")):
        with pytest.raises(ConfigError, match=message):
            CloudConfig.from_settings(settings(tmp_path, bad))


def test_kinds(tmp_path: Path) -> None:
    assert check_kind("EC2spot") == "ec2spot"
    with pytest.raises(UsageError, match="unknown cloud 'azure'"):
        check_kind("azure")
    with pytest.raises(UsageError, match="unknown worker backend"):
        provisioner("lsf", settings(tmp_path))


def test_token_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "t-1")
    assert resolve_token("env:MY_TOKEN") == "t-1"
    (tmp_path / "tok").write_text("t-2\n")
    assert resolve_token(f"file:{tmp_path / 'tok'}") == "t-2"
    for bad, message in (("vault:x", "use one of"), ("env:NOPE_NOT_SET", "is not set"),
                         (f"file:{tmp_path / 'missing'}", "cannot read")):
        with pytest.raises(UsageError, match=message):
            resolve_token(bad)


def test_token_from_ssm_and_secrets_manager(s3_server, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import boto3

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    boto3.client("ssm").put_parameter(Name="/unit/token", Value="t-ssm", Type="SecureString", Overwrite=True)
    boto3.client("secretsmanager").create_secret(Name="unit-token-secret", SecretString="t-sm")
    assert resolve_token("ssm:/unit/token") == "t-ssm"
    assert resolve_token("secretsmanager:unit-token-secret") == "t-sm"
    from studio.exceptions import StudioError

    with pytest.raises(StudioError, match="check that the instance role may read it"):
        resolve_token("ssm:/unit/missing")


def test_missing_sdk_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import studio.cloud as cloud
    from studio.exceptions import MissingDependencyError

    monkeypatch.setattr(cloud, "_importable", lambda module: False)
    with pytest.raises(MissingDependencyError, match=r"pip install '[-a-z]+\[gcp\]'"):
        provisioner("gcspot", settings(tmp_path))
    with pytest.raises(MissingDependencyError, match=r"pip install '[-a-z]+\[aws\]'"):
        provisioner("ec2", settings(tmp_path))


def test_importable() -> None:
    from studio.cloud import _importable

    assert _importable("json") and not _importable("no_such_pkg.sub") and not _importable("no_such_pkg_x")


def test_two_instances_leaving_at_once_still_delete_the_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A and B leave together; each sees the other still in service, so neither takes the
    last-one path; B's decrement brings the desired capacity to 0, so B deletes the group."""
    from studio.cloud.ec2 import Ec2Provisioner

    backend = Ec2Provisioner(settings(tmp_path, "cloud:\n  region: us-east-1\n"), kind="ec2")
    group = {"DesiredCapacity": 2, "Instances": [{"InstanceId": "i-a", "LifecycleState": "InService"},
                                                {"InstanceId": "i-b", "LifecycleState": "InService"}]}
    calls: list[str] = []

    def call(what: str, fn, **kw):  # type: ignore[no-untyped-def]
        calls.append(what)
        if what == "TerminateInstanceInAutoScalingGroup":
            group["DesiredCapacity"] -= 1  # type: ignore[operator]

    class Client:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return lambda **kw: None

    monkeypatch.setattr(backend, "_group", lambda name: dict(group))
    monkeypatch.setattr(backend, "_call", call)
    monkeypatch.setattr(backend, "client", lambda service: Client())
    assert backend.leave("studio-q", "i-a", queue_drained=True) == "left"
    assert backend.leave("studio-q", "i-b", queue_drained=True) == "deleted"
    assert calls == ["TerminateInstanceInAutoScalingGroup", "TerminateInstanceInAutoScalingGroup",
                     "DeleteAutoScalingGroup"]


def test_pricing_api_answer_is_parsed_and_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pricing API's GetProducts answer (botocore's Stubber checks the request against the
    service model), parsed into USD per hour; `cloud.prices` still wins over it."""
    import json

    import boto3
    from botocore.stub import ANY, Stubber

    from studio.cloud.ec2 import Ec2Provisioner

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    backend = Ec2Provisioner(settings(tmp_path, "cloud:\n  region: eu-west-1\n  prices: {m5.large: 0.01}\n"),
                             kind="ec2")
    pricing = boto3.client("pricing", region_name="us-east-1")

    def product(itype: str, usd: str) -> str:
        return json.dumps({"product": {"attributes": {"instanceType": itype}}, "terms": {"OnDemand": {"t": {
            "priceDimensions": {"d": {"pricePerUnit": {"USD": usd}}}}}}})

    stub = Stubber(pricing)
    stub.add_response("get_products", {"PriceList": [product("t3.large", "0.0912"), product("c5.large", "0.0960"),
                                                     product("m5.large", "0.1070"), product("x1.huge", "9")],
                                       "FormatVersion": "aws_v1"},
                      {"ServiceCode": "AmazonEC2", "Filters": ANY})
    stub.activate()
    monkeypatch.setattr(backend.session(), "client", lambda service, **kw: pricing)
    prices, source = backend.on_demand_prices(["t3.large", "c5.large", "m5.large"])
    assert source == "pricing-api"
    assert prices == {"t3.large": 0.0912, "c5.large": 0.096, "m5.large": 0.01}
    stub.assert_no_pending_responses()
