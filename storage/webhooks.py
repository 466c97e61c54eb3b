"""Persisted webhook deliveries: record them, claim the due ones, store each attempt's result.

Every attempt is a row of its own table (``webhook_attempts``) rather than an entry of a JSON
list on the delivery: an attempt is appended with one INSERT, never a read-modify-write of a
growing column that two replicas could race on; the history stays queryable across deliveries
("every timeout from this receiver today"); and a delivery row keeps a fixed size however often
it is retried. The delivery keeps the summary a list needs (attempts, last status, last error).

A claim is one guarded UPDATE, as in ``storage/jobs.py``: it bumps ``attempts`` and pushes
``next_attempt_at`` forward by a lease, only where the row is still pending and due, so the row
count says whether this process won (PostgreSQL picks candidates with ``FOR UPDATE SKIP
LOCKED``). There is no ``sending`` state: a process that dies mid-send leaves the row pending,
due again once the lease has run out. ``attempts`` doubles as a fencing token: a result is
stored only while the row still carries the attempt number of the claim.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import WebhookAttempt, WebhookDelivery
from storage.prepared import dialect_of
from storage.timeutil import now as utcnow
from storage.timeutil import utc

# SQLite hands timestamps back without a zone, so the ORM cannot re-evaluate these UPDATEs.
NO_SYNC = {"synchronize_session": False}
MAX_ERROR = 2000


@dataclass(frozen=True)
class NewDelivery:
    """An event owed to one webhook, as the bus listener records it."""

    webhook: str
    """Key of the receiver (a hash of its URL; the URL itself may hold a token)."""
    event_id: str
    """The CloudEvents ``id``: the same for every webhook the event goes to."""
    event_type: str
    subject: str
    payload: str
    """The exact body to send (and sign), on every attempt."""


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery this process has won for one attempt."""

    id: int
    webhook: str
    event_type: str
    subject: str
    payload: str
    attempt: int
    """The number of this attempt (1 for the first); the claim's fencing token."""


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt came to."""

    started: datetime
    status: int | None
    """The receiver's HTTP status; None if no response arrived."""
    error: str | None
    """Why the attempt did not count as delivered; None if it did."""
    duration_ms: float


async def insert_deliveries(session: AsyncSession, deliveries: Sequence[NewDelivery]) -> None:
    """Record deliveries, due at once."""
    moment = utcnow()
    session.add_all(
        WebhookDelivery(
            webhook=d.webhook,
            event_id=d.event_id,
            event_type=d.event_type,
            subject=d.subject,
            payload=d.payload,
            state="pending",
            attempts=0,
            next_attempt_at=moment,
            created_at=moment,
        )
        for d in deliveries
    )
    await session.flush()


def _due(webhooks: Collection[str], moment: datetime) -> Any:
    return (
        (WebhookDelivery.state == "pending")
        & (WebhookDelivery.next_attempt_at <= moment)
        & WebhookDelivery.webhook.in_(webhooks)
    )


async def claim_due(
    session: AsyncSession, webhooks: Collection[str], lease: timedelta, limit: int
) -> list[ClaimedDelivery]:
    """Claim up to ``limit`` due deliveries of the given webhooks, oldest first."""
    if not webhooks:
        return []
    moment = utcnow()
    query = select(WebhookDelivery).where(_due(webhooks, moment))
    query = query.order_by(WebhookDelivery.id).limit(limit)
    if dialect_of(session) == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for row in (await session.scalars(query)).all():
        won = await session.execute(
            update(WebhookDelivery)
            .execution_options(**NO_SYNC)
            .where(WebhookDelivery.id == row.id, WebhookDelivery.attempts == row.attempts)
            .where(_due(webhooks, moment))
            .values(attempts=row.attempts + 1, next_attempt_at=moment + lease)
        )
        if won.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(
                ClaimedDelivery(
                    row.id, row.webhook, row.event_type, row.subject, row.payload, row.attempts + 1
                )
            )
    return claimed


async def record_attempt(
    session: AsyncSession,
    delivery: ClaimedDelivery,
    result: AttemptResult,
    retry_at: datetime | None,
) -> str | None:
    """Store one attempt and move the delivery on: ``delivered`` if ``result`` has no error,
    else ``pending`` until ``retry_at``, or ``failed`` when ``retry_at`` is None.

    The attempt row is always written (it happened); the delivery is updated only if this
    process still holds the claim. Returns the new state, or None if the claim was lost.
    """
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempt=delivery.attempt,
            time=result.started,
            status=result.status,
            error=_clip(result.error),
            duration_ms=result.duration_ms,
        )
    )
    values: dict[str, Any] = {"last_status": result.status, "last_error": _clip(result.error)}
    if result.error is None:
        values.update(state="delivered", delivered_at=utcnow())
    elif retry_at is None:
        values.update(state="failed")
    else:
        values.update(state="pending", next_attempt_at=retry_at)
    updated = await session.execute(
        update(WebhookDelivery)
        .execution_options(**NO_SYNC)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.attempts == delivery.attempt,
            WebhookDelivery.state == "pending",
        )
        .values(**values)
    )
    return str(values["state"]) if updated.rowcount == 1 else None  # type: ignore[attr-defined]


async def give_up(session: AsyncSession, delivery: ClaimedDelivery, error: str) -> bool:
    """Fail a delivery without sending it (its last attempt was interrupted)."""
    updated = await session.execute(
        update(WebhookDelivery)
        .execution_options(**NO_SYNC)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.attempts == delivery.attempt,
            WebhookDelivery.state == "pending",
        )
        .values(state="failed", attempts=delivery.attempt - 1, last_error=_clip(error))
    )
    return bool(updated.rowcount)  # type: ignore[attr-defined]


async def next_due(session: AsyncSession, webhooks: Collection[str]) -> datetime | None:
    """When the earliest pending delivery of these webhooks is due."""
    if not webhooks:
        return None
    moment = await session.scalar(
        select(func.min(WebhookDelivery.next_attempt_at)).where(
            WebhookDelivery.state == "pending", WebhookDelivery.webhook.in_(webhooks)
        )
    )
    return utc(moment)


async def pending_elsewhere(session: AsyncSession, webhooks: Collection[str]) -> int:
    """Pending deliveries to webhooks that are no longer configured (they are kept, unsent)."""
    count = await session.scalar(
        select(func.count())
        .select_from(WebhookDelivery)
        .where(WebhookDelivery.state == "pending", WebhookDelivery.webhook.not_in(webhooks))
    )
    return int(count or 0)


async def counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
    )
    return {state: int(n) for state, n in rows.all()}


def _clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_ERROR]
