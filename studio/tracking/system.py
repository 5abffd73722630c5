"""System metrics of a running experiment, sampled by its supervisor.

Every `interval` seconds: CPU percent and resident memory of the whole process tree under
`pid` (psutil; CPU percent is summed over processes, so 200 means two busy cores), and for
each NVIDIA GPU, when the NVIDIA management library (`pynvml`, package nvidia-ml-py) is
importable and finds devices, its utilisation and memory in use. Keys::

    sys/cpu_percent  sys/memory_rss (bytes)  sys/num_processes
    sys/gpu<i>_util (%)  sys/gpu<i>_memory_used (bytes)  sys/gpu<i>_memory_percent

Sampling starts `first_sample` seconds after the sampler (at most 1 s): the first sample only
primes the CPU figures (psutil measures CPU between two calls) and is not logged, so a script
that is done before then needs none, and its supervisor does not import psutil (~10 ms) and
the NVIDIA library while the run ends. Logged samples still come every `interval` seconds
from the start.

GPU figures are per device (a worker gives an experiment whole devices; containers often
hide other processes' pids, so per-process GPU accounting would be unreliable). Points go
into the experiment's series through a `Logger` of this (supervisor) process, flushed
every `flush_interval` seconds and at `stop()`.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.tracking.metrics import Logger

__all__ = ["SystemSampler"]

_log = logging.getLogger(__name__)


class _Gpus:
    """NVML handles, or nothing when there is no library or no device."""

    def __init__(self) -> None:
        self.nvml: Any = None
        self.handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self.nvml = pynvml
        except Exception:  # ImportError, or NVMLError when there is no driver/device
            self.handles = []

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, handle in enumerate(self.handles):
            try:
                util = self.nvml.nvmlDeviceGetUtilizationRates(handle)
                mem = self.nvml.nvmlDeviceGetMemoryInfo(handle)
            except Exception:
                continue
            out[f"sys/gpu{i}_util"] = float(util.gpu)
            out[f"sys/gpu{i}_memory_used"] = float(mem.used)
            out[f"sys/gpu{i}_memory_percent"] = 100.0 * mem.used / mem.total if mem.total else 0.0
        return out

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass


class SystemSampler:
    """Samples process-tree CPU/memory (and GPUs) of `pid` into `metrics_dir` every `interval`."""

    def __init__(
        self,
        pid: int,
        metrics_dir: str | os.PathLike[str],
        interval: float = 5.0,
        flush_interval: float = 30.0,
        first_sample: float = 1.0,
    ) -> None:
        self.pid = pid
        self.interval = interval
        self.first_sample = max(0.0, min(first_sample, interval / 2))
        self.metrics_dir = Path(metrics_dir)
        self.flush_interval = flush_interval
        self.logger: Logger | None = None  # made at the first logged sample
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: dict[int, Any] = {}  # pid -> psutil.Process (keeps cpu_percent state)
        self._gpus: _Gpus | None = None

    def start(self) -> SystemSampler:
        self._thread = threading.Thread(
            target=self._run, name=f"studio-sysmetrics-{self.pid}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and flush what was sampled. Safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(5.0, 2 * self.interval))
        if self.logger is not None:
            self.logger.close()
        if self._gpus is not None:
            self._gpus.close()

    def _run(self) -> None:
        if self._stop.wait(self.first_sample):
            return  # stopped first: nothing would have been logged
        self._gpus = _Gpus()
        self.sample()  # primes cpu_percent; its CPU figure would be 0, so it is not logged
        wait = self.interval - self.first_sample  # logged samples at interval, 2*interval, ...
        while not self._stop.wait(wait):
            wait = self.interval
            try:
                values = self.sample()
            except Exception:
                _log.debug("system sample failed", exc_info=True)
                continue
            if values is None:  # the process is gone
                return
            if self.logger is None:
                try:
                    from studio.tracking.metrics import Logger

                    self.logger = Logger(self.metrics_dir, flush_interval=self.flush_interval)
                except Exception:  # metrics are a by-product: never a traceback on the output
                    _log.debug("system metrics cannot be logged", exc_info=True)
                    return
            self.logger.log(None, **values)

    def sample(self) -> dict[str, float] | None:
        """One sample of the tree (None once the root process has exited)."""
        import psutil

        try:
            root = self._procs.get(self.pid) or psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return None
        cpu = rss = 0.0
        alive: dict[int, Any] = {}
        for proc in tree:
            proc = self._procs.get(proc.pid, proc)
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            alive[proc.pid] = proc
        self._procs = alive
        values = {
            "sys/cpu_percent": cpu,
            "sys/memory_rss": rss,
            "sys/num_processes": float(len(alive)),
        }
        if self._gpus is not None:
            values.update(self._gpus.sample())
        return values
