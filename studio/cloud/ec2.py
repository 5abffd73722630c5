"""EC2 workers: a launch template and an Auto Scaling group per queue (`--cloud=ec2|ec2spot`).

    instance type   the cheapest type that meets --cpus/--gpus/--ram, from DescribeInstanceTypes
                    and on-demand prices (the Pricing API; the shipped table ec2_prices.json only
                    when it cannot be reached). No fit: "no instance type has 8 GPUs and 2 GB RAM".
    ec2             the group launches that type on demand.
    ec2spot         the group's MixedInstancesPolicy lists up to 5 fitting types, all spot,
                    capacity-optimized, with the bid (`0.35` USD or `80%` of the cheapest type's
                    on-demand price) as SpotMaxPrice.
    scaling         desired capacity starts at --num-workers; `studio cloud agent` on the
                    instances raises it toward max_workers while experiments wait, and each
                    worker that exits idle leaves the group with the desired capacity
                    decremented; the last one deletes the group and the template.
    credentials     boto3's chain (`aws configure`, AWS_PROFILE, ...). Instances get their token
                    from the SSM parameter `cloud.tokenParameter` through `cloud.instanceProfile`.

Every resource is named `studio-<queue>` and tagged `studio:queue=<queue>`, `studio:managed=1`.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from importlib import resources as importlib_resources
from typing import Any

from studio.cloud.base import Fleet, Provisioner, WorkerRequest
from studio.cloud.config import CloudConfig
from studio.exceptions import StudioError, UsageError

log = logging.getLogger(__name__)

TAG_QUEUE = "studio:queue"
TAG_MANAGED = "studio:managed"
DEFAULT_IMAGE_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
SPOT_TYPES = 5
RAM_STEP = 256 * 2**20
METADATA_URL = "http://169.254.169.254"


def group_name(queue: str) -> str:
    return "studio-" + re.sub(r"[^A-Za-z0-9._-]", "-", queue)[:100]


def describe_needs(needs: dict[str, int]) -> str:
    parts = []
    if needs.get("cpus"):
        parts.append(f"{needs['cpus']} CPUs")
    if needs.get("gpus"):
        parts.append(f"{needs['gpus']} GPUs")
    if needs.get("ram"):
        gb = needs["ram"] / 2**30
        parts.append(f"{gb:g} GB RAM" if gb >= 1 else f"{needs['ram'] // 2**20} MB RAM")
    if not parts:
        return "any size"
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def offline_prices() -> dict[str, float]:
    text = importlib_resources.files("studio.cloud").joinpath("ec2_prices.json").read_text()
    return {k: float(v) for k, v in json.loads(text)["prices"].items()}


@dataclass(frozen=True)
class InstanceChoice:
    types: tuple[tuple[str, float], ...]  # (type, on-demand USD/hour), cheapest first
    spot_max_price: str | None  # None: on demand; "": spot at up to the on-demand price
    price_source: str  # "pricing-api" or "offline table"

    @property
    def instance_type(self) -> str:
        return self.types[0][0]


def parse_bid(bid: str, on_demand: float) -> str:
    text = bid.strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if percent <= 0:
                raise ValueError
            return f"{on_demand * percent / 100:.4f}"
        value = float(text.lstrip("$"))
        if value <= 0:
            raise ValueError
        return f"{value:.4f}"
    except ValueError:
        raise UsageError(f"--bid {bid!r}: give USD per hour (0.35) or a percentage of the on-demand price (80%)") \
            from None


def gpu_count(info: dict[str, Any]) -> int:
    return sum(int(g.get("Count", 0)) for g in (info.get("GpuInfo") or {}).get("Gpus", []))


def fits(info: dict[str, Any], needs: dict[str, int]) -> bool:
    return (int(info.get("VCpuInfo", {}).get("DefaultVCpus", 0)) >= needs.get("cpus", 0)
            and int(info.get("MemoryInfo", {}).get("SizeInMiB", 0)) * 2**20 >= needs.get("ram", 0)
            and gpu_count(info) >= needs.get("gpus", 0)
            and not info.get("BareMetal", False))


class Ec2Provisioner(Provisioner):
    def __init__(self, settings: Any, kind: str, **options: Any) -> None:
        super().__init__(settings, kind, **options)
        self.cfg = CloudConfig.from_settings(settings)
        self._session: Any = None

    # -- clients -----------------------------------------------------------------------
    def session(self) -> Any:
        if self._session is None:
            import boto3

            session = boto3.session.Session(region_name=self.cfg.region) if self.cfg.region \
                else boto3.session.Session()
            if session.region_name is None:
                raise UsageError("no AWS region: set `cloud.region` in the config or AWS_DEFAULT_REGION")
            if session.get_credentials() is None:
                raise UsageError("no AWS credentials: run `aws configure` (or set AWS_PROFILE / AWS_ACCESS_KEY_ID)")
            self._session = session
        return self._session

    def client(self, service: str, **kw: Any) -> Any:
        return self.session().client(service, **kw)

    def _call(self, what: str, fn: Any, **kw: Any) -> Any:
        import botocore.exceptions

        try:
            return fn(**kw)
        except botocore.exceptions.NoCredentialsError:
            raise UsageError("no AWS credentials: run `aws configure` (or set AWS_PROFILE / AWS_ACCESS_KEY_ID)") \
                from None
        except botocore.exceptions.ClientError as exc:
            err = exc.response.get("Error", {})
            raise StudioError(f"AWS {what} failed: {err.get('Code')}: {err.get('Message')}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise StudioError(f"AWS {what} failed: {exc}") from None

    # -- choosing the instance type ------------------------------------------------------
    def needs(self, request: WorkerRequest) -> dict[str, int]:
        needs = {"cpus": 1, **self.cfg.defaults, **{k: v for k, v in request.resources.items() if v}}
        if needs.get("ram"):
            needs["ram"] = math.ceil(needs["ram"] / RAM_STEP) * RAM_STEP
        return needs

    def instance_types(self) -> list[dict[str, Any]]:
        ec2 = self.client("ec2")
        found: list[dict[str, Any]] = []
        pages = ec2.get_paginator("describe_instance_types").paginate(Filters=[
            {"Name": "current-generation", "Values": ["true"]},
            {"Name": "processor-info.supported-architecture", "Values": ["x86_64"]},
        ])
        def collect() -> None:
            for page in pages:
                found.extend(page["InstanceTypes"])

        self._call("DescribeInstanceTypes", collect)
        return found

    def on_demand_prices(self, types: list[str]) -> tuple[dict[str, float], str]:
        """USD/hour for `types`: the Pricing API, else the shipped table; config overrides win."""
        prices: dict[str, float] = {}
        source = "pricing-api"
        try:
            prices = self._pricing_api(types)
        except Exception as exc:  # any failure of an optional lookup: fall back, say so in the log
            log.info("AWS Pricing API unavailable (%s): using the offline price table", exc)
        if not prices:
            source = "offline table"
            table = offline_prices()
            prices = {t: table[t] for t in types if t in table}
        prices.update({t: p for t, p in self.cfg.prices.items() if t in types})
        return prices, source

    def _pricing_api(self, types: list[str]) -> dict[str, float]:
        from botocore.config import Config

        pricing = self.session().client("pricing", region_name="us-east-1",
                                        config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10))
        region = self.session().region_name
        wanted = set(types)
        prices: dict[str, float] = {}
        filters = [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in (
            ("regionCode", region), ("operatingSystem", "Linux"), ("tenancy", "Shared"),
            ("preInstalledSw", "NA"), ("capacitystatus", "Used"))]
        for page in pricing.get_paginator("get_products").paginate(ServiceCode="AmazonEC2", Filters=filters):
            for item in page["PriceList"]:
                product = json.loads(item) if isinstance(item, str) else item
                itype = product["product"]["attributes"].get("instanceType")
                if itype not in wanted:
                    continue
                for term in product["terms"].get("OnDemand", {}).values():
                    for dim in term["priceDimensions"].values():
                        usd = float(dim["pricePerUnit"].get("USD", 0))
                        if usd > 0:
                            prices[itype] = min(usd, prices.get(itype, usd))
        return prices

    def choose(self, request: WorkerRequest) -> InstanceChoice:
        needs = self.needs(request)
        fitting = [i["InstanceType"] for i in self.instance_types() if fits(i, needs)]
        if not fitting:
            asked = {k: v for k, v in needs.items() if request.resources.get(k)} or needs
            raise UsageError(f"no instance type has {describe_needs(asked)}: ask for less with --cpus/--gpus/--ram")
        prices, source = self.on_demand_prices(fitting)
        ranked = sorted(((t, prices[t]) for t in fitting if t in prices), key=lambda tp: (tp[1], tp[0]))
        if not ranked:
            raise UsageError(f"no price known for the instance types that have {describe_needs(needs)} "
                             f"({', '.join(sorted(fitting)[:5])}, ...): add them to `cloud.prices` in the config")
        if not request.spot:
            return InstanceChoice((ranked[0],), None, source)
        max_price = parse_bid(request.bid, ranked[0][1]) if request.bid else ""
        return InstanceChoice(tuple(ranked[:SPOT_TYPES]), max_price, source)

    # -- the Provisioner interface --------------------------------------------------------
    def prepare(self, request: WorkerRequest) -> dict[str, Any]:
        """Every check and lookup, nothing created: the instance types, the image, the token."""
        choice = self.choose(request)
        ssm = self.client("ssm")
        image = self.cfg.image or self._call(
            "GetParameter", ssm.get_parameter, Name=DEFAULT_IMAGE_PARAMETER)["Parameter"]["Value"]
        token_from = None
        if self.settings.database_url.split(":")[0] in ("http", "https"):
            import botocore.exceptions

            try:  # without decryption: the submitter need not be able to read the token
                reply = ssm.get_parameters(Names=[self.cfg.token_parameter])
            except botocore.exceptions.ClientError as exc:
                raise StudioError(f"AWS SSM failed: {exc}") from None
            if not reply.get("Parameters"):
                raise UsageError(
                    f"no worker token in the SSM parameter {self.cfg.token_parameter}: store one with "
                    f"`aws ssm put-parameter --type SecureString --name {self.cfg.token_parameter} --value ...`")
            token_from = f"ssm:{self.cfg.token_parameter}"
        from studio.cloud.userdata import shared_urls

        shared_urls(self.settings)  # a database or store the instances cannot reach: say so now
        return {"choice": choice, "image": image, "token_from": token_from}

    def ensure_workers(self, request: WorkerRequest, prepared: dict[str, Any] | None = None) -> Fleet:
        plan = prepared or self.prepare(request)
        choice: InstanceChoice = plan["choice"]
        asg = self.client("autoscaling")
        name = group_name(request.queue)
        max_size = max(request.count, request.max_workers or self.cfg.max_workers or request.count)
        existing = self._group(name)
        if existing is not None:
            desired = min(max(existing["DesiredCapacity"], request.count), existing["MaxSize"])
            if desired != existing["DesiredCapacity"]:
                self._call("SetDesiredCapacity", asg.set_desired_capacity, AutoScalingGroupName=name,
                           DesiredCapacity=desired)
            return self._fleet(self._group(name) or existing)
        self._create_template(name, request, plan, max_size)
        tags = [{"Key": TAG_QUEUE, "Value": request.queue, "PropagateAtLaunch": True},
                {"Key": TAG_MANAGED, "Value": "1", "PropagateAtLaunch": True},
                {"Key": "Name", "Value": name, "PropagateAtLaunch": True}]
        spec = {"LaunchTemplateName": name, "Version": "$Latest"}
        kw: dict[str, Any] = {"AutoScalingGroupName": name, "MinSize": 0, "MaxSize": max_size,
                              "DesiredCapacity": request.count, "Tags": tags}
        if self.cfg.subnets:
            kw["VPCZoneIdentifier"] = ",".join(self.cfg.subnets)
        else:
            zones = self._call("DescribeAvailabilityZones", self.client("ec2").describe_availability_zones)
            kw["AvailabilityZones"] = [z["ZoneName"] for z in zones["AvailabilityZones"]
                                       if z.get("State", "available") == "available"]
        if choice.spot_max_price is None:
            kw["LaunchTemplate"] = spec
        else:
            distribution: dict[str, Any] = {"OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0,
                                            "SpotAllocationStrategy": "capacity-optimized"}
            if choice.spot_max_price:
                distribution["SpotMaxPrice"] = choice.spot_max_price
            kw["MixedInstancesPolicy"] = {
                "LaunchTemplate": {"LaunchTemplateSpecification": spec,
                                   "Overrides": [{"InstanceType": t} for t, _ in choice.types]},
                "InstancesDistribution": distribution}
        try:
            self._call("CreateAutoScalingGroup", asg.create_auto_scaling_group, **kw)
        except StudioError:
            self._delete_template(name)  # nothing half-made
            raise
        log.info("created Auto Scaling group %s (%s)", name, choice.instance_type)
        return self._fleet(self._group(name) or {"AutoScalingGroupName": name, "DesiredCapacity": request.count})

    def _create_template(self, name: str, request: WorkerRequest, plan: dict[str, Any], max_size: int) -> None:
        from studio.cloud.userdata import startup_script

        choice: InstanceChoice = plan["choice"]
        needs = self.needs(request)
        script = startup_script(queue=request.queue, backend=self.kind, group=name, settings=self.settings,
                                install=self.cfg.install_spec(self.kind), idle_timeout=request.idle_timeout or self.cfg.idle_timeout,
                                token_from=plan["token_from"], max_workers=max_size,
                                scale_interval=self.cfg.scale_interval)
        data: dict[str, Any] = {
            "ImageId": plan["image"],
            "InstanceType": choice.instance_type,
            "UserData": base64.b64encode(script.encode()).decode(),
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled",
                                "InstanceMetadataTags": "disabled"},
            "InstanceInitiatedShutdownBehavior": "terminate",
            "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {
                "VolumeSize": max(20, math.ceil(needs.get("hdd", 0) / 2**30)), "VolumeType": "gp3",
                "DeleteOnTermination": True}}],
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [
                {"Key": TAG_QUEUE, "Value": request.queue}, {"Key": TAG_MANAGED, "Value": "1"}]}],
        }
        if self.cfg.instance_profile:
            data["IamInstanceProfile"] = {"Name": self.cfg.instance_profile}
        if self.cfg.security_groups:
            data["SecurityGroupIds"] = list(self.cfg.security_groups)
        if self.cfg.key_name:
            data["KeyName"] = self.cfg.key_name
        self._call("CreateLaunchTemplate", self.client("ec2").create_launch_template, LaunchTemplateName=name,
                   LaunchTemplateData=data, TagSpecifications=[{"ResourceType": "launch-template", "Tags": [
                       {"Key": TAG_QUEUE, "Value": request.queue}, {"Key": TAG_MANAGED, "Value": "1"}]}])

    def _group(self, name: str) -> dict[str, Any] | None:
        asg = self.client("autoscaling")
        groups = self._call("DescribeAutoScalingGroups", asg.describe_auto_scaling_groups,
                            AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return groups[0] if groups else None

    def _fleet(self, group: dict[str, Any]) -> Fleet:
        tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
        instances = group.get("Instances", [])
        policy = group.get("MixedInstancesPolicy")
        types = [o["InstanceType"] for o in policy["LaunchTemplate"].get("Overrides", [])] if policy else []
        return Fleet(self.kind, tags.get(TAG_QUEUE, group["AutoScalingGroupName"]), group["AutoScalingGroupName"],
                     desired=int(group.get("DesiredCapacity", 0)),
                     running=sum(1 for i in instances if i.get("LifecycleState") == "InService"),
                     detail={"max": group.get("MaxSize"), "spot": policy is not None,
                             "instance_types": types or None,
                             "spot_max_price": (policy or {}).get("InstancesDistribution", {}).get("SpotMaxPrice")})

    def list_fleets(self, queue: str | None = None) -> list[Fleet]:
        asg = self.client("autoscaling")
        fleets = []
        for page in asg.get_paginator("describe_auto_scaling_groups").paginate(
                Filters=[{"Name": f"tag:{TAG_MANAGED}", "Values": ["1"]}]):
            for group in page["AutoScalingGroups"]:
                fleet = self._fleet(group)
                if queue is None or fleet.queue == queue:
                    fleets.append(fleet)
        return sorted(fleets, key=lambda f: f.name)

    def tear_down(self, queue: str | None = None) -> list[str]:
        asg = self.client("autoscaling")
        removed = []
        for fleet in self.list_fleets(queue):
            self._call("DeleteAutoScalingGroup", asg.delete_auto_scaling_group, AutoScalingGroupName=fleet.name,
                       ForceDelete=True)
            removed.append(fleet.name)
        # Templates outlive a group whose deletion was interrupted: remove those too.
        ec2 = self.client("ec2")
        templates = self._call("DescribeLaunchTemplates", ec2.describe_launch_templates,
                               Filters=[{"Name": f"tag:{TAG_MANAGED}", "Values": ["1"]}])["LaunchTemplates"]
        for t in templates:
            tags = {x["Key"]: x["Value"] for x in t.get("Tags", [])}
            if queue is None or tags.get(TAG_QUEUE) == queue:
                self._delete_template(t["LaunchTemplateName"])
                if t["LaunchTemplateName"] not in removed:
                    removed.append(t["LaunchTemplateName"])
        return removed

    def _delete_template(self, name: str) -> None:
        import botocore.exceptions

        try:
            self.client("ec2").delete_launch_template(LaunchTemplateName=name)
        except botocore.exceptions.ClientError:
            pass  # already gone

    # -- what the agent on an instance asks -------------------------------------------------
    def identity(self) -> str:
        return instance_id()

    def preempted(self) -> bool:
        return interruption_notice()

    def grow(self, group: str, wanted: int) -> int:
        """Raise the desired capacity toward `wanted` (never lower it, never above MaxSize)."""
        current = self._group(group)
        if current is None:
            return 0
        desired = min(max(int(current["DesiredCapacity"]), wanted), int(current["MaxSize"]))
        if desired > current["DesiredCapacity"]:
            self._call("SetDesiredCapacity", self.client("autoscaling").set_desired_capacity,
                       AutoScalingGroupName=group, DesiredCapacity=desired, HonorCooldown=False)
        return desired

    def leave(self, group: str, instance: str, queue_drained: bool) -> str:
        """This instance's worker exited idle: out of the group (desired - 1), or delete the group
        and its template when this was the last instance and the queue is drained."""
        current = self._group(group)
        if current is None:
            return "gone"
        others = [i for i in current.get("Instances", []) if i["InstanceId"] != instance
                  and i.get("LifecycleState") not in ("Terminating", "Terminated", "Terminating:Wait")]
        if queue_drained and not others and int(current["DesiredCapacity"]) <= 1:
            self._call("DeleteAutoScalingGroup", self.client("autoscaling").delete_auto_scaling_group,
                       AutoScalingGroupName=group, ForceDelete=True)
            self._delete_template(group)
            return "deleted"
        self._call("TerminateInstanceInAutoScalingGroup",
                   self.client("autoscaling").terminate_instance_in_auto_scaling_group,
                   InstanceId=instance, ShouldDecrementDesiredCapacity=True)
        # Two instances leaving at once each see the other: the decrements are serialized, so
        # whoever brought the desired capacity to 0 on a drained queue removes the group.
        after = self._group(group) if queue_drained else None
        if after is not None and int(after["DesiredCapacity"]) == 0:
            self._call("DeleteAutoScalingGroup", self.client("autoscaling").delete_auto_scaling_group,
                       AutoScalingGroupName=group, ForceDelete=True)
            self._delete_template(group)
            return "deleted"
        return "left"


def metadata_url() -> str:
    return os.environ.get("STUDIOML_METADATA_URL", METADATA_URL).rstrip("/")


def _imds(path: str, timeout: float = 2.0) -> str | None:
    """GET an EC2 instance-metadata path with an IMDSv2 session token; None on 404."""
    import urllib.error
    import urllib.request

    base = metadata_url()
    req = urllib.request.Request(base + "/latest/api/token", method="PUT",
                                 headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        token = resp.read().decode()
    try:
        with urllib.request.urlopen(urllib.request.Request(
                base + path, headers={"X-aws-ec2-metadata-token": token}), timeout=timeout) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def instance_id() -> str:
    value = _imds("/latest/meta-data/instance-id")
    if not value:
        raise StudioError("no instance id in the EC2 instance metadata")
    return value


def interruption_notice() -> bool:
    """True once EC2 has scheduled this spot instance's interruption (spot/instance-action)."""
    return bool(_imds("/latest/meta-data/spot/instance-action"))
