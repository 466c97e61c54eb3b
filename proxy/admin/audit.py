"""``/audit``: read the access log back, filtered like ``gatekeeper audit`` but over HTTP, so
an operator needs no database credentials to see who pulled, pushed or released what.

A reader of some repositories (a team's admin or auditor) sees the rows about those
repositories only; rows about no repository (logins, the catalog) are for global readers."""

from __future__ import annotations

from aiohttp import web

from proxy.admin.access import require, rights
from proxy.admin.common import ok, query_int, query_limit, query_str, query_time, services
from proxy.admin.models import AccessRecord, AccessRecords
from storage.audit import AuditQuery, query_records


async def query(request: web.Request) -> web.StreamResponse:
    """GET /audit?repository=&identity=&action=&status=&digest=&since=&until=&limit= :
    matching rows, oldest first (the newest ``limit`` of them)."""
    filters = AuditQuery(
        repository=query_str(request, "repository"),
        identity=query_str(request, "identity"),
        action=query_str(request, "action", 64),
        status=query_int(request, "status", None, 100, 599),
        digest=query_str(request, "digest", 140),
        since=query_time(request, "since"),
        until=query_time(request, "until"),
        limit=query_limit(request),
    )
    if filters.repository is not None:
        require(request, filters.repository)
    readable = rights(request).reads.patterns
    async with services(request).db() as session:
        records = await query_records(session, filters, patterns=readable)
    return ok(AccessRecords(records=[AccessRecord.model_validate(r) for r in records]))
