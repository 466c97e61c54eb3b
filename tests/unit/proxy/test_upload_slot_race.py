"""A POST whose session the upstream opened but the table refuses (another process took the
identity's last slot meanwhile, or the table cannot be written) must not leave that session
open upstream: it belongs to nobody, so nobody could finish or cancel it. The race itself
needs two processes and luck; here the table's answer is made what the loser gets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy.exc import OperationalError
from yarl import URL

from proxy import upload_sessions
from storage import uploads
from tests.fakes.upstream import FakeUpstream
from tests.support.database import Database

pytestmark = pytest.mark.database


async def _slot_taken(*_args: Any, **_kwargs: Any) -> None:
    return None  # what storage.uploads.reserve answers when the cap is reached


async def _disk_full(*_args: Any, **_kwargs: Any) -> None:
    raise OperationalError("INSERT INTO upload_sessions", {}, Exception("database or disk is full"))


async def _row(db: Database, request_id: str) -> dict[str, Any]:
    for _ in range(200):
        rows = db.fetch("SELECT * FROM access_log WHERE request_id = :id", {"id": request_id})
        if rows:
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no access-log row for {request_id}")


@pytest.mark.parametrize(
    ("table", "status", "code", "says"),
    [
        (_slot_taken, 429, "TOOMANYREQUESTS", "open upload sessions"),
        (_disk_full, 503, "UNAVAILABLE", "database is full"),
    ],
)
async def test_a_post_the_table_refuses_cancels_the_session_the_upstream_opened(
    fake_upstream: tuple[FakeUpstream, TestServer],
    gatekeeper_client: Callable[..., Any],
    fresh_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    table: Callable[..., Any],
    status: int,
    code: str,
    says: str,
) -> None:
    fake, server = fake_upstream
    client = await gatekeeper_client(str(server.make_url("")))
    monkeypatch.setattr(uploads, "reserve", table)
    resp = await client.post("/v2/race/lost/blobs/uploads/")
    assert resp.status == status, await resp.text()
    error = (await resp.json())["errors"][0]
    assert error["code"] == code and says in error["message"], error
    assert "Location" not in resp.headers  # the client never hears of the session
    opened = [path for method, path, _ in fake.seen if method == "POST"]
    cancelled = [path for method, path, _ in fake.seen if method == "DELETE"]
    assert len(opened) == 1
    assert cancelled == ["/v2/race/lost/blobs/uploads/session-1?_state=opaque"]
    row = await _row(fresh_db, resp.headers["X-Request-Id"])
    assert (row["status"], row["upstream_status"]) == (status, 202)
    assert "upstream session session-1 cancelled" in row["reason"], row["reason"]


async def test_a_post_the_table_records_cancels_nothing(
    fake_upstream: tuple[FakeUpstream, TestServer],
    gatekeeper_client: Callable[..., Any],
) -> None:
    fake, server = fake_upstream
    client = await gatekeeper_client(str(server.make_url("")))
    resp = await client.post("/v2/race/won/blobs/uploads/")
    assert resp.status == 202, await resp.text()
    assert resp.headers["Docker-Upload-UUID"].startswith("session-")
    assert [method for method, _, _ in fake.seen if method == "DELETE"] == []


async def test_concurrent_posts_of_one_identity_never_ask_the_upstream_beyond_the_cap(
    fake_upstream: tuple[FakeUpstream, TestServer],
    gatekeeper_client: Callable[..., Any],
) -> None:
    """Admissions take turns for a read of what the identity holds, and count its POSTs in
    flight: twenty at once against a cap of three, with the upstream slow to answer, send
    three upstream; none is opened only to be cancelled. The memory of who has POSTs in
    flight is empty again afterwards (bounded by what is in flight, not by who ever came)."""
    fake, server = fake_upstream
    fake.upload_delay = 0.2
    client = await gatekeeper_client(
        str(server.make_url("")), uploads__max_sessions_per_identity="3"
    )
    answers = await asyncio.gather(
        *(client.post("/v2/race/many/blobs/uploads/") for _ in range(20))
    )
    assert sorted(a.status for a in answers) == [202] * 3 + [429] * 17
    assert fake.opened == 3
    assert [method for method, _, _ in fake.seen if method == "DELETE"] == []
    assert all(not kept.opening for kept in upload_sessions._remembered.values())


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every admission read of the table (``storage.uploads.live_count``), by owner."""
    reads: list[str] = []
    real = uploads.live_count

    async def counted(session: Any, owner: str, *args: Any) -> int:
        reads.append(owner)
        return await real(session, owner, *args)

    monkeypatch.setattr(uploads, "live_count", counted)
    return reads


async def test_posts_far_below_the_cap_are_admitted_on_a_recent_read(
    fake_upstream: tuple[FakeUpstream, TestServer],
    gatekeeper_client: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A steady stream of one identity's POSTs (a CI fleet behind one account) reads the
    table once a second, not once a POST, while what it may hold stays under half its cap;
    nearer the cap each POST reads again, and at the cap the upstream is not asked."""
    fake, server = fake_upstream
    reads = _count_reads(monkeypatch)
    client = await gatekeeper_client(
        str(server.make_url("")), uploads__max_sessions_per_identity="8"
    )
    statuses = [(await client.post("/v2/steady/app/blobs/uploads/")).status for _ in range(10)]
    assert statuses == [202] * 8 + [429] * 2
    # Reads: the first POST's; none while the read's bound and the POSTs admitted since stay
    # within half the cap (the 2nd to 4th); then one each (the 5th to 10th).
    assert len(reads) == 1 + 6, reads
    assert fake.opened == 8

    # A read older than KNOWN_SECONDS admits nothing: the next POST reads again.
    monkeypatch.setattr(upload_sessions, "KNOWN_SECONDS", 0.0)
    other = [(await client.post("/v2/steady/other/blobs/uploads/")).status for _ in range(2)]
    assert other == [429, 429] and len(reads) == 9 and fake.opened == 8


async def test_a_session_recorded_a_moment_ago_is_not_read_again(
    fake_upstream: tuple[FakeUpstream, TestServer],
    gatekeeper_client: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The closing PUT right after the POST that recorded the session needs no read of its
    row; once the session is over (or the moment has passed) a request on it reads again."""
    _fake, server = fake_upstream
    reads: list[str] = []
    real = uploads.opened

    async def counted(session: Any, repository: str, upstream_session: str) -> Any:
        reads.append(upstream_session)
        return await real(session, repository, upstream_session)

    monkeypatch.setattr(uploads, "opened", counted)
    client = await gatekeeper_client(str(server.make_url("")))
    started = await client.post("/v2/moment/app/blobs/uploads/")
    assert started.status == 202, await started.text()
    location = URL(started.headers["Location"]).path_qs
    status = await client.get(location)
    assert status.status == 204 and reads == [], (status.status, reads)

    monkeypatch.setattr(upload_sessions, "USED_SECONDS", 0.0)
    status = await client.get(location)
    assert status.status == 204 and len(reads) == 1
    cancelled = await client.delete(location)
    assert cancelled.status == 204 and len(reads) == 2

    monkeypatch.setattr(upload_sessions, "USED_SECONDS", 60.0)
    gone = await client.get(location)  # over: nothing remembered, the row read, and gone
    assert gone.status == 404 and len(reads) == 3
    assert (await gone.json())["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
