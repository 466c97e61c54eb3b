"""Webhook deliveries against a real SQLite database and an httpx ``MockTransport`` receiver:
retries with back-off, attempts recorded, restarts and replicas, secrets kept out."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import async_sessionmaker

from config.settings import WebhookSettings
from proxy.webhooks.cloudevents import verify_signature
from proxy.webhooks.dispatcher import WebhookDispatcher
from proxy.webhooks.sender import webhook_key
from services.events import VerdictChange
from storage import webhooks as store
from storage.models import WebhookAttempt, WebhookDelivery

SECRET = "unit-test-webhook-secret-0123"
URL = "http://hooks.test/in/token-in-the-path"
DIGEST = "sha256:" + "cd" * 32


@dataclass
class Receiver:
    """A MockTransport handler: answers from ``statuses`` in turn (the last one repeats)."""

    statuses: list[int | Exception] = field(default_factory=lambda: [200])
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, text="receiver says no" if answer >= 300 else "ok")


def hook(**overrides: Any) -> WebhookSettings:
    values = {"url": URL, "secret": SECRET, "retry_base_seconds": 0.01, **overrides}
    return WebhookSettings(**values)


def dispatcher(
    db: async_sessionmaker[Any], receiver: Receiver, *hooks: WebhookSettings
) -> WebhookDispatcher:
    client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    return WebhookDispatcher(
        hooks or (hook(),), db, client, source="registry-gatekeeper", poll_seconds=0.02
    )


def quarantined(repository: str = "team/app") -> VerdictChange:
    return VerdictChange(
        "quarantined", repository, DIGEST, "pending", "quarantined", "gatekeeper", "bad"
    )


async def rows(db: async_sessionmaker[Any]) -> list[WebhookDelivery]:
    async with db() as session:
        return list((await session.scalars(select(WebhookDelivery))).all())


async def attempts(db: async_sessionmaker[Any]) -> list[WebhookAttempt]:
    async with db() as session:
        query = select(WebhookAttempt).order_by(WebhookAttempt.id)
        return list((await session.scalars(query)).all())


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def run_until_settled(d: WebhookDispatcher, db: async_sessionmaker[Any]) -> None:
    async def settled() -> bool:
        await d.run_once()
        return all(r.state != "pending" for r in await rows(db))

    await until(settled)


async def test_listener_only_records(db: async_sessionmaker[Any]) -> None:
    receiver = Receiver()
    d = dispatcher(db, receiver)
    await d.listener(quarantined())
    (row,) = await rows(db)
    assert (row.state, row.attempts, row.event_type) == ("pending", 0, "image.quarantined")
    assert row.webhook == webhook_key(URL) and row.subject == f"team/app@{DIGEST}"
    assert receiver.requests == []


async def test_a_500_is_retried_and_every_attempt_recorded(db: async_sessionmaker[Any]) -> None:
    receiver = Receiver([500, 200])
    d = dispatcher(db, receiver)
    await d.listener(quarantined())
    await run_until_settled(d, db)
    (row,) = await rows(db)
    assert (row.state, row.attempts, row.last_status, row.last_error) == ("delivered", 2, 200, None)
    assert row.delivered_at is not None
    first, second = await attempts(db)
    assert (first.attempt, first.status, first.error) == (1, 500, "HTTP 500: receiver says no")
    assert (second.attempt, second.status, second.error) == (2, 200, None)
    assert first.duration_ms >= 0
    # The same bytes both times, each signed afresh, verifiable by the receiver.
    bodies = {r.content for r in receiver.requests}
    assert bodies == {row.payload.encode()}
    for request in receiver.requests:
        headers = request.headers
        assert headers["content-type"] == "application/cloudevents+json"
        assert headers["x-gatekeeper-delivery"] == str(row.id)
        assert verify_signature(
            SECRET.encode(),
            headers["x-gatekeeper-timestamp"],
            request.content,
            headers["x-gatekeeper-signature"],
            now=time.time(),
        )


async def test_gives_up_after_max_attempts(db: async_sessionmaker[Any]) -> None:
    receiver = Receiver([503])
    d = dispatcher(db, receiver, hook(max_attempts=3))
    await d.listener(quarantined())
    await run_until_settled(d, db)
    (row,) = await rows(db)
    assert (row.state, row.attempts, row.last_status) == ("failed", 3, 503)
    assert len(receiver.requests) == 3
    assert [a.attempt for a in await attempts(db)] == [1, 2, 3]


async def test_backoff_waits_between_attempts(db: async_sessionmaker[Any]) -> None:
    receiver = Receiver([500, 200])
    d = dispatcher(db, receiver, hook(retry_base_seconds=30))
    await d.listener(quarantined())
    assert await d.run_once() == 1
    assert await d.run_once() == 0  # not due for 30 s
    (row,) = await rows(db)
    assert row.state == "pending" and row.attempts == 1


async def test_connection_errors_and_redirects_are_failed_attempts(
    db: async_sessionmaker[Any],
) -> None:
    receiver = Receiver([httpx.ConnectError(f"cannot reach {URL}"), 302, 200])
    d = dispatcher(db, receiver)
    await d.listener(quarantined())
    await run_until_settled(d, db)
    first, second, third = await attempts(db)
    assert first.status is None
    assert first.error == "ConnectError: cannot reach http://hooks.test"
    assert (second.status, third.status) == (302, 200)


async def test_a_receiver_that_hangs_times_out(db: async_sessionmaker[Any]) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200)

    client = httpx.AsyncClient(transport=httpx.MockTransport(hang))
    settings = hook(timeout_seconds=0.1, max_attempts=1)
    d = WebhookDispatcher([settings], db, client, source="x")
    await d.listener(quarantined())
    await d.run_once()
    (attempt,) = await attempts(db)
    assert attempt.status is None and attempt.error == "no answer within 0.1s"
    assert (await rows(db))[0].state == "failed"


async def test_only_subscribed_events_are_recorded(db: async_sessionmaker[Any]) -> None:
    d = dispatcher(
        db,
        Receiver(),
        hook(url="http://a.test/", events=["image.released"]),
        hook(url="http://b.test/"),
    )
    await d.listener(quarantined())
    await d.listener(
        VerdictChange("warned", "team/app", DIGEST, None, "passed", "gatekeeper", "warn")
    )
    (row,) = await rows(db)
    assert row.webhook == webhook_key("http://b.test/")


async def test_one_event_to_two_webhooks_shares_its_id(db: async_sessionmaker[Any]) -> None:
    d = dispatcher(db, Receiver(), hook(url="http://a.test/"), hook(url="http://b.test/"))
    await d.listener(quarantined())
    a, b = await rows(db)
    assert a.event_id == b.event_id and a.payload == b.payload and a.webhook != b.webhook


async def test_a_restart_sends_what_the_last_process_left(db: async_sessionmaker[Any]) -> None:
    before = dispatcher(db, Receiver())
    await before.listener(quarantined())
    await before.close()  # never started: the row waits in the database
    receiver = Receiver()
    after = dispatcher(db, receiver)
    after.start()
    try:
        await until(lambda: _state_is(db, "delivered"))
    finally:
        await after.close()
    assert len(receiver.requests) == 1


async def test_a_claim_cut_short_is_retried_after_its_lease(db: async_sessionmaker[Any]) -> None:
    d = dispatcher(db, Receiver())
    await d.listener(quarantined())
    async with db() as session, session.begin():  # a process that claimed, then died
        (lost,) = await store.claim_due(session, [webhook_key(URL)], timedelta(seconds=1), 10)
    assert lost.attempt == 1
    assert await d.run_once() == 0  # the lease still holds
    await asyncio.sleep(1.05)
    assert await d.run_once() == 1
    (row,) = await rows(db)
    assert (row.state, row.attempts) == ("delivered", 2)
    async with db() as session, session.begin():  # the dead process's late result is refused
        result = store.AttemptResult(row.created_at, 200, None, 1.0)
        assert await store.record_attempt(session, lost, result, None) is None


async def test_a_last_attempt_cut_short_fails_the_delivery(db: async_sessionmaker[Any]) -> None:
    receiver = Receiver()
    d = dispatcher(db, receiver, hook(max_attempts=1))
    await d.listener(quarantined())
    async with db() as session, session.begin():  # the only attempt, and its process died
        await store.claim_due(session, [webhook_key(URL)], timedelta(0), 10)
    assert await d.run_once() == 1
    (row,) = await rows(db)
    assert (row.state, row.attempts) == ("failed", 1)
    assert row.last_error == "gave up: the last attempt was cut short"
    assert receiver.requests == []


async def test_two_replicas_send_each_delivery_once(db: async_sessionmaker[Any]) -> None:
    receiver = Receiver()
    first, second = dispatcher(db, receiver), dispatcher(db, receiver)
    for n in range(20):
        await first.listener(quarantined(f"team/app{n}"))
    await asyncio.gather(first.run_once(), second.run_once(), first.run_once())
    await run_until_settled(second, db)
    subjects = [r.headers["x-gatekeeper-delivery"] for r in receiver.requests]
    assert len(subjects) == 20 and len(set(subjects)) == 20
    assert {(r.state, r.attempts) for r in await rows(db)} == {("delivered", 1)}


async def test_a_database_outage_keeps_events_in_memory(db: async_sessionmaker[Any]) -> None:
    broken = FlakySessions(db, failures=2)
    receiver = Receiver()
    client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    d = WebhookDispatcher([hook()], broken, client, source="x", poll_seconds=0.02)  # type: ignore[arg-type]
    await d.listener(quarantined())
    assert await rows(db) == []
    d.start()
    try:
        await until(lambda: _state_is(db, "delivered"))
    finally:
        await d.close()
    assert len(receiver.requests) == 1


async def test_the_secret_is_never_stored_or_logged(
    db: async_sessionmaker[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver([500, httpx.ConnectError("refused"), 200])
    d = dispatcher(db, receiver)
    d.start()
    try:
        await d.listener(quarantined())
        await until(lambda: _state_is(db, "delivered"))
    finally:
        await d.close()
    async with db() as session:
        for table in ("webhook_deliveries", "webhook_attempts"):
            dump = str((await session.execute(text(f"SELECT * FROM {table}"))).all())
            assert SECRET not in dump and "token-in-the-path" not in dump
    assert SECRET not in caplog.text
    # httpx's own INFO line names the full URL; the CLI's logging set-up has to quiet it.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("gatekeeper"))
    assert "token-in-the-path" not in ours and "http://hooks.test" in ours


async def _state_is(db: async_sessionmaker[Any], state: str) -> bool:
    found = await rows(db)
    return bool(found) and all(r.state == state for r in found)


class FlakySessions:
    """A sessionmaker whose first ``failures`` sessions cannot reach the database."""

    def __init__(self, db: async_sessionmaker[Any], failures: int) -> None:
        self.db = db
        self.failures = failures

    def __call__(self) -> Any:
        if self.failures > 0:
            self.failures -= 1
            return _Unreachable()
        return self.db()


class _Unreachable:
    async def __aenter__(self) -> Any:
        raise OperationalError("SELECT 1", {}, Exception("database is locked"))

    async def __aexit__(self, *exc: object) -> None:
        return None
