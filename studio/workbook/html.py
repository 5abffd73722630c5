"""Small HTML tables for Jupyter (`_repr_html_`): everything escaped, no scripts, no styles
beyond what the notebook already applies to tables."""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Iterable, Sequence
from typing import Any

from studio.entities import Experiment, MetricSummary

MAX_ROWS = 50


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _time(t: float | None) -> str:
    if t is None:
        return ""
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], caption: str | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def experiment_table(records: Sequence[Experiment], caption: str | None = None) -> str:
    rows = [
        (
            r.key,
            r.project,
            r.status.value,
            r.script,
            _time(r.time_added),
            r.metric or "",
            _number(r.metric_value),
        )
        for r in records[:MAX_ROWS]
    ]
    more = f" (first {MAX_ROWS} of {len(records)})" if len(records) > MAX_ROWS else ""
    caption = (caption or f"{len(records)} experiments") + more
    return table(("tag", "project", "status", "script", "added", "metric", "value"), rows, caption)


def experiment(
    record: Experiment, artifacts: Sequence[str], summaries: Sequence[MetricSummary]
) -> str:
    facts = [
        ("tag", record.key),
        ("project", record.project),
        (
            "status",
            record.status.value + (f" ({record.status_reason})" if record.status_reason else ""),
        ),
        ("script", " ".join([record.script, *record.args])),
        ("added", _time(record.time_added)),
        ("started", _time(record.time_started)),
        ("finished", _time(record.time_finished)),
        (
            "git",
            " ".join(
                str(x)
                for x in (record.git.get("branch"), (record.git.get("commit") or "")[:12])
                if x
            ),
        ),
    ]
    parts = [table(("", ""), facts, f"Experiment {record.key}")]
    if record.params:
        parts.append(table(("param", "value"), sorted(record.params.items()), "params"))
    if summaries:
        rows = [
            (s.key, _number(s.last), _number(s.min), _number(s.max), s.count, s.last_step)
            for s in summaries
        ]
        parts.append(table(("metric", "last", "min", "max", "count", "last step"), rows, "metrics"))
    parts.append(table(("artifact",), [(a,) for a in artifacts], "artifacts"))
    return "".join(parts)
