"""Workers as a Slurm array job: `studio workers launch --slurm --queue Q --count N`.

One array task is one `studio worker --queue Q` process, started by Slurm on whatever node it
picks, with the submitter's environment (sbatch's default `--export=ALL`), so the same config,
`STUDIOML_HOME` and credentials source apply. Tasks are long workers that exit after
`--timeout` without work, or `--single-run` workers that take one experiment each. The job is
named `studio-worker.<queue>`; `list` and `tear_down` find it by that name. `scancel` sends
SIGTERM, on which a busy worker stops its script, saves the artifacts and hands the
experiment back to the queue, so cancelling loses nothing but time; Slurm's time limit
(`--time`) does the same.

Only Slurm's own commands (sbatch, squeue, scancel) are used, so this works from any login
node, with whatever authentication the cluster has; `list` and `stop` see only the calling
user's jobs (`squeue --me`), so one user never cancels another's workers.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections import defaultdict
from typing import Any

from studio.cloud.base import Fleet, Provisioner, WorkerRequest, shell_line, worker_argv
from studio.exceptions import StudioError, UsageError

log = logging.getLogger(__name__)

JOB_PREFIX = "studio-worker."
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING")


def job_name(queue: str) -> str:
    return JOB_PREFIX + queue


class SlurmProvisioner(Provisioner):
    """sbatch/squeue/scancel found on PATH (or `slurm: {bin: DIR}` in the config)."""

    def _tool(self, name: str) -> str:
        directory = (self.settings.cloud.get("slurm") or {}).get("bin") if isinstance(
            self.settings.cloud.get("slurm"), dict) else None
        found = shutil.which(name, path=directory) if directory else shutil.which(name)
        if not found:
            raise UsageError(f"{name} not found: run this on a Slurm login node, or put Slurm's commands on PATH")
        return found

    def _call(self, argv: list[str]) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        if proc.returncode != 0:
            message = (proc.stderr or proc.stdout).strip().splitlines()
            raise StudioError(f"{os.path.basename(argv[0])} failed: {message[-1] if message else proc.returncode}")
        return proc.stdout

    def sbatch_argv(self, request: WorkerRequest) -> list[str]:
        """The sbatch command line for `request` (no side effect; the tests read it)."""
        opts: dict[str, Any] = request.options
        if request.count < 1:
            raise UsageError("--count must be at least 1")
        array = f"0-{request.count - 1}"
        if opts.get("max_running"):
            array += f"%{int(opts['max_running'])}"
        logs = self.settings.home / "workers" / "logs"
        argv = [self._tool("sbatch"), "--parsable", f"--job-name={job_name(request.queue)}", f"--array={array}",
                f"--output={logs}/slurm-%A_%a.log", f"--chdir={self.settings.home}",
                f"--comment=studio queue {request.queue}"]
        for flag in ("partition", "gres", "time", "account", "qos", "constraint"):
            if opts.get(flag):
                argv.append(f"--{flag}={opts[flag]}")
        needs = request.resources
        if needs.get("cpus"):
            argv.append(f"--cpus-per-task={needs['cpus']}")
        if needs.get("ram"):
            argv.append(f"--mem={-(-needs['ram'] // 2**20)}M")
        if needs.get("gpus") and not opts.get("gres"):
            argv.append(f"--gres=gpu:{needs['gpus']}")
        config = str(self.settings.config_path) if self.settings.config_path else None
        worker = worker_argv(request, python=opts.get("python"), config=config, token_from=opts.get("token_from"))
        if needs:  # the worker offers what the job was given, not the node's whole capacity
            for name in ("cpus", "gpus"):
                if needs.get(name):
                    worker += [f"--{name}", str(needs[name])]
            if needs.get("ram"):
                worker += ["--ram", str(needs["ram"])]
        argv.append("--wrap=exec " + shell_line(worker))
        return argv

    def ensure_workers(self, request: WorkerRequest, prepared: dict[str, Any] | None = None) -> Fleet:
        argv = self.sbatch_argv(request)
        (self.settings.home / "workers" / "logs").mkdir(parents=True, exist_ok=True)
        job = self._call(argv).strip().split(";")[0]
        log.info("submitted Slurm array job %s for queue %s", job, request.queue)
        return Fleet("slurm", request.queue, job, desired=request.count, running=0,
                     detail={"job_name": job_name(request.queue)})

    def _jobs(self) -> list[dict[str, str]]:
        out = self._call([self._tool("squeue"), "--me", "--noheader", "--array", "--format=%F|%K|%j|%T|%N"])
        rows = []
        for line in out.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 5 and parts[2].startswith(JOB_PREFIX):
                rows.append(dict(zip(("job", "task", "name", "state", "node"), parts, strict=True)))
        return rows

    def list_fleets(self, queue: str | None = None) -> list[Fleet]:
        grouped: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
        for row in self._jobs():
            q = row["name"][len(JOB_PREFIX):]
            if queue is None or q == queue:
                grouped[(row["job"], q)].append(row)
        fleets = []
        for (job, q), rows in sorted(grouped.items()):
            states = [r["state"] for r in rows if r["state"] in ACTIVE]
            fleets.append(Fleet("slurm", q, job, desired=len(states), running=states.count("RUNNING"),
                                detail={"pending": states.count("PENDING"),
                                        "nodes": sorted({r["node"] for r in rows if r["node"]})}))
        return fleets

    def tear_down(self, queue: str | None = None) -> list[str]:
        jobs = sorted({f.name for f in self.list_fleets(queue)})
        if jobs:
            self._call([self._tool("scancel"), *jobs])  # SIGTERM: busy workers hand back
        return jobs
