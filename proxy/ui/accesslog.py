"""``/ui/log``: the access log, searched by identity, repository, action, decision, status and a
time range, newest first, a keyset page at a time (``storage.audit_search``); the same search
exported whole as CSV or JSON lines, streamed page by page.

A reader of some repositories sees the rows about those only; rows about no repository (sign-
ins, the catalog) are for readers of every repository, as in the admin API. CSV cells that a
spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@`` first) are prefixed with ``'``:
identities and paths are whatever clients sent."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

from aiohttp import web

from proxy.admin.access import require, rights
from proxy.admin.common import query_int, query_str, query_time, services
from proxy.ui import cursor, urls
from proxy.ui.render import page
from storage import audit_search
from storage.audit_search import FIELDS, LogFilter, LogRow

PAGE_SIZE = 100
SHAPE = (datetime, int)
FILTERS = ("identity", "repository", "action", "decision", "status", "since", "until", "digest")


def _filter(request: web.Request) -> tuple[LogFilter, dict[str, str]]:
    chosen = LogFilter(
        identity=query_str(request, "identity"),
        repository=query_str(request, "repository"),
        action=query_str(request, "action", 64),
        decision=query_str(request, "decision", 32),
        status=query_int(request, "status", None, 100, 599),
        digest=query_str(request, "digest", 140),
        since=query_time(request, "since"),
        until=query_time(request, "until"),
    )
    if chosen.repository is not None:
        require(request, chosen.repository)
    shown = {key: request.query.get(key, "") for key in FILTERS}
    return chosen, shown


async def page_view(request: web.Request) -> web.StreamResponse:
    """GET /ui/log"""
    chosen, shown = _filter(request)
    after = cursor.decode(request.query.get("after"), SHAPE)
    async with services(request).db() as session:
        found = await audit_search.search(
            session, chosen, patterns=rights(request).reads.patterns, after=after, limit=PAGE_SIZE
        )
    following = None
    if found.more and found.rows:
        key = audit_search.cursor_of(found.rows[-1])
        following = urls.with_query("/ui/log", {**shown, "after": cursor.encode(key)})
    return page(
        request,
        "accesslog.html",
        {
            "rows": found.rows,
            "shown": shown,
            "next_url": following,
            "first_url": urls.with_query("/ui/log", shown) if after is not None else None,
            "csv_url": urls.with_query("/ui/log.csv", shown),
            "jsonl_url": urls.with_query("/ui/log.jsonl", shown),
        },
    )


def _csv_cell(value: Any) -> str:
    text = (
        "" if value is None else (value.isoformat() if isinstance(value, datetime) else str(value))
    )
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(rows: list[LogRow], header: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(["id", *FIELDS])
    for row in rows:
        data = row.record.as_json()
        writer.writerow([row.id, *(_csv_cell(data[name]) for name in FIELDS)])
    return out.getvalue().encode()


def _jsonl(rows: list[LogRow], header: bool) -> bytes:
    return b"".join(
        json.dumps({"id": r.id, **r.record.as_json()}, separators=(",", ":")).encode() + b"\n"
        for r in rows
    )


async def _export(
    request: web.Request, content_type: str, suffix: str, write: Any
) -> web.StreamResponse:
    chosen, _ = _filter(request)
    response = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="access-log.{suffix}"',
        }
    )
    await response.prepare(request)
    first = True
    async for rows in audit_search.walk(
        services(request).db, chosen, patterns=rights(request).reads.patterns
    ):
        await response.write(write(rows, first))
        first = False
    if first:
        await response.write(write([], True))
    await response.write_eof()
    return response


async def export_csv(request: web.Request) -> web.StreamResponse:
    """GET /ui/log.csv : every matching row, newest first."""
    return await _export(request, "text/csv; charset=utf-8", "csv", _csv)


async def export_jsonl(request: web.Request) -> web.StreamResponse:
    """GET /ui/log.jsonl : every matching row as one JSON object per line, newest first."""
    return await _export(request, "application/x-ndjson", "jsonl", _jsonl)
