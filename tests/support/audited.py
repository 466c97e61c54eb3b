"""An httpx client that remembers every exchange, so tests can prove each request has exactly
one access-log row with the right facts (matched by the ``X-Request-Id`` the gatekeeper sends)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.gatekeeper import Gatekeeper


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    request_id: str | None
    bytes_in: int
    bytes_out: int


@dataclass
class Recorder:
    exchanges: list[Exchange] = field(default_factory=list)

    def hook(self, response: httpx.Response) -> None:
        response.read()
        request = response.request
        self.exchanges.append(
            Exchange(
                method=request.method,
                path=request.url.path,
                status=response.status_code,
                request_id=response.headers.get("X-Request-Id"),
                bytes_in=len(request.content) if request.method not in ("GET", "HEAD") else 0,
                bytes_out=0 if request.method == "HEAD" else len(response.content),
            )
        )


def audited_client(gatekeeper: Gatekeeper, **kwargs: Any) -> tuple[httpx.Client, Recorder]:
    recorder = Recorder()
    client = httpx.Client(
        base_url=gatekeeper.url,
        timeout=60,
        event_hooks={"response": [recorder.hook]},
        **kwargs,
    )
    return client, recorder


def assert_one_row_each(gatekeeper: Gatekeeper, recorder: Recorder) -> list[dict[str, Any]]:
    """Every recorded exchange has exactly one row, with matching method, path, status and
    byte counts. Returns the rows in exchange order."""
    ids = [ex.request_id for ex in recorder.exchanges]
    assert all(ids), "every response must carry X-Request-Id"
    params = {f"id{n}": request_id for n, request_id in enumerate(ids)}
    placeholders = ",".join(f":{name}" for name in params)
    rows = gatekeeper.wait_audit(len(ids), f"request_id IN ({placeholders})", params)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row["request_id"], []).append(row)
    ordered = []
    for ex in recorder.exchanges:
        found = by_id.get(ex.request_id or "", [])
        assert len(found) == 1, f"{ex.method} {ex.path}: {len(found)} access-log rows"
        row = found[0]
        assert (row["method"], row["path"], row["status"]) == (ex.method, ex.path, ex.status)
        assert row["bytes_in"] == ex.bytes_in, (ex, row)
        assert row["bytes_out"] == ex.bytes_out, (ex, row)
        ordered.append(row)
    return ordered
