"""Webhooks end to end: a real gatekeeper sends signed CloudEvents to a receiver on loopback,
and retries after the receiver first answers 500."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from config.settings import WebhookSettings
from proxy.webhooks import WebhookDispatcher
from services.events import VerdictChange
from storage import webhooks as webhook_store
from storage.db import create_engine, sessionmaker, upgrade
from storage.models import WebhookAttempt
from tests.support.database import Database, as_datetime
from tests.support.fixtures import running_gatekeeper
from tests.support.gatekeeper import Gatekeeper
from tests.support.ocihttp import image_config, push_image
from tests.support.registry import Registry
from tests.support.webhooks import SECRET, Receiver, check_signature

pytestmark = pytest.mark.e2e

FAKES = "tests.fakes.verifiers"
CRITICAL = json.dumps([{"rule_id": "CVE-2099-0101", "severity": "critical", "title": "rce"}])


@pytest.fixture(scope="module")
def gk(
    registry: Registry, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gatekeeper]:
    policy = {
        "name": "hooked",
        "repositories": ["hook/*"],
        "mode": "enforce",
        "require": ["config-sanity", "labels"],
    }
    webhook = {
        "url": receiver.url,
        "secret": SECRET,
        "retry_base_seconds": 0.2,
        "timeout_seconds": 5,
    }
    env = {
        "GATEKEEPER_POLICIES": json.dumps([policy]),
        "GATEKEEPER_VERIFIERS": json.dumps(
            {"config-sanity": {}, "labels": {"plugin": f"{FAKES}:LabelFindings"}}
        ),
        "GATEKEEPER_WEBHOOKS": json.dumps([webhook]),
    }
    with running_gatekeeper(tmp_path_factory.mktemp("hooks"), registry.url, env) as started:
        yield started


def push(gk: Gatekeeper, repo: str, labels: dict[str, str]) -> str:
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        config = image_config(labels, layers=1)
        digest, _ = push_image(http, repo, "v1", [os.urandom(512)], config)
    return digest


def delivery_rows(gk: Gatekeeper, delivery_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    (row,) = gk.database.fetch(
        "SELECT * FROM webhook_deliveries WHERE id = :id", {"id": int(delivery_id)}
    )
    tries = gk.database.fetch(
        "SELECT * FROM webhook_attempts WHERE delivery_id = :id ORDER BY attempt",
        {"id": int(delivery_id)},
    )
    return row, tries


def wait_delivered(gk: Gatekeeper, delivery_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    deadline = time.monotonic() + 10
    while True:
        row, tries = delivery_rows(gk, delivery_id)
        if row["state"] == "delivered" or time.monotonic() > deadline:
            return row, tries
        time.sleep(0.05)


def test_quarantine_is_sent_signed_and_retried_after_a_500(
    gk: Gatekeeper, receiver: Receiver
) -> None:
    digest = push(gk, "hook/bad", {"test.findings": CRITICAL})
    subject = f"hook/bad@{digest}"
    got = receiver.wait(subject, answered=200)
    assert [r.answered for r in got] == [500, 200]
    first, second = got
    assert first.body == second.body  # the same event, byte for byte
    delivery = first.headers["X-Gatekeeper-Delivery"]
    assert second.headers["X-Gatekeeper-Delivery"] == delivery
    for request in got:
        assert request.headers["Content-Type"] == "application/cloudevents+json"
        assert request.headers["X-Gatekeeper-Event"] == "image.quarantined"
        check_signature(request)
    event = first.event
    assert event["specversion"] == "1.0" and event["type"] == "image.quarantined"
    assert event["source"] == "registry-gatekeeper" and event["subject"] == subject
    assert event["datacontenttype"] == "application/json" and event["time"].endswith("Z")
    data = event["data"]
    assert (data["repository"], data["digest"]) == ("hook/bad", digest)
    assert (data["old_state"], data["new_state"]) == ("pending", "quarantined")
    assert data["actor"] == "gatekeeper" and data["policy"] == "hooked"
    assert "CVE-2099-0101" in data["reason"]

    row, tries = wait_delivered(gk, delivery)
    assert (row["state"], row["attempts"], row["last_status"]) == ("delivered", 2, 200)
    assert row["event_id"] == event["id"] and row["event_type"] == "image.quarantined"
    assert [(t["attempt"], t["status"]) for t in tries] == [(1, 500), (2, 200)]
    assert tries[0]["error"] == "HTTP 500" and tries[1]["error"] is None
    first_at, second_at = (as_datetime(t["time"]) for t in tries)
    assert (second_at - first_at).total_seconds() >= 0.2  # retry_base_seconds
    log = gk.log_path.read_text()
    assert SECRET not in log
    assert f"delivery {delivery} (image.quarantined {subject})" in log


def test_a_passing_image_sends_image_passed(gk: Gatekeeper, receiver: Receiver) -> None:
    digest = push(gk, "hook/good", {})
    got = receiver.wait(f"hook/good@{digest}", answered=200)
    assert {r.event["type"] for r in got} == {"image.passed"}
    data = got[-1].event["data"]
    assert (data["old_state"], data["new_state"]) == ("pending", "passed")
    for request in got:
        check_signature(request)
    row, _ = wait_delivered(gk, got[-1].headers["X-Gatekeeper-Delivery"])
    assert (row["state"], row["attempts"]) == ("delivered", 2)


@pytest.mark.own_database(reason="its dispatchers share postgres_db whatever --db says")
async def test_replicas_on_postgres_send_each_delivery_once_with_retries(
    postgres_db: Database,
) -> None:
    """The claim queries on the other backend: ``FOR UPDATE SKIP LOCKED``, zone-aware times."""
    engine = create_engine(postgres_db.url)
    sent: list[str] = []

    def fail_first_attempt(request: httpx.Request) -> httpx.Response:
        delivery = request.headers["X-Gatekeeper-Delivery"]
        status = 200 if delivery in sent else 500
        sent.append(delivery)
        return httpx.Response(status)

    try:
        await upgrade(engine)
        db = sessionmaker(engine)
        settings = WebhookSettings(url="http://hooks.test/", secret=SECRET, retry_base_seconds=0.05)  # type: ignore[arg-type]
        replicas = [
            WebhookDispatcher(
                [settings],
                db,
                httpx.AsyncClient(transport=httpx.MockTransport(fail_first_attempt)),
                source="registry-gatekeeper",
                poll_seconds=0.05,
            )
            for _ in range(3)
        ]
        for n in range(30):
            change = VerdictChange(
                "passed", f"pg/app{n}", "sha256:" + "ef" * 32, "pending", "passed", "gk", "ok"
            )
            await replicas[n % 3].listener(change)
        for replica in replicas:
            replica.start()
        deadline = time.monotonic() + 30
        while len(sent) < 60 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # let any duplicate show up
        for replica in replicas:
            await replica.close()
        assert len(sent) == 60 and all(sent.count(d) == 2 for d in set(sent))
        async with db() as session:
            assert await webhook_store.counts(session) == {"delivered": 30}
            grouped = await session.execute(
                select(WebhookAttempt.delivery_id, func.count()).group_by(
                    WebhookAttempt.delivery_id
                )
            )
            per_delivery = {int(d): int(n) for d, n in grouped.all()}
        assert len(per_delivery) == 30 and set(per_delivery.values()) == {2}
    finally:
        await engine.dispose()
