"""Bad input to `studio run --cloud`: one line, non-zero exit, nothing queued, nothing created."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from studio.exceptions import UsageError
from tests.e2e.helpers import studio, studio_json
from tests.e2e.test_worker import write
from tests.fixtures.s3 import ACCESS_KEY, SECRET_KEY, S3Storage

USAGE = UsageError.exit_code


def cloud_state(storage: S3Storage) -> tuple[list[str], list[str]]:
    kw = dict(endpoint_url=storage.server.endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
              aws_secret_access_key=SECRET_KEY)
    groups = boto3.client("autoscaling", **kw).describe_auto_scaling_groups()["AutoScalingGroups"]
    templates = boto3.client("ec2", **kw).describe_launch_templates()["LaunchTemplates"]
    return (sorted(g["AutoScalingGroupName"] for g in groups if "badq" in g["AutoScalingGroupName"]),
            sorted(t["LaunchTemplateName"] for t in templates if "badq" in t["LaunchTemplateName"]))


@pytest.fixture
def setup(studio_home: Path, tmp_path: Path, s3_storage: S3Storage) -> tuple[Path, dict[str, str], S3Storage]:
    work = tmp_path / "w"
    write(work / "train.py", "print('hi')\n")
    write(studio_home / "config.yaml", f"storage:\n  url: {s3_storage.url}\ncloud:\n  region: us-east-1\n")
    return work, dict(s3_storage.env), s3_storage


CASES = [
    (["--cloud=azure"], USAGE, "unknown cloud 'azure': use --cloud with one of ec2, ec2spot, gcloud, gcspot"),
    (["--cloud=ec2", "--bid", "0.5"], USAGE, "--bid applies to spot instances only: use --cloud=ec2spot"),
    (["--bid", "0.5"], USAGE, "--bid applies to cloud spot workers only: add --cloud=ec2spot"),
    (["--cloud=ec2spot", "--bid", "cheap"], USAGE, "--bid 'cheap': give USD per hour (0.35) or a percentage"),
    (["--cloud=ec2", "--gpus", "8", "--ram", "2g", "--cpus", "400"], USAGE,
     "no instance type has 400 CPUs, 8 GPUs and 2 GB RAM: ask for less with --cpus/--gpus/--ram"),
    (["--cloud=ec2", "--gpus", "64"], USAGE, "no instance type has 64 GPUs: ask for less"),
    (["--cloud=ec2", "--num-workers", "0"], USAGE, "--num-workers must be at least 1"),
    (["--cloud=gcloud"], USAGE, "cloud.projectId is not set"),
    (["--cloud=gcspot", "--bid", "0.1"], USAGE, "cloud.projectId is not set"),
    # The submitter's SQLite database is out of the instances' reach.
    (["--cloud=ec2"], USAGE, "cloud workers cannot reach the database sqlite://...: use a studio server URL"),
]


@pytest.mark.parametrize(("flags", "code", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_cloud_input(setup: tuple[Path, dict[str, str], S3Storage], flags: list[str], code: int,
                         message: str) -> None:
    work, env, storage = setup
    proc = studio("run", *flags, "--queue", "badq", "train.py", cwd=work, env=env)
    assert proc.returncode == code, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("studio: --bid is ignored")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert studio_json("queue", "list", env=env) == []
    assert cloud_state(storage) == ([], [])


def test_missing_aws_credentials(setup: tuple[Path, dict[str, str], S3Storage], tmp_path: Path) -> None:
    work, env, storage = setup
    bare = {k: v for k, v in env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    bare.update(AWS_EC2_METADATA_DISABLED="true", AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
                AWS_CONFIG_FILE=str(tmp_path / "none"))
    proc = studio("run", "--cloud=ec2spot", "--queue", "badq", "train.py", cwd=work, env=bare)
    assert proc.returncode == USAGE
    assert proc.stderr.strip() == "studio: error: no AWS credentials: run `aws configure` " \
                                  "(or set AWS_PROFILE / AWS_ACCESS_KEY_ID)"
    assert studio_json("queue", "list", env=env) == []
    assert cloud_state(storage) == ([], [])


def test_missing_google_credentials(setup: tuple[Path, dict[str, str], S3Storage], studio_home: Path,
                                    tmp_path: Path) -> None:
    work, env, storage = setup
    write(studio_home / "config.yaml", f"storage:\n  url: {storage.url}\ncloud:\n  projectId: my-project\n")
    env = {**env, "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json"),
           "CLOUDSDK_CONFIG": str(tmp_path / "gcloud")}
    proc = studio("run", "--cloud=gcloud", "--queue", "badq", "train.py", cwd=work, env=env)
    assert proc.returncode == USAGE, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "no Google Cloud credentials" in proc.stderr and "GOOGLE_APPLICATION_CREDENTIALS" in proc.stderr
    assert studio_json("queue", "list", env=env) == []


def test_unknown_cloud_config_key(setup: tuple[Path, dict[str, str], S3Storage], studio_home: Path) -> None:
    work, env, storage = setup
    write(studio_home / "config.yaml", f"storage:\n  url: {storage.url}\ncloud:\n  projectid: p\n")
    proc = studio("run", "--cloud=gcloud", "--queue", "badq", "train.py", cwd=work, env=env)
    assert proc.returncode == USAGE and "unknown key `cloud.projectid`" in proc.stderr
    assert proc.stderr.count("\n") == 1
