"""Print the results as one small table per metric, and keep them as JSON for later comparison.

One table per metric (rather than one wide table) keeps every row readable in a terminal and
puts each target's ratio right beside the baselines it is judged against.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results import METRICS, Goal, Metric, TargetRecord, ratio

BASELINES = ("direct", "nginx")


def render(
    records: Sequence[TargetRecord],
    goals: Sequence[Goal],
    metrics: Sequence[Metric] = METRICS,
    baselines: Sequence[str] = BASELINES,
) -> str:
    """The whole report as text: skipped targets, one table per metric, then the goals."""
    by_name = {record.name: record for record in records}
    lines: list[str] = []
    for record in records:
        if record.skipped:
            lines += [f"SKIPPED {record.name}: {_summary(record.skipped)}"]
    for metric in metrics:
        if any(metric.key in r.runs or metric.key in r.failures for r in records):
            lines += ["", *_table(metric, records, by_name, baselines)]
    if goals:
        lines += ["", "goals (ratios are target / baseline of the medians above)"]
        lines += [_goal_line(goal, by_name) for goal in goals]
    return "\n".join(lines)


def _table(
    metric: Metric,
    records: Sequence[TargetRecord],
    by_name: Mapping[str, TargetRecord],
    baselines: Sequence[str],
) -> list[str]:
    better = "higher" if metric.higher_is_better else "lower"
    width = max([10, *(len(name) + 4 for name in baselines)])
    heads = "".join(f"{'x ' + name:>{width}}" for name in baselines)
    name_width = max([22, *(len(record.name) + 2 for record in records)])
    lines = [
        f"{metric.title} [{metric.unit}, {better} is better]",
        f"  {'target':<{name_width}}{'median':>10}{heads}   runs",
    ]
    for record in records:
        if record.skipped:
            continue
        if metric.key in record.failures:
            reason = _summary(record.failures[metric.key])
            lines.append(f"  {record.name:<{name_width}}FAILED: {reason}")
            continue
        median = record.median(metric)
        if median is None:
            continue
        ratios = "".join(
            _ratio_cell(record, by_name.get(name), metric, width) for name in baselines
        )
        runs = " ".join(_number(value) for value in record.runs[metric.key])
        lines.append(f"  {record.name:<{name_width}}{_number(median):>10}{ratios}   {runs}")
    return lines


def _number(value: float) -> str:
    """Three significant figures or so: 0.43, 12.3, 1187.5."""
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _ratio_cell(
    record: TargetRecord, baseline: TargetRecord | None, metric: Metric, width: int
) -> str:
    value = ratio(record, baseline, metric)
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.2f}"


def _goal_line(goal: Goal, by_name: Mapping[str, TargetRecord]) -> str:
    met = goal.met(by_name)
    verdict = {True: "met   ", False: "MISSED", None: "n/a   "}[met]
    value = goal.value(by_name)
    shown = "not measured" if value is None else f"measured {value:.2f}"
    return f"  {verdict} {goal.describe():<58} {shown}"


def _summary(text: str) -> str:
    """First line of a diagnosis, plus its last line when there is more (a log's traceback)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "(no reason given)"
    summary = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return summary if len(summary) <= 200 else summary[:197] + "..."


def write_json(
    directory: Path,
    prefix: str,
    settings: dict[str, Any],
    records: Sequence[TargetRecord],
    goals: Sequence[Goal],
    metrics: Sequence[Metric] = METRICS,
    baselines: Sequence[str] = BASELINES,
) -> Path:
    """Write ``<prefix>-<UTC timestamp>.json`` under ``directory`` and return its path."""
    by_name = {record.name: record for record in records}
    now = datetime.now(UTC)
    document = {
        "finished_at": now.isoformat(timespec="seconds"),
        "settings": settings,
        "targets": {
            record.name: _target_json(record, by_name, metrics, baselines) for record in records
        },
        "goals": [
            {"goal": goal.describe(), "value": goal.value(by_name), "met": goal.met(by_name)}
            for goal in goals
        ],
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{prefix}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def _target_json(
    record: TargetRecord,
    by_name: Mapping[str, TargetRecord],
    metrics: Sequence[Metric],
    baselines: Sequence[str],
) -> dict[str, Any]:
    figures = {
        metric.key: {
            "unit": metric.unit,
            "runs": record.runs.get(metric.key, []),
            "median": record.median(metric),
            **{f"x_{name}": ratio(record, by_name.get(name), metric) for name in baselines},
        }
        for metric in metrics
        if metric.key in record.runs
    }
    return {"skipped": record.skipped, "failures": record.failures, "metrics": figures}
