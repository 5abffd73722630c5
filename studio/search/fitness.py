"""What a sweep optimizes: the objective (`--metric` or `fitness:` lines) and how to read it.

``--metric=name[:min|:max]`` names a scalar series of the experiment (logged with
``studio.log``, imported from TensorBoard event files, or printed as ``name: value`` lines) and
how to fold it: ``min``, ``max`` or, with no suffix, the last value. Without ``--metric`` the
objective is the last ``fitness: <float>`` line the script prints (upstream's plugin contract).

Direction: ``:min`` minimizes, ``:max`` maximizes; a bare name is minimized (losses are the
common case) except ``fitness``, which is maximized as upstream did. Optimizers only ever see
*fitness, higher is better*: :meth:`Objective.fitness` flips the sign of minimized metrics.

Where values come from, most authoritative first:

1. the per-name summaries the supervisor keeps in the metadata store (all three sources);
2. the ``metrics`` artifact's series (for per-step values while a trial runs);
3. ``name: value`` lines of the experiment's recorded output (always live, one step per line).

The last is a fallback that keeps sweeps working when a script prints its metric and nothing
else recorded it yet (for instance before the first checkpoint).
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from studio.exceptions import UsageError

if TYPE_CHECKING:
    from studio.context import Context
    from studio.entities import Experiment, MetricSummary

log = logging.getLogger(__name__)

FITNESS = "fitness"
_NAME_RE = re.compile(r"[A-Za-z_][\w./-]*")


@dataclass(frozen=True)
class Objective:
    """The scalar a sweep ranks and optimizes."""

    name: str = FITNESS
    fold: str = "last"  # "min" | "max" | "last"
    maximize: bool = True
    explicit: bool = False  # given with --metric

    @classmethod
    def parse(cls, spec: str | None) -> Objective:
        """``name[:min|:max]``; None gives the default ``fitness`` objective."""
        if spec is None:
            return cls()
        name, _, how = spec.strip().partition(":")
        name = name.strip()
        if not _NAME_RE.fullmatch(name):
            raise UsageError(
                f"--metric {spec!r}: {name!r} is not a metric name; write e.g. --metric=val_loss:min"
            )
        how = how.strip().lower()
        if how not in ("", "min", "max"):
            raise UsageError(
                f"--metric {spec!r}: unknown fold {how!r}; use name:min, name:max or just name (last value)"
            )
        if how == "min":
            return cls(name, "min", False, True)
        if how == "max":
            return cls(name, "max", True, True)
        return cls(name, "last", name == FITNESS, True)

    @property
    def spec(self) -> str:
        return self.name if self.fold == "last" else f"{self.name}:{self.fold}"

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"

    def fitness(self, value: float | None) -> float | None:
        """The metric value as fitness (higher is better); None stays None."""
        if value is None or math.isnan(value):
            return None
        return value if self.maximize else -value

    def value(self, fitness: float | None) -> float | None:
        """Inverse of :meth:`fitness`."""
        if fitness is None:
            return None
        return fitness if self.maximize else -fitness

    def better(self, a: float | None, b: float | None) -> bool:
        """Is metric value ``a`` strictly better than ``b`` (None is worst)?"""
        if a is None:
            return False
        if b is None:
            return True
        return a > b if self.maximize else a < b

    def fold_values(self, values: Sequence[float]) -> float | None:
        finite = [v for v in values if not math.isnan(v)]
        if not finite:
            return None
        if self.fold == "min":
            return min(finite)
        if self.fold == "max":
            return max(finite)
        return finite[-1]

    def from_summary(self, summary: MetricSummary) -> float:
        if self.fold == "min":
            return summary.min
        if self.fold == "max":
            return summary.max
        return summary.last


def parse_lines(text: str) -> list[tuple[str, float]]:
    """Every ``name: value`` pair of ``text``, read exactly as the supervisor reads output
    (:mod:`studio.tracking.outputmetrics`: ``a: 1``, ``a=1``, ``a: 1, b: 2``)."""
    from studio.tracking.outputmetrics import parse_metric_lines

    return list(parse_metric_lines(text))


class OutputSeries:
    """Incremental reader of ``name: value`` lines in experiments' recorded output.

    Keeps the last chunk seen per experiment, so polling costs one small query per trial.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._seq: dict[str, int] = {}
        self._attempt: dict[str, int] = {}
        self._rest: dict[str, str] = {}
        self.values: dict[str, dict[str, list[float]]] = {}

    def update(self, exp: Experiment) -> dict[str, list[float]]:
        key = exp.key
        if self._attempt.get(key) != exp.attempts:  # a retry starts a fresh series
            self._attempt[key] = exp.attempts
            self._seq[key], self._rest[key], self.values[key] = -1, "", {}
        try:
            chunks = self.ctx.meta.read_output(key, after_seq=self._seq[key])
        except Exception:
            log.debug("could not read the output of %s", key, exc_info=True)
            return self.values[key]
        if chunks:
            self._seq[key] = chunks[-1].seq
            text = self._rest[key] + "".join(c.text for c in chunks)
            complete, _, self._rest[key] = text.rpartition("\n")
            if exp.status.terminal:  # no more output: the unterminated last line counts too
                complete, self._rest[key] = text, ""
            for name, value in parse_lines(complete):
                self.values[key].setdefault(name, []).append(value)
        return self.values[key]


