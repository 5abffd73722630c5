"""Spot/preemptible interruption notices, read from the instance metadata server.

    ec2   GET /latest/meta-data/spot/instance-action (IMDSv2) answers 200 once EC2 has
          scheduled the interruption (about two minutes ahead), 404 before
    gce   GET /computeMetadata/v1/instance/preempted answers TRUE once preempted (about
          30 seconds ahead)

`STUDIOML_METADATA_URL` replaces the metadata server's address (tests, proxies). `watch`
runs a daemon thread that calls `on_notice` once; `studio worker --preemption ec2|gce` and
`studio cloud agent` use it to SIGTERM the worker, which stops the script, stores the mutable
artifacts and hands the experiment back for another worker to resume.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

KINDS = ("ec2", "gce")


def notice(kind: str) -> bool:
    if kind.startswith("ec2"):
        from studio.cloud.ec2 import interruption_notice

        return interruption_notice()
    from studio.cloud.gce import _metadata

    return (_metadata("instance/preempted") or "").strip().upper() == "TRUE"


def watch(kind: str, on_notice: Callable[[], None], poll: float = 1.0) -> threading.Event:
    """Poll for an interruption notice until one comes (then call `on_notice`) or the returned
    event is set. Unreachable metadata is logged at debug level and polled again."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(poll):
            try:
                if notice(kind):
                    log.warning("%s interruption notice: handing the experiment back", kind)
                    on_notice()
                    return
            except Exception as exc:
                log.debug("no interruption notice readable: %s", exc)

    threading.Thread(target=loop, name="preemption-watch", daemon=True).start()
    return stop
