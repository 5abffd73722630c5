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

    The parser and the logger are loaded at the first line that can hold a metric (one with
    `:` or `=`): a run that prints none costs its supervisor neither import."""

    def __init__(self, metrics_dir: Path) -> None:
        self._dir = metrics_dir
        self._logger: Any = None
        self._rest = ""

    def feed(self, text: str) -> None:
        text = self._rest + text
        complete, _, self._rest = text.rpartition("\n")
        if ":" not in complete and "=" not in complete:
            return
        from studio.tracking.outputmetrics import parse_metric_lines

        for name, value in parse_metric_lines(complete):
            if name != "step":  # `step` is the logger's own argument, not a metric
                if self._logger is None:
                    from studio.tracking.metrics import Logger

                    self._logger = Logger(self._dir)
                values: dict[str, Any] = {name: value}
                self._logger.log(None, **values)

    def close(self) -> None:
        self.feed("\n")
        if self._logger is not None:
            self._logger.close()


def output_metrics_logger(metrics_dir: Path | None) -> OutputMetrics | None:
    if metrics_dir is None:
        return None
    try:
        return OutputMetrics(metrics_dir)
    except Exception:
        log.debug("output metric parsing unavailable", exc_info=True)
        return None
