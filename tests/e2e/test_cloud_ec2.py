"""`studio run --cloud=ec2|ec2spot` against a real AWS API server on loopback (moto_server):
EC2, Auto Scaling, SSM. The simulated cloud (tests/fixtures/simcloud.py) then runs each
instance's user data, so real workers drain the queue and take their group down."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

from studio import __version__ as VERSION
from studio.cloud.config import distribution
from studio.exceptions import UsageError
from tests.e2e.helpers import studio, studio_json
from tests.e2e.test_worker import write
from tests.e2e.test_worker_two_machines import machine, with_password_role
from tests.fixtures.s3 import ACCESS_KEY, SECRET_KEY, S3Storage
from tests.fixtures.simcloud import SimCloud

TOKEN = "tok-cloud-submitter-7f2a9c"

DIST = distribution()


def aws(storage: S3Storage, service: str) -> Any:
    return boto3.client(service, endpoint_url=storage.server.endpoint, region_name="us-east-1",
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


def submitter(tmp_path: Path, db_url: str, storage: S3Storage, cloud: str) -> dict[str, str]:
    env = machine(tmp_path / "laptop", db_url, storage, f"cloud:\n{cloud}")
    env["STUDIOML_API_TOKEN"] = TOKEN  # the submitter's own; must never reach the cloud
    return env


def group_of(storage: S3Storage, queue: str) -> dict[str, Any] | None:
    groups = aws(storage, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"studio-{queue}"])["AutoScalingGroups"]
    return groups[0] if groups else None


def template_data(storage: S3Storage, queue: str) -> dict[str, Any]:
    versions = aws(storage, "ec2").describe_launch_template_versions(LaunchTemplateName=f"studio-{queue}")
    return versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]


def templates_of(storage: S3Storage, queue: str) -> list[str]:
    found = aws(storage, "ec2").describe_launch_templates()["LaunchTemplates"]
    return [t["LaunchTemplateName"] for t in found if t["LaunchTemplateName"] == f"studio-{queue}"]


def assert_no_secret(text: str, db_password: str) -> None:
    for secret in (SECRET_KEY, ACCESS_KEY, db_password, TOKEN):
        assert secret not in text


def test_on_demand_cheapest_type_and_clean_user_data(tmp_path: Path, postgres_url: str,
                                                     s3_storage: S3Storage) -> None:
    db_url, db_password = with_password_role(postgres_url)
    env = submitter(tmp_path, db_url, s3_storage, "  region: us-east-1\n  max_workers: 3\n  idleTimeout: 90s\n")
    studio("db", "upgrade", env=env, check=True)
    work = tmp_path / "w"
    write(work / "train.py", "print('hello')\n")
    proc = studio("run", "--cloud=ec2", "--cpus", "4", "--ram", "15g", "--num-workers", "2", "train.py",
                  cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    key = proc.stdout.strip().splitlines()[-1]
    queue = studio_json("runs", "show", key, env=env)["queue"]
    assert queue.startswith("cloud-")
    assert "t3a.xlarge" in proc.stderr and "offline table" in proc.stderr
    group = group_of(s3_storage, queue)
    assert group is not None
    assert (group["DesiredCapacity"], group["MinSize"], group["MaxSize"]) == (2, 0, 3)
    assert "MixedInstancesPolicy" not in group and group["LaunchTemplate"]["LaunchTemplateName"] == f"studio-{queue}"
    data = template_data(s3_storage, queue)
    # 4 vCPUs and 15 GiB: t3a.xlarge (4, 16 GiB, $0.1504/h) beats t3.xlarge, m6a/m5/m6i.xlarge, c-types
    # with less memory are out.
    assert data["InstanceType"] == "t3a.xlarge"
    assert data["IamInstanceProfile"] == {"Name": "studio-worker"}
    script = base64.b64decode(data["UserData"]).decode()
    assert f"cloud agent --backend ec2 --group studio-{queue} --queue {queue} --timeout 90s --max-workers 3" \
        in script
    assert f"/bin/pip\" install --quiet '{DIST}[aws,postgres,s3,remote]=={VERSION}'" in script
    assert f"url: {db_url.replace(':' + db_password, '')}" in script and s3_storage.url in script
    assert_no_secret(script, db_password)
    assert_no_secret(json.dumps(data, default=str), db_password)
    assert_no_secret(json.dumps(group["Tags"], default=str), db_password)
    instances = aws(s3_storage, "ec2").describe_instances(
        Filters=[{"Name": "tag:studio:queue", "Values": [queue]}])["Reservations"]
    assert sum(len(r["Instances"]) for r in instances) == 2
    for r in instances:
        for i in r["Instances"]:
            assert_no_secret(json.dumps(i.get("Tags", []), default=str), db_password)

    listed = [f for f in studio_json("cloud", "list", env=env) if f["queue"] == queue]
    assert listed and listed[0]["name"] == f"studio-{queue}" and listed[0]["desired"] == 2
    # Submitting again to the same queue grows the group, never recreates it.
    proc = studio("run", "--cloud=ec2", "--queue", queue, "--cpus", "4", "--ram", "15g", "--num-workers", "3",
                  "train.py", cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    assert group_of(s3_storage, queue)["DesiredCapacity"] == 3  # type: ignore[index]

    proc = studio("cloud", "down", queue, env=env, check=True)
    assert f"studio-{queue}" in proc.stderr
    assert group_of(s3_storage, queue) is None and templates_of(s3_storage, queue) == []
    assert "nothing to remove" in studio("cloud", "down", queue, env=env, check=True).stderr


def test_spot_group_types_and_bid(tmp_path: Path, postgres_url: str, s3_storage: S3Storage) -> None:
    env = submitter(tmp_path, postgres_url, s3_storage, "  region: us-east-1\n")
    studio("db", "upgrade", env=env, check=True)
    work = tmp_path / "w"
    write(work / "train.py", "print('hello')\n")
    queue = f"spot-{uuid.uuid4().hex[:6]}"
    proc = studio("run", "--cloud=ec2spot", "--queue", queue, "--gpus", "1", "--bid", "50%", "train.py",
                  cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    group = group_of(s3_storage, queue)
    assert group is not None
    policy = group["MixedInstancesPolicy"]
    types = [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"]]
    assert types == ["g4dn.xlarge", "g4dn.2xlarge", "g5.xlarge", "g4dn.4xlarge", "g5.2xlarge"]
    dist = policy["InstancesDistribution"]
    assert dist["SpotAllocationStrategy"] == "capacity-optimized"
    assert dist["OnDemandPercentageAboveBaseCapacity"] == 0 and dist["OnDemandBaseCapacity"] == 0
    assert dist["SpotMaxPrice"] == "0.2630"  # 50% of g4dn.xlarge's $0.526
    studio("cloud", "down", queue, env=env, check=True)
    # An absolute bid, on a sweep's queue: the same group settings, the bid as given.
    queue2 = f"spot-{uuid.uuid4().hex[:6]}"
    proc = studio("run", "--cloud=ec2spot", "--queue", queue2, "--bid", "0.02", "train.py", cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    dist = group_of(s3_storage, queue2)["MixedInstancesPolicy"]["InstancesDistribution"]  # type: ignore[index]
    assert dist["SpotMaxPrice"] == "0.0200"
    studio("cloud", "down", queue2, env=env, check=True)
    assert group_of(s3_storage, queue2) is None and templates_of(s3_storage, queue2) == []


def test_simulated_cloud_drains_a_sweep_scales_out_and_deletes_the_group(
        tmp_path: Path, postgres_url: str, s3_storage: S3Storage) -> None:
    db_url, db_password = with_password_role(postgres_url)
    env = submitter(tmp_path, db_url, s3_storage,
                    "  region: us-east-1\n  max_workers: 3\n  idleTimeout: 4s\n  scaleInterval: 1s\n")
    studio("db", "upgrade", env=env, check=True)
    work = tmp_path / "w"
    write(work / "train.py", "import time\nx = 0\ntime.sleep(1.5)\nprint('loss: {}'.format((x - 3) ** 2))\n")
    queue = f"sim-{uuid.uuid4().hex[:6]}"
    sim = SimCloud(s3_storage.env, tmp_path / "cloud", {"PGPASSWORD": db_password}, queue)
    from tests.e2e.helpers import popen_studio

    t0 = time.monotonic()
    sweep = popen_studio("run", "--cloud=ec2spot", "--queue", queue, "-hp", "x=1:9", "--metric", "loss:min",
                         "train.py", cwd=work, env=env)
    marks: dict[str, float] = {}
    try:
        while sweep.poll() is None and time.monotonic() - t0 < 240:
            sim.poll()
            n = len(sim.alive())
            if n >= 1:
                marks.setdefault("first_instance", time.monotonic() - t0)
            if n >= 3:
                marks.setdefault("three_instances", time.monotonic() - t0)
            time.sleep(0.2)
        out, err = sweep.communicate(timeout=10)
        assert sweep.returncode == 0, err
        marks["sweep_done"] = time.monotonic() - t0
        deadline = time.monotonic() + 60
        while (sim.alive() or group_of(s3_storage, queue) is not None) and time.monotonic() < deadline:
            sim.poll()
            time.sleep(0.2)
        marks["group_deleted"] = time.monotonic() - t0
        consoles = "\n".join(sim.console(i) for i in sim.procs)
        assert group_of(s3_storage, queue) is None, consoles
        assert templates_of(s3_storage, queue) == []
        assert not sim.alive()
    finally:
        if sweep.poll() is None:
            sweep.kill()
        sim.stop()
    rows = studio_json("queue", "show", queue, env=env)
    assert [r["status"] for r in rows] == ["finished"] * 9
    assert "three_instances" in marks, marks  # the backlog grew the group to max_workers
    workers = {r["worker"] for r in rows}
    assert len(workers) >= 2
    assert "deleted the group" in consoles and "left the group" in consoles
    print("simcloud marks", json.dumps({k: round(v, 2) for k, v in marks.items()}))


RESUMABLE = """\
import os, time
from studio import fs_tracker
path = os.path.join(fs_tracker.get_artifact("ckpt"), "step")
start = int(open(path).read()) if os.path.exists(path) else 0
print("resumed at", start, flush=True)
for i in range(start, 24):
    with open(path, "w") as fh:
        fh.write(str(i + 1))
    time.sleep(0.5)
