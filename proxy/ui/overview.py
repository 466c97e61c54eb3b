"""``/ui/``: the overview. Images by state, the latest verdict changes, the advisory data in
use and its last sync, dead-lettered verifications, failing webhooks, and a chart of
quarantines and releases over the last 30 days, all within the reader's repositories (the
advisory data and webhooks name none, so every reader sees them)."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from proxy.admin.access import rights
from proxy.admin.common import STATES, services
from proxy.ui import chart
from proxy.ui.render import page
from storage import overview
from storage.timeutil import now as utcnow

CHART_DAYS = 30


async def page_view(request: web.Request) -> web.StreamResponse:
    """GET /ui/"""
    patterns = rights(request).reads.patterns
    moment = utcnow()
    since = moment - timedelta(days=CHART_DAYS)
    async with services(request).db() as session:
        counts = await overview.state_counts(session, patterns)
        changes = await overview.recent_changes(session, patterns)
        advisories = await overview.advisory_state(session)
        dead_total, dead = await overview.dead_jobs(session, patterns)
        webhooks = await overview.failing_webhooks(session)
        events = await overview.chart_events(session, since, patterns)
    days = chart.daily(events, moment.date(), CHART_DAYS)
    return page(
        request,
        "overview.html",
        {
            "counts": [(state, counts.get(state, 0)) for state in STATES],
            "changes": changes,
            "advisories": advisories,
            "dead_total": dead_total,
            "dead": dead,
            "webhooks": webhooks,
            "days": days,
            "chart": chart.svg(
                days, f"Images quarantined and released per day, last {CHART_DAYS} days"
            ),
            "quarantined_total": sum(d.quarantined for d in days),
            "released_total": sum(d.released for d in days),
        },
    )
