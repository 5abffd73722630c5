"""`studio run --cloud=gcloud|gcspot` through google-cloud-compute against a local fake of the
Compute REST API that checks every request body against the API's types."""

from __future__ import annotations

from pathlib import Path

from studio import __version__ as VERSION
from studio.cloud import provisioner
from studio.cloud.config import distribution
from studio.config import load_settings
from tests.e2e.helpers import studio, studio_json
from tests.e2e.test_worker import write
from tests.e2e.test_worker_two_machines import machine
from tests.fixtures.gce import FakeCompute
from tests.fixtures.s3 import S3Storage

DIST = distribution()


def setup(tmp_path: Path, postgres_url: str, s3_storage: S3Storage, gce_api: FakeCompute) -> tuple[Path, dict]:
    env = machine(tmp_path / "laptop", postgres_url, s3_storage,
                  "cloud:\n  projectId: my-project\n  zone: europe-west4-a\n  max_workers: 5\n  idleTimeout: 2m\n")
    env["STUDIOML_GCE_ENDPOINT"] = gce_api.endpoint
    studio("db", "upgrade", env=env, check=True)
    work = tmp_path / "w"
    write(work / "train.py", "print('hi')\n")
    return work, env


def test_gcspot_template_group_and_down(tmp_path: Path, postgres_url: str, s3_storage: S3Storage,
                                        gce_api: FakeCompute) -> None:
    work, env = setup(tmp_path, postgres_url, s3_storage, gce_api)
    proc = studio("run", "--cloud=gcspot", "--queue", "Exp_Q1", "--num-workers", "3", "--cpus", "2", "--ram", "8g",
                  "--hdd", "50g", "--bid", "0.1", "train.py", cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "--bid is ignored on gcspot" in proc.stderr
    template = gce_api.templates["studio-exp-q1"]
    props = template["properties"]
    assert props["machineType"] == "custom-2-8192"
    assert props["scheduling"]["provisioningModel"] == "SPOT"
    assert props["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert props["disks"][0]["initializeParams"]["diskSizeGb"] == "50"
    script = props["metadata"]["items"][0]["value"]
    assert props["metadata"]["items"][0]["key"] == "startup-script"
    assert "cloud agent --backend gcspot --group studio-exp-q1 --queue Exp_Q1 --timeout 120s --max-workers 5" \
        in script
    assert f"'{DIST}[gcp,postgres,gcs,remote]=={VERSION}'" in script
    group = gce_api.groups["studio-exp-q1"]
    assert group["targetSize"] == 3 and group["zone"] == "europe-west4-a"
    assert group["instanceTemplate"] == "projects/my-project/global/instanceTemplates/studio-exp-q1"
    assert [r["name"] for r in studio_json("queue", "list", env=env)] == ["Exp_Q1"]

    listed = studio_json("cloud", "list", "--cloud", "gcloud", env=env)
    assert [(f["name"], f["queue"], f["desired"]) for f in listed] == [("studio-exp-q1", "Exp_Q1", 3)]
    # A second submit to the queue grows the group; it never shrinks it.
    studio("run", "--cloud=gcspot", "--queue", "Exp_Q1", "--num-workers", "4", "--cpus", "2", "--ram", "8g",
           "train.py", cwd=work, env=env, check=True)
    assert gce_api.groups["studio-exp-q1"]["targetSize"] == 4
    proc = studio("cloud", "down", "--cloud", "gcloud", "Exp_Q1", env=env, check=True)
    assert "studio-exp-q1" in proc.stderr
    assert gce_api.groups == {} and gce_api.templates == {}


def test_gcloud_on_demand_gpus(tmp_path: Path, postgres_url: str, s3_storage: S3Storage,
                               gce_api: FakeCompute) -> None:
    work, env = setup(tmp_path, postgres_url, s3_storage, gce_api)
    proc = studio("run", "--cloud=gcloud", "--queue", "g", "--gpus", "1", "--cpus", "3", "--ram", "30g", "train.py",
                  cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    props = gce_api.templates["studio-g"]["properties"]
    # 3 CPUs, 30 GB: 5 CPUs for at most 6.5 GB each, rounded up to an even count.
    assert props["machineType"] == "custom-6-30720"
    assert "provisioningModel" not in props["scheduling"]
    assert props["guestAccelerators"] == [{"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": 1}]
    assert gce_api.groups["studio-g"]["targetSize"] == 1


def test_agent_side_resize_leave_and_delete(tmp_path: Path, postgres_url: str, s3_storage: S3Storage,
                                            gce_api: FakeCompute, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    work, env = setup(tmp_path, postgres_url, s3_storage, gce_api)
    studio("run", "--cloud=gcspot", "--queue", "a", "--num-workers", "2", "train.py", cwd=work, env=env, check=True)
    monkeypatch.setenv("STUDIOML_GCE_ENDPOINT", gce_api.endpoint)
    backend = provisioner("gcspot", load_settings(environ={"STUDIOML_HOME": env["STUDIOML_HOME"]}))
    assert backend.grow("studio-a", 5) == 5  # type: ignore[attr-defined]
    assert gce_api.groups["studio-a"]["targetSize"] == 5
    assert backend.leave("studio-a", "studio-a-x1", queue_drained=False) == "left"  # type: ignore[attr-defined]
    assert gce_api.groups["studio-a"]["targetSize"] == 4
    assert ("POST", "/compute/v1/projects/my-project/zones/europe-west4-a/instanceGroupManagers/studio-a/"
            "deleteInstances") in gce_api.calls
    for _ in range(3):
        backend.leave("studio-a", "studio-a-x", queue_drained=True)  # type: ignore[attr-defined]
    assert backend.leave("studio-a", "studio-a-y", queue_drained=True) == "deleted"  # type: ignore[attr-defined]
    assert gce_api.groups == {} and gce_api.templates == {}
