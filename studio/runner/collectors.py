"""Metric collectors a supervisor runs beside the script: system usage and `name: value` lines."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def start_sampler(pid: int, metrics_dir: Path | None) -> Any:
    if metrics_dir is None:
        return None
    try:
        from studio.tracking.system import SystemSampler

        sampler = SystemSampler(pid, metrics_dir)
        sampler.start()
        return sampler
    except Exception:
        log.debug("system metrics unavailable", exc_info=True)
        return None


class OutputMetrics:
    """Feeds `name: value` lines of the output into the experiment's series.

    The parser is loaded at the first line that can hold a metric (one with `:` or `=`). The
    logger is made at once: making it at the first metric too was measured (~1 ms less before
    the launch), but it moved the executor's taking over of signals that much earlier, and a
    signal then more often came after the launch, while the reaper ignores signals until it
    has forked the script (tests/e2e/test_lifecycle.py::test_a_signal_while_starting...)."""

    def __init__(self, metrics_dir: Path) -> None:
        from studio.tracking.metrics import Logger

        self._logger = Logger(metrics_dir)
        self._rest = ""

    def feed(self, text: str) -> None:
        text = self._rest + text
        complete, _, self._rest = text.rpartition("\n")
        if ":" not in complete and "=" not in complete:
            return
        from studio.tracking.outputmetrics import parse_metric_lines

        for name, value in parse_metric_lines(complete):
            if name != "step":  # `step` is the logger's own argument, not a metric
                values: dict[str, Any] = {name: value}
                self._logger.log(None, **values)

    def close(self) -> None:
        self.feed("\n")
        self._logger.close()


def output_metrics_logger(metrics_dir: Path | None) -> OutputMetrics | None:
    if metrics_dir is None:
        return None
    try:
        return OutputMetrics(metrics_dir)
    except Exception:
        log.debug("output metric parsing unavailable", exc_info=True)
        return None
