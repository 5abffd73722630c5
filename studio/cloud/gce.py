"""GCE workers: an instance template and a zonal managed instance group per queue
(`--cloud=gcloud|gcspot`, `studio-experiments[gcp]`, google-cloud-compute over REST).

    machine type   a custom type (`custom-<cpus>-<MB>`) meeting --cpus/--ram, with RAM per CPU
                   kept between 1 and 6.5 GB (the seed: no extended memory) and N1 T4 GPUs for
                   --gpus; the disk sized by --hdd
    gcspot         the template's scheduling uses the SPOT provisioning model (the group
                   recreates preempted instances); --bid does not apply (fixed prices)
    size           the group's target size is --num-workers (the seed: no autoscaling on a
                   queue); `studio cloud agent` resizes it toward max_workers while work
                   waits, and a worker that exits idle deletes its own instance from the group
                   (target size - 1); the last one deletes the group and the template
    credentials    Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS); the
                   instances' service account reads the worker token from Secret Manager

`STUDIOML_GCE_ENDPOINT` (http://host:port) points the client at another endpoint (tests).
"""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Any

from studio.cloud.base import Fleet, Provisioner, WorkerRequest
from studio.cloud.config import CloudConfig
from studio.exceptions import StudioError, UsageError

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "projects/debian-cloud/global/images/family/debian-12"
DEFAULT_ZONE = "us-central1-a"
GB = 2**30
METADATA_URL = "http://metadata.google.internal"


def resource_name(queue: str) -> str:
    name = re.sub(r"[^a-z0-9-]", "-", queue.lower())
    return ("studio-" + name)[:63].rstrip("-")


def machine_type(needs: dict[str, int]) -> str:
    """`custom-CPUS-MB`: at least the asked CPUs and RAM, 1-6.5 GB per CPU, even CPU counts."""
    cpus = max(1, needs.get("cpus", 1))
    ram_mb = math.ceil(needs.get("ram", 0) / 2**20 / 256) * 256
    cpus = max(cpus, math.ceil(ram_mb / 6656))  # more RAM than 6.5 GB per CPU: more CPUs
    if cpus > 1 and cpus % 2:
        cpus += 1
    if cpus > 96:
        raise UsageError(f"no machine type has {cpus} CPUs: ask for at most 96 CPUs (and 624 GB RAM)")
    ram_mb = max(ram_mb, cpus * 1024)
    return f"custom-{cpus}-{ram_mb}"


