"""Hold the gatekeeper's access log against what a real client says it sent.

A client's debug log lists every HTTP request it made (see :mod:`tests.support.clients`); the
access log must hold exactly one row per request, with the action the Distribution spec's
route implies. The route table below is written independently of the proxy's own, from the
spec, so a routing mistake in the proxy shows up as a wrong ``action`` here.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from tests.support.clients import ClientRun, HttpRequest
from tests.support.database import QueryError
from tests.support.gatekeeper import Gatekeeper

Row = dict[str, Any]

SETTLE_SECONDS = 0.3
"""After the expected rows arrived, wait this long for unexpected extra ones (writes are
batched every 0.05 s in tests)."""

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?P<name>{_COMPONENT}(?:/{_COMPONENT})*)"
_ROUTES: tuple[tuple[re.Pattern[str], dict[str, str]], ...] = (
    (re.compile(r"/v2/?"), {"GET": "api.version"}),
    (re.compile(r"/v2/_catalog"), {"GET": "catalog.list"}),
    (re.compile(rf"/v2/{_NAME}/tags/list"), {"GET": "tags.list"}),
    (
        re.compile(rf"/v2/{_NAME}/manifests/(?P<reference>[^/]+)"),
        {
            "GET": "manifest.pull",
            "HEAD": "manifest.head",
            "PUT": "manifest.push",
            "DELETE": "manifest.delete",
        },
    ),
    (re.compile(rf"/v2/{_NAME}/blobs/uploads/?"), {"POST": "upload.start"}),
    (
        re.compile(rf"/v2/{_NAME}/blobs/uploads/(?P<uuid>[^/]+)"),
        {
            "PATCH": "upload.chunk",
            "PUT": "blob.push",
            "GET": "upload.status",
            "DELETE": "upload.cancel",
        },
    ),
    (
        re.compile(rf"/v2/{_NAME}/blobs/(?P<digest>[a-z0-9]+:[a-zA-Z0-9=_-]+)"),
        {"GET": "blob.pull", "HEAD": "blob.head", "DELETE": "blob.delete"},
    ),
    (re.compile(rf"/v2/{_NAME}/referrers/(?P<digest>[^/]+)"), {"GET": "referrers.list"}),
)


@dataclass(frozen=True)
class ExpectedRow:
    """What the access log must say about one request."""

    method: str
    path: str
    """Without the query string."""
    action: str
    """One of the gatekeeper's action names, e.g. ``blob.pull``."""
    repository: str | None
    """``None`` for the routes without one (``/v2/``, ``/v2/_catalog``)."""


def expected_row(request: HttpRequest) -> ExpectedRow:
    """The action and repository the spec's route table gives ``request``."""
    for pattern, actions in _ROUTES:
        match = pattern.fullmatch(request.path)
        if match is None:
            continue
        action = actions.get(request.method)
        if action is None:
            break
        query = parse_qs(request.parts.query)
        if action == "upload.start" and "mount" in query:
            action = "upload.mount"
        elif action == "upload.start" and "digest" in query:
            action = "blob.push"
        repository = match.groupdict().get("name")
        return ExpectedRow(request.method, request.path, action, repository)
    raise AssertionError(f"client sent a request outside the Distribution API: {request}")


@dataclass(frozen=True)
class AuditedRun:
    """A client command and the access-log rows written while it ran."""

    run: ClientRun
    rows: tuple[Row, ...]
    """Every row written from just before the command started until it settled, oldest first."""

    def rows_for(self, action: str, repository: str | None = None) -> list[Row]:
        """Rows of one action, optionally for one repository."""
        return [
            row
            for row in self.rows
            if row["action"] == action and (repository is None or row["repository"] == repository)
        ]

    def assert_one_row_per_request(self) -> None:
        """Each request the client sent has exactly one row, with the spec's action and repo."""
        expected = Counter(expected_row(request) for request in self.run.requests)
        logged = Counter(
            ExpectedRow(row["method"], _path_only(row["path"]), row["action"], row["repository"])
            for row in self.rows
        )
        missing, extra = expected - logged, logged - expected
        assert not missing and not extra, (
            f"access log does not match the requests of: {' '.join(self.run.args)}\n"
            f"requests without their row: {_listing(missing)}\n"
            f"rows without their request: {_listing(extra)}"
        )


def audited(gatekeeper: Gatekeeper, command: Callable[[], ClientRun]) -> AuditedRun:
    """Run a client command and collect exactly the rows it caused.

    Tests in a module share one gatekeeper and run one after the other, so the rows after the
    highest id seen before the command are the command's own, once every request's row is in.
    """
    before = _last_id(gatekeeper)
    run = command()
    # Verdict events are rows too, but not requests: leave them out of the match.
    where, params = "id > :before AND method != 'EVENT'", {"before": before}
    gatekeeper.wait_audit(len(run.requests), where, params)
    time.sleep(SETTLE_SECONDS)
    return AuditedRun(run=run, rows=tuple(gatekeeper.audit_rows(where, params)))


def _last_id(gatekeeper: Gatekeeper) -> int:
    try:
        rows = gatekeeper.audit_rows("id = (SELECT MAX(id) FROM access_log)")
    except QueryError:  # no database or table yet: nothing logged so far
        return 0
    return int(rows[0]["id"]) if rows else 0


def _path_only(path: str) -> str:
    return path.split("?", 1)[0]


def _listing(rows: Counter[ExpectedRow]) -> str:
    if not rows:
        return "none"
    return "".join(
        f"\n  {count} x {row.method} {row.path} -> {row.action} ({row.repository})"
        for row, count in sorted(rows.items(), key=lambda item: item[0].path)
    )