print("done after", 24 - start, "steps", flush=True)
"""


def test_spot_interruption_hands_back_and_another_instance_resumes(
        tmp_path: Path, postgres_url: str, s3_storage: S3Storage) -> None:
    env = submitter(tmp_path, postgres_url, s3_storage,
                    "  region: us-east-1\n  max_workers: 1\n  idleTimeout: 5s\n  scaleInterval: 1s\n")
    write(Path(env["STUDIOML_HOME"]) / "config.yaml",
          Path(env["STUDIOML_HOME"], "config.yaml").read_text() + "saveWorkspaceFrequency: 1\n")
    studio("db", "upgrade", env=env, check=True)
    work = tmp_path / "w"
    write(work / "train.py", RESUMABLE)
    queue = f"pre-{uuid.uuid4().hex[:6]}"
    sim = SimCloud(s3_storage.env, tmp_path / "cloud", {}, queue)
    asg = aws(s3_storage, "autoscaling")
    try:
        proc = studio("run", "--cloud=ec2spot", "--queue", queue, "--capture", "ckpt:ckpt", "train.py",
                      cwd=work, env=env)
        assert proc.returncode == 0, proc.stderr
        key = proc.stdout.strip().splitlines()[-1]
        first = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # running, and a few checkpoints stored
            started = sim.poll()
            first = first or (started[0] if started else None)
            logs = studio("runs", "logs", key, env=env).stdout
            if "resumed at 0" in logs and studio_json("runs", "show", key, env=env)["status"] == "running":
                time.sleep(4)
                break
            time.sleep(0.5)
        assert first is not None
        sim.interrupt(first)  # EC2 announces the interruption in the instance metadata
        sim.procs[first].wait(timeout=60)  # the agent handed the experiment back and exited
        assert "interruption notice" in sim.console(first)
        shown = studio_json("runs", "show", key, env=env)
        assert shown["status"] in ("queued", "running"), shown["status"]
        # AWS reclaims the instance; the group replaces it.
        asg.terminate_instance_in_auto_scaling_group(InstanceId=first, ShouldDecrementDesiredCapacity=False)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and studio_json("runs", "show", key, env=env)["status"] != "finished":
            sim.poll()
            time.sleep(0.5)
        assert studio_json("runs", "show", key, env=env)["status"] == "finished"
        assert len(sim.procs) == 2
        logs = studio("runs", "logs", key, env=env).stdout
        resumed = [int(line.split()[-1]) for line in logs.splitlines() if line.startswith("resumed at")]
        # The second attempt's output: it started from the stored checkpoint, not from scratch.
        assert len(resumed) == 1 and resumed[0] > 0, logs
        assert logs.count("done after") == 1
        assert studio_json("runs", "show", key, env=env)["attempts"] == 2
        deadline = time.monotonic() + 60
        while group_of(s3_storage, queue) is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert group_of(s3_storage, queue) is None
    finally:
        sim.stop()


def _serve(home: Path, port: int, token: str):  # type: ignore[no-untyped-def]
    from tests.e2e.helpers import popen_studio

    proc = popen_studio("ui", "--port", str(port), env={"STUDIOML_HOME": str(home), "STUDIOML_SERVER_TOKEN": token})
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("studio ui did not start")


def test_workers_reach_a_studio_server_with_the_token_from_ssm(tmp_path: Path, s3_storage: S3Storage) -> None:
    """Cloud workers hold no database or storage secret: the server URL, and a token they read
    from SSM Parameter Store through the instance role (here: the moto credentials)."""
    from tests.fixtures.s3 import _free_port

    port, token = _free_port(), f"tok-server-{uuid.uuid4().hex[:10]}"
    server = _serve(tmp_path / "server", port, token)
    try:
        env = machine(tmp_path / "laptop", f"http://127.0.0.1:{port}", s3_storage,
                      "cloud:\n  region: us-east-1\n  max_workers: 2\n  idleTimeout: 3s\n  scaleInterval: 1s\n")
        env["STUDIOML_API_TOKEN"] = token
        work = tmp_path / "w"
        write(work / "train.py", "x = 0\nprint('loss: {}'.format(x * x))\n")
        queue = f"tok-{uuid.uuid4().hex[:6]}"
        param = f"/studio/{queue}/worker-token"
        write(Path(env["STUDIOML_HOME"]) / "config.yaml", Path(env["STUDIOML_HOME"], "config.yaml").read_text()
              + f"  tokenParameter: {param}\n")
        # No parameter yet: a one-line error, nothing queued, nothing created.
        proc = studio("run", "--cloud=ec2", "--queue", queue, "train.py", cwd=work, env=env)
        assert proc.returncode == UsageError.exit_code and f"no worker token in the SSM parameter {param}" in proc.stderr
        assert proc.stderr.count("\n") == 1 and group_of(s3_storage, queue) is None
        assert studio_json("queue", "list", env=env) == []
        aws(s3_storage, "ssm").put_parameter(Name=param, Value=token, Type="SecureString")

        sim = SimCloud(s3_storage.env, tmp_path / "cloud", {}, queue)
        from tests.e2e.helpers import popen_studio

        sweep = popen_studio("run", "--cloud=ec2", "--queue", queue, "-hp", "x=1:4", "--metric", "loss:min",
                             "train.py", cwd=work, env=env)
        try:
            deadline = time.monotonic() + 180
            while sweep.poll() is None and time.monotonic() < deadline:
                sim.poll()
                time.sleep(0.3)
            out, err = sweep.communicate(timeout=10)
            assert sweep.returncode == 0, err + "\n".join(sim.console(i) for i in sim.procs)
            deadline = time.monotonic() + 60
            while group_of(s3_storage, queue) is not None and time.monotonic() < deadline:
                sim.poll()
                time.sleep(0.3)
            assert group_of(s3_storage, queue) is None
        finally:
            if sweep.poll() is None:
                sweep.kill()
            sim.stop()
        rows = studio_json("queue", "show", queue, env=env)
        assert [r["status"] for r in rows] == ["finished"] * 4
        for instance in sim.procs:
            script = (tmp_path / "cloud" / instance / "user-data.sh").read_text()
            assert f"--token-from ssm:{param}" in script and token not in script
            assert "STUDIOML_API_TOKEN" not in sim.console(instance)
    finally:
        server.terminate()
        server.wait(timeout=30)
