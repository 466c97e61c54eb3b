"""The overview's chart of quarantines and releases per day, drawn on the server as SVG.

No script and no library: bars are rectangles placed by arithmetic, colours come from the
console's style sheet (classes, no inline style, which the CSP would refuse), and the same
numbers are in a table beside it for screen readers and for anyone who wants the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup, escape

from storage.overview import ChartEvent

WIDTH, HEIGHT = 720, 220
LEFT, BOTTOM, TOP = 40, 30, 10


@dataclass(frozen=True)
class Day:
    day: date
    quarantined: int
    released: int


def daily(events: Sequence[ChartEvent], today: date, days: int) -> list[Day]:
    """Counts per day for the ``days`` days ending ``today``: an image entering quarantine
    (from any other state) and an admin's release."""
    first = today - timedelta(days=days - 1)
    quarantined = dict.fromkeys((first + timedelta(n) for n in range(days)), 0)
    released = dict(quarantined)
    for event in events:
        day = event.time.date()
        if day not in quarantined:
            continue
        if event.new_state == "quarantined" and event.old_state != "quarantined":
            quarantined[day] += 1
        elif event.new_state == "released":
            released[day] += 1
    return [Day(d, quarantined[d], released[d]) for d in sorted(quarantined)]


def ceiling(value: int) -> int:
    """A round top for the axis (1, 2, 5, 10, 20, 50, ...) at or above ``value``."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def svg(days: Sequence[Day], title: str) -> Markup:
    """The chart as an ``<svg>`` element (``role="img"``, titled) ready to put in a page."""
    top = ceiling(max([1, *(max(d.quarantined, d.released) for d in days)]))
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(1, len(days))
    bar = max(1.0, slot / 2 - 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
    ]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{round(top * fraction)}</text>"
        )
    for n, day in enumerate(days):
        x = LEFT + n * slot
        for offset, value, kind in (
            (0.0, day.quarantined, "quarantined"),
            (bar, day.released, "released"),
        ):
            h = plot_h * value / top
            parts.append(
                f'<rect class="bar {kind}" x="{x + offset:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}"><title>{day.day.isoformat()}: {value} '
                f"{kind}</title></rect>"
            )
        if (len(days) - 1 - n) % 7 == 0:  # a week apart, ending today
            parts.append(
                f'<text class="axis" x="{x + bar:.1f}" y="{HEIGHT - 10}" text-anchor="middle">'
                f"{day.day.strftime('%m-%d')}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