class ArtifactSeries:
    """Per-step values from an experiment's ``metrics`` artifact (segments in the object store).

    Read again only when the artifact's tree hash changed (at each checkpoint).
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._cache: dict[str, dict[str, list[tuple[int, float]]]] = {}

    def read(self, exp: Experiment) -> dict[str, list[tuple[int, float]]]:
        art = exp.artifacts.get("metrics")
        if art is None or not art.tree:
            return {}
        if art.tree in self._cache:
            return self._cache[art.tree]
        series: dict[str, list[tuple[int, float]]] = {}
        try:
            from studio.tracking import segments

            with tempfile.TemporaryDirectory(prefix="studio-sweep-") as tmp:
                dest = Path(tmp) / "metrics"
                self.ctx.objects.materialize(art.tree, dest)
                for name in segments.list_segments(dest):
                    table = segments.read_segment(dest / name).to_pydict()
                    for k, step, value in zip(table["key"], table["step"], table["value"], strict=False):
                        series.setdefault(str(k), []).append((int(step), float(value)))
        except Exception:
            log.debug("could not read the metrics artifact of %s", exp.key, exc_info=True)
            return {}
        for points in series.values():
            points.sort(key=lambda p: p[0])
        self._cache[art.tree] = series
        return series


def final_values(
    ctx: Context, objective: Objective, exps: Sequence[Experiment], output: OutputSeries | None = None
) -> dict[str, float | None]:
    """Folded objective value of each experiment (None when it never reported one)."""
    summaries = _summaries(ctx, [e.key for e in exps])
    result: dict[str, float | None] = {}
    for exp in exps:
        value: float | None = None
        for s in summaries.get(exp.key, []):
            if s.key == objective.name:
                value = objective.from_summary(s)
        if value is None and exp.metric == objective.spec and exp.metric_value is not None:
            value = exp.metric_value
        if value is None and output is not None:
            value = objective.fold_values(output.update(exp).get(objective.name, []))
        result[exp.key] = None if value is None or math.isnan(value) else value
    return result


def seen_names(ctx: Context, exps: Iterable[Experiment], output: OutputSeries | None = None) -> list[str]:
    """Every metric name any of the experiments reported (for the "never appeared" warning)."""
    exps = list(exps)
    names: set[str] = set()
    for items in _summaries(ctx, [e.key for e in exps]).values():
        names.update(s.key for s in items)
    if output is not None:
        for exp in exps:
            names.update(output.update(exp))
    return sorted(n for n in names if not n.startswith("sys/") and not n.startswith("system/"))


def _summaries(ctx: Context, keys: list[str]) -> dict[str, list[MetricSummary]]:
    if not keys:
        return {}
    try:
        return ctx.meta.metric_summaries(keys)
    except Exception:
        log.debug("could not read metric summaries", exc_info=True)
        return {}


__all__ = [
    "FITNESS",
    "ArtifactSeries",
    "Objective",
    "OutputSeries",
    "final_values",
    "parse_lines",
    "seen_names",
]
