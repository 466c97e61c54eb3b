"""``/ui/queue``: the quarantine queue. Filters (repository or glob, state, severity, verifier,
age) and the order are query parameters of a plain GET form, so a filtered view is a link to
share; pages follow by keyset (``storage.queue``), never by offset."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from proxy.admin.access import require_pattern, rights
from proxy.admin.common import STATES, query_str, services
from proxy.admin.errors import AdminCode, AdminError
from proxy.ui import cursor, urls
from proxy.ui.forms import choice
from proxy.ui.render import page
from storage import queue
from storage.queue import AGE_CHOICES, Order, QueueFilter
from storage.timeutil import now as utcnow
from verifiers.base import Severity

PAGE_SIZE = 50
SEVERITIES = tuple(s.name.lower() for s in Severity)
ORDERS = tuple(o.value for o in Order)
SHAPES: dict[Order, tuple[type, ...]] = {
    Order.NEWEST: (datetime, str, str),
    Order.OLDEST: (datetime, str, str),
    Order.REPOSITORY: (str, str),
}


def _filter(request: web.Request) -> tuple[QueueFilter, dict[str, str]]:
    repository = query_str(request, "repository")
    if repository is not None and any(c.isspace() for c in repository):
        raise AdminError(AdminCode.BAD_REQUEST, "repository: a name or a glob, without spaces")
    state = choice(request, "state", ("", *STATES), "quarantined")
    severity = choice(request, "severity", ("", *SEVERITIES))
    verifier = query_str(request, "verifier", 100)
    age = choice(request, "age", AGE_CHOICES)
    order = Order(choice(request, "order", ORDERS, Order.NEWEST.value))
    after, before = queue.age_window(age, utcnow())
    chosen = QueueFilter(
        repository=repository,
        state=state or None,
        severity=Severity.parse(severity) if severity else None,
        verifier=verifier,
        changed_after=after,
        changed_before=before,
        order=order,
    )
    shown = {
        "repository": repository or "",
        "state": state,
        "severity": severity,
        "verifier": verifier or "",
        "age": age,
        "order": order.value,
    }
    return chosen, shown


async def page_view(request: web.Request) -> web.StreamResponse:
    """GET /ui/queue : one page of images matching the filters, within the reader's scope."""
    chosen, shown = _filter(request)
    if chosen.repository is not None and "*" not in chosen.repository:
        require_pattern(request, chosen.repository)
    after = cursor.decode(request.query.get("after"), SHAPES[chosen.order])
    async with services(request).db() as session:
        found = await queue.queue_page(
            session, chosen, patterns=rights(request).reads.patterns, after=after, limit=PAGE_SIZE
        )
        keys = [(v.repository, v.digest) for v in found.rows]
        counts = await queue.severity_counts(session, keys)
    verifiers = sorted(services(request).settings.verifiers)
    following = None
    if found.more and found.rows:
        key = queue.cursor_of(found.rows[-1], chosen.order)
        following = urls.with_query("/ui/queue", {**shown, "after": cursor.encode(key)})
    rows: list[dict[str, Any]] = [
        {"verdict": v, "counts": counts[(v.repository, v.digest)]} for v in found.rows
    ]
    return page(
        request,
        "queue.html",
        {
            "rows": rows,
            "shown": shown,
            "states": STATES,
            "severities": SEVERITIES,
            "verifiers": verifiers,
            "ages": AGE_CHOICES,
            "orders": ORDERS,
            "next_url": following,
            "first_url": urls.with_query("/ui/queue", shown) if after is not None else None,
        },
    )