class GceProvisioner(Provisioner):
    def __init__(self, settings: Any, kind: str, **options: Any) -> None:
        super().__init__(settings, kind, **options)
        self.cfg = CloudConfig.from_settings(settings)
        self._credentials: Any = None

    # -- clients -----------------------------------------------------------------------
    @property
    def project(self) -> str:
        if not self.cfg.project_id:
            raise UsageError("cloud.projectId is not set: add `cloud: {projectId: <your Google Cloud project>}` "
                             "to the config (docs/cloud.md)")
        return self.cfg.project_id

    @property
    def zone(self) -> str:
        return self.cfg.zone or DEFAULT_ZONE

    def credentials(self) -> Any:
        if self._credentials is None:
            import google.auth
            import google.auth.exceptions

            try:
                self._credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            except google.auth.exceptions.DefaultCredentialsError as exc:
                first = str(exc).splitlines()[0]
                raise UsageError(f"no Google Cloud credentials ({first[:120]}): set GOOGLE_APPLICATION_CREDENTIALS "
                                 "to a service-account key file") from None
        return self._credentials

    def client(self, name: str) -> Any:
        from google.cloud import compute_v1

        cls = getattr(compute_v1, name)
        endpoint = os.environ.get("STUDIOML_GCE_ENDPOINT")
        if endpoint:  # a local endpoint (tests): plain http, no token exchange
            from google.auth.credentials import AnonymousCredentials

            scheme, _, host = endpoint.partition("://")
            transport_cls = cls.get_transport_class("rest")
            return cls(transport=transport_cls(host=host, credentials=AnonymousCredentials(), url_scheme=scheme))
        return cls(credentials=self.credentials(), transport="rest")

    def _call(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        from google.api_core import exceptions as gexc

        try:
            result = fn(*args, **kw)
            if hasattr(result, "result") and callable(result.result) and what.endswith(("insert", "delete")):
                result.result(timeout=300)
            return result
        except gexc.NotFound:
            raise
        except gexc.GoogleAPICallError as exc:
            raise StudioError(f"Google Compute {what} failed: {exc.message}") from None

    # -- the Provisioner interface ----------------------------------------------------------
    def needs(self, request: WorkerRequest) -> dict[str, int]:
        return {**self.cfg.defaults, **{k: v for k, v in request.resources.items() if v}}

    def prepare(self, request: WorkerRequest) -> dict[str, Any]:
        self.project  # noqa: B018 - raises without projectId
        if not os.environ.get("STUDIOML_GCE_ENDPOINT"):
            self.credentials()
        from studio.cloud.userdata import shared_urls

        needs = self.needs(request)
        mtype = machine_type(needs)
        shared_urls(self.settings)
        token_from = None
        if self.settings.database_url.split(":")[0] in ("http", "https"):
            token_from = self.cfg.token_secret and f"gcpsecret:{self.cfg.token_secret}"
            if not token_from:
                raise UsageError("set `cloud.tokenSecret` (a Secret Manager secret holding the worker token) "
                                 "for workers that reach a studio server")
        return {"machine_type": mtype, "token_from": token_from, "needs": needs}

    def template_body(self, request: WorkerRequest, plan: dict[str, Any], name: str, max_size: int) -> Any:
        from google.cloud import compute_v1

        from studio.cloud.userdata import startup_script

        needs = plan["needs"]
        script = startup_script(queue=request.queue, backend=self.kind, group=name, settings=self.settings,
                                install=self.cfg.install_spec(self.kind),
                                idle_timeout=request.idle_timeout or self.cfg.idle_timeout,
                                token_from=plan["token_from"], max_workers=max_size,
                                scale_interval=self.cfg.scale_interval)
        scheduling = compute_v1.Scheduling(automatic_restart=False, on_host_maintenance="TERMINATE")
        if request.spot:
            scheduling.provisioning_model = "SPOT"
            scheduling.instance_termination_action = "DELETE"
        props = compute_v1.InstanceProperties(
            machine_type=plan["machine_type"],
            disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=compute_v1.AttachedDiskInitializeParams(
                source_image=self.cfg.image or DEFAULT_IMAGE,
                disk_size_gb=max(20, math.ceil(needs.get("hdd", 0) / GB))))],
            network_interfaces=[compute_v1.NetworkInterface(
                network=self.cfg.network or "global/networks/default",
                access_configs=[compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")])],
            metadata=compute_v1.Metadata(items=[compute_v1.Items(key="startup-script", value=script)]),
            service_accounts=[compute_v1.ServiceAccount(email=self.cfg.service_account or "default",
                                                        scopes=["https://www.googleapis.com/auth/cloud-platform"])],
            scheduling=scheduling,
            labels={"studio-managed": "1", "studio-queue": resource_name(request.queue)[7:]},
        )
        if needs.get("gpus"):
            props.guest_accelerators = [compute_v1.AcceleratorConfig(accelerator_type="nvidia-tesla-t4",
                                                                     accelerator_count=needs["gpus"])]
        return compute_v1.InstanceTemplate(name=name, description=f"studio workers for queue {request.queue}",
                                           properties=props)

    def ensure_workers(self, request: WorkerRequest, prepared: dict[str, Any] | None = None) -> Fleet:
        from google.api_core import exceptions as gexc
        from google.cloud import compute_v1

        plan = prepared or self.prepare(request)
        name = resource_name(request.queue)
        max_size = max(request.count, request.max_workers or self.cfg.max_workers or request.count)
        migs = self.client("InstanceGroupManagersClient")
        try:
            current = migs.get(project=self.project, zone=self.zone, instance_group_manager=name)
        except gexc.NotFound:
            current = None
        if current is not None:
            if current.target_size < request.count:
                self._call("resize", migs.resize, project=self.project, zone=self.zone, instance_group_manager=name,
                           size=request.count)
            return self._fleet(migs.get(project=self.project, zone=self.zone, instance_group_manager=name))
        templates = self.client("InstanceTemplatesClient")
        body = self.template_body(request, plan, name, max_size)
        self._call("instanceTemplates.insert", templates.insert, project=self.project, instance_template_resource=body)
        manager = compute_v1.InstanceGroupManager(
            name=name, base_instance_name=name[:58], target_size=request.count,
            instance_template=f"projects/{self.project}/global/instanceTemplates/{name}",
            description=f"studio workers for queue {request.queue}")
        try:
            self._call("instanceGroupManagers.insert", migs.insert, project=self.project, zone=self.zone,
                       instance_group_manager_resource=manager)
        except StudioError:
            self._delete_template(name)
            raise
        return self._fleet(migs.get(project=self.project, zone=self.zone, instance_group_manager=name))

    def _fleet(self, mig: Any) -> Fleet:
        queue = mig.description.removeprefix("studio workers for queue ")
        return Fleet(self.kind, queue, mig.name, desired=int(mig.target_size),
                     running=int(mig.current_actions.none) if mig.current_actions else 0,
                     detail={"zone": self.zone, "template": mig.instance_template.rsplit("/", 1)[-1]})

    def list_fleets(self, queue: str | None = None) -> list[Fleet]:
        migs = self.client("InstanceGroupManagersClient")
        fleets = [self._fleet(m) for m in migs.list(project=self.project, zone=self.zone)
                  if m.name.startswith("studio-") and m.description.startswith("studio workers for queue ")]
        return sorted((f for f in fleets if queue is None or f.queue == queue), key=lambda f: f.name)

    def tear_down(self, queue: str | None = None) -> list[str]:
        migs = self.client("InstanceGroupManagersClient")
        removed = []
        for fleet in self.list_fleets(queue):
            self._call("instanceGroupManagers.delete", migs.delete, project=self.project, zone=self.zone,
                       instance_group_manager=fleet.name)
            removed.append(fleet.name)
        templates = self.client("InstanceTemplatesClient")
        for t in templates.list(project=self.project):
            if t.name.startswith("studio-") and t.description.startswith("studio workers for queue ") and (
                    queue is None or t.description == f"studio workers for queue {queue}"):
                self._delete_template(t.name)
                if t.name not in removed:
                    removed.append(t.name)
        return removed

    def _delete_template(self, name: str) -> None:
        from google.api_core import exceptions as gexc

        try:
            self._call("instanceTemplates.delete", self.client("InstanceTemplatesClient").delete,
                       project=self.project, instance_template=name)
        except gexc.NotFound:
            pass

    # -- what the agent on an instance asks -------------------------------------------------
    def identity(self) -> str:
        return _metadata("instance/name") or ""

    def preempted(self) -> bool:
        return (_metadata("instance/preempted") or "").strip().upper() == "TRUE"

    def grow(self, group: str, wanted: int) -> int:
        migs = self.client("InstanceGroupManagersClient")
        mig = migs.get(project=self.project, zone=self.zone, instance_group_manager=group)
        max_size = wanted  # the agent already capped it at max_workers
        if mig.target_size < max_size:
            self._call("resize", migs.resize, project=self.project, zone=self.zone, instance_group_manager=group,
                       size=max_size)
        return max(int(mig.target_size), max_size)

    def leave(self, group: str, instance: str, queue_drained: bool) -> str:
        from google.api_core import exceptions as gexc
        from google.cloud import compute_v1

        migs = self.client("InstanceGroupManagersClient")
        try:
            mig = migs.get(project=self.project, zone=self.zone, instance_group_manager=group)
        except gexc.NotFound:
            return "gone"
        if queue_drained and mig.target_size <= 1:
            self._call("instanceGroupManagers.delete", migs.delete, project=self.project, zone=self.zone,
                       instance_group_manager=group)
            self._delete_template(group)
            return "deleted"
        url = f"zones/{self.zone}/instances/{instance}"
        self._call("deleteInstances", migs.delete_instances, project=self.project, zone=self.zone,
                   instance_group_manager=group,
                   instance_group_managers_delete_instances_request_resource=(
                       compute_v1.InstanceGroupManagersDeleteInstancesRequest(instances=[url])))
        if queue_drained:  # the last of several leaving at once removes the group
            after = migs.get(project=self.project, zone=self.zone, instance_group_manager=group)
            if after.target_size == 0:
                self._call("instanceGroupManagers.delete", migs.delete, project=self.project, zone=self.zone,
                           instance_group_manager=group)
                self._delete_template(group)
                return "deleted"
        return "left"


def _metadata(path: str) -> str | None:
    import urllib.error
    import urllib.request

    base = os.environ.get("STUDIOML_METADATA_URL", METADATA_URL).rstrip("/")
    req = urllib.request.Request(f"{base}/computeMetadata/v1/{path}", headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
