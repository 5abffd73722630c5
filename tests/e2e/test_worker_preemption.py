"""`studio worker --preemption ec2|gce`: on the interruption notice in the instance metadata,
the running experiment is checkpointed and handed back, and the next worker resumes it."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from studio.cloud import preemption
from tests.e2e.helpers import popen_studio, studio, studio_json
from tests.e2e.test_cloud_ec2 import RESUMABLE
from tests.e2e.test_worker import write


class Metadata:
    """A fake instance-metadata server: EC2 (IMDSv2 token, spot/instance-action) and GCE
    (Metadata-Flavor header, instance/preempted)."""

    def __init__(self) -> None:
        self.interrupted = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: str = "") -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def do_PUT(self) -> None:  # noqa: N802
                self._reply(200, "imds-token") if self.path == "/latest/api/token" else self._reply(404)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/latest/meta-data/spot/instance-action":
                    if self.headers.get("X-aws-ec2-metadata-token") != "imds-token":
                        return self._reply(401)
                    return self._reply(200, '{"action": "terminate"}') if outer.interrupted else self._reply(404)
                if self.path == "/computeMetadata/v1/instance/preempted":
                    if self.headers.get("Metadata-Flavor") != "Google":
                        return self._reply(403)
                    return self._reply(200, "TRUE" if outer.interrupted else "FALSE")
                self._reply(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def metadata(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    md = Metadata()
    monkeypatch.setenv("STUDIOML_METADATA_URL", md.url)
    yield md
    md.server.shutdown()


@pytest.mark.parametrize("kind", ["ec2", "gce"])
def test_notice(metadata: Metadata, kind: str) -> None:
    assert preemption.notice(kind) is False
    fired = threading.Event()
    stop = preemption.watch(kind, fired.set, poll=0.05)
    assert not fired.wait(0.3)
    metadata.interrupted = True
    assert preemption.notice(kind) is True
    assert fired.wait(5)
    stop.set()


@pytest.mark.parametrize("kind", ["ec2", "gce"])
def test_worker_hands_back_on_notice_and_the_next_resumes(studio_home: Path, tmp_path: Path, metadata: Metadata,
                                                          kind: str) -> None:
    write(studio_home / "config.yaml", "saveWorkspaceFrequency: 1\n")
    work = tmp_path / "w"
    write(work / "train.py", RESUMABLE)
    key = studio("run", "--queue", "spot", "--capture", "ckpt:ckpt", "train.py", cwd=work, check=True).stdout.strip()
    worker = popen_studio("worker", "--queue", "spot", "--preemption", kind)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "resumed at 0" not in studio("runs", "logs", key).stdout:
            time.sleep(0.3)
        time.sleep(3)  # a few checkpoints
        metadata.interrupted = True
        worker.wait(timeout=60)  # it handed the experiment back and exited
    finally:
        if worker.poll() is None:
            worker.kill()
    assert studio_json("runs", "show", key)["status"] == "queued"
    metadata.interrupted = False
    studio("worker", "--queue", "spot", "--single-run", check=True, timeout=120)
    shown = studio_json("runs", "show", key)
    assert shown["status"] == "finished" and shown["attempts"] == 2
    logs = studio("runs", "logs", key).stdout
    assert int(logs.split("resumed at", 1)[1].split()[0]) > 0, logs
