"""The overview's chart: what counts as a quarantine and a release per day, and the SVG."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from proxy.ui.chart import ceiling, daily, svg
from storage.overview import ChartEvent


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2030, 1, day, hour, tzinfo=UTC)


def test_days_count_entries_into_quarantine_and_releases() -> None:
    events = [
        ChartEvent(at(3), "quarantined", "pending"),
        ChartEvent(at(3, 13), "quarantined", "quarantined"),  # already there: no new entry
        ChartEvent(at(4), "quarantined", "released"),  # a release withdrawn or expired
        ChartEvent(at(4), "released", "quarantined"),
        ChartEvent(at(1), "quarantined", "pending"),  # before the window
    ]
    days = daily(events, date(2030, 1, 5), 3)
    assert [(d.day.day, d.quarantined, d.released) for d in days] == [
        (3, 1, 0),
        (4, 1, 1),
        (5, 0, 0),
    ]


def test_axis_tops_are_round() -> None:
    assert [ceiling(n) for n in (0, 1, 2, 3, 6, 11, 49, 51, 1000)] == [
        1,
        1,
        2,
        5,
        10,
        20,
        50,
        100,
        1000,
    ]


def test_the_svg_is_titled_and_bars_scale_to_the_top() -> None:
    days = daily([ChartEvent(at(5), "quarantined", "pending")] * 4, date(2030, 1, 5), 7)
    drawn = str(svg(days, "Quarantines <&> releases"))
    assert (
        'role="img"' in drawn
        and '<title id="chart-title">Quarantines &lt;&amp;&gt; releases' in drawn
    )
    heights = [
        float(h) for h in re.findall(r'class="bar quarantined"[^>]*height="([0-9.]+)"', drawn)
    ]
    assert heights[-1] == max(heights) > 0 and heights[:-1] == [0.0] * 6
    assert "2030-01-05: 4 quarantined" in drawn
    assert "style=" not in drawn  # the CSP allows no inline style
