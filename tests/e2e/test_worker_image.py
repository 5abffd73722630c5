"""`studio start remote worker`: the docker command it runs, and that no credential is baked in."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from studio import __version__
from studio.cloud.container import docker_argv
from studio.config import load_settings
from studio.exceptions import UsageError
from tests.e2e.helpers import studio
from tests.e2e.test_worker import write

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-image-test-5e8b1c"
DB = "postgresql+psycopg://studio:pg-pass-0c1d@db.example.org:5432/studio"


def test_docker_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(home / "config.yaml", f"database:\n  url: {DB}\nstorage:\n  url: s3://bucket/studio\n")
    settings = load_settings(environ={"STUDIOML_HOME": str(home)})
    env = {"STUDIOML_API_TOKEN": TOKEN, "AWS_SECRET_ACCESS_KEY": "aws-secret", "AWS_ACCESS_KEY_ID": "AKIA1",
           "UNRELATED": "x"}
    argv = docker_argv(settings, "gpu", gpus=True, timeout="10m", environ=env)
    line = shlex.join(argv)
    assert argv[:8] == ["docker", "run", "--rm", "--init", "--network", "host", "--name", argv[7]]
    assert argv[7].startswith("studio-worker-gpu-")
    assert "--gpus all" in line
    for var in ("STUDIOML_API_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"):
        assert f"-e {var} " in line  # by name: docker copies the value from its environment
    assert "UNRELATED" not in line
    for secret in (TOKEN, "aws-secret", "pg-pass-0c1d"):
        assert secret not in line
    assert f"-v {home}/blobcache:/root/.studioml/blobcache" in line
    assert f"-v {home}/experiments:/root/.studioml/experiments" in line
    assert f"-v {home}/config.yaml:/root/.studioml/config.yaml:ro" in line
    assert line.endswith(f"studioml/studio-worker:{__version__}-cuda worker --queue gpu --timeout 10m")
    cpu = docker_argv(settings, "q", image="me/my-worker:1", environ={})
    assert "--gpus" not in cpu and cpu[-4:] == ["me/my-worker:1", "worker", "--queue", "q"]


def test_one_machine_setup_mounts_its_paths(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = load_settings(environ={"STUDIOML_HOME": str(home)})
    line = shlex.join(docker_argv(settings, "q", environ={"STUDIOML_DATABASE_URL": "ignored"}))
    assert f"-v {home}:{home}" in line and f"-e STUDIOML_DATABASE_URL=sqlite:///{home}/studio.db" in line
    assert f"-e STUDIOML_STORAGE_URL={home}/objects" in line
    assert line.count("STUDIOML_DATABASE_URL") == 1


def test_start_remote_worker_runs_docker_with_the_token_from_the_environment(studio_home: Path,
                                                                              tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    record = tmp_path / "docker-call.json"
    write(bin_dir / "docker", f"""\
        #!/usr/bin/env python3
        import json, os, sys
        json.dump({{"argv": sys.argv[1:], "token": os.environ.get("STUDIOML_API_TOKEN")}}, open({str(record)!r}, "w"))
        """)
    (bin_dir / "docker").chmod(0o755)
    import os

    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STUDIOML_API_TOKEN": TOKEN}
    proc = studio("start", "remote", "worker", "--queue", "q1", "--image", "me/worker:2", env=env)
    assert proc.returncode == 0, proc.stderr
    call = json.loads(record.read_text())
    assert call["token"] == TOKEN  # docker gets it from its environment...
    assert TOKEN not in " ".join(call["argv"])  # ...never on its command line
    assert call["argv"][:2] == ["run", "--rm"] and call["argv"][-4:] == ["me/worker:2", "worker", "--queue", "q1"]
    assert (studio_home / "blobcache").is_dir() and (studio_home / "experiments").is_dir()
    dry = studio("start", "remote", "worker", "--queue", "q1", "--dry-run", env=env, check=True)
    assert dry.stdout.startswith("docker run ") and TOKEN not in dry.stdout
    missing = studio("start", "remote", "worker", "--queue", "q1", env={"PATH": "/nonexistent"})
    assert missing.returncode == UsageError.exit_code and "docker not found" in missing.stderr


def test_dockerfile_bakes_in_no_credential() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    secret = re.compile(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY|CREDENTIAL", re.I)
    assert not [line for line in instructions if line.split()[0] in ("ENV", "ARG") and secret.search(line)]
    assert [line for line in instructions if line.startswith("COPY")] == [
        "COPY pyproject.toml README.md LICENSE* /src/", "COPY studio /src/studio"]
    assert "ARG BASE=python:3.11-slim" in instructions and 'ENTRYPOINT ["studio"]' in instructions
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:ignore.index("*") + 5] == ["!pyproject.toml", "!README.md", "!LICENSE",
                                                                   "!studio/"]


def test_kubernetes_job_example_is_valid() -> None:
    import kubernetes_validate

    docs = (ROOT / "docs" / "cloud.md").read_text()
    block = re.search(r"<!-- kubernetes-job -->\s*```yaml\n(.*?)```", docs, re.S)
    assert block is not None
    manifests = [m for m in yaml.safe_load_all(block.group(1)) if m]
    assert [m["kind"] for m in manifests] == ["Job"]
    for manifest in manifests:
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)
    container = manifests[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == ["worker", "--queue", "gpu"]
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["STUDIOML_API_TOKEN"]["valueFrom"]  # from a Secret, never inline
