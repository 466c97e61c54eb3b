"""What the console's overview shows: images by state, recent verdict changes, the advisory
data in use, dead-lettered verifications, failing webhook deliveries, and the verdict events
its chart counts. Readers of some repositories get theirs only (``patterns``); what belongs to
no repository (advisory data, webhooks) is for every reader, since it names none."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import globs
from storage.models import (
    AdvisoryDataVersion,
    AdvisoryMirror,
    Job,
    Verdict,
    VerdictEvent,
    WebhookDelivery,
)
from storage.timeutil import utc
from storage.verdicts import EventView


def _exact(patterns: Sequence[str] | None) -> Sequence[str] | None:
    return None if patterns is None or globs.everything(patterns) else patterns


async def state_counts(session: AsyncSession, patterns: Sequence[str] | None) -> dict[str, int]:
    """Images per verdict state."""
    exact = _exact(patterns)
    counts: dict[str, int] = {}
    if exact is None:
        totals = await session.execute(select(Verdict.state, func.count()).group_by(Verdict.state))
        return {state: int(n) for state, n in totals.all()}
    rows = await session.execute(
        select(Verdict.repository, Verdict.state, func.count())
        .where(globs.prefilter(Verdict.repository, exact))
        .group_by(Verdict.repository, Verdict.state)
    )
    for repository, state, n in rows.all():
        if globs.matches(repository, exact):
            counts[state] = counts.get(state, 0) + int(n)
    return counts


@dataclass(frozen=True)
class Change:
    """A verdict event with the image it is about."""

    repository: str
    digest: str
    event: EventView


async def recent_changes(
    session: AsyncSession, patterns: Sequence[str] | None, limit: int = 10
) -> list[Change]:
    exact = _exact(patterns)
    query = select(VerdictEvent).order_by(VerdictEvent.id.desc())
    if exact is not None:
        query = query.where(globs.prefilter(VerdictEvent.repository, exact))
    found: list[Change] = []
    for row in (await session.scalars(query.limit(limit * 5))).all():
        if exact is None or globs.matches(row.repository, exact):
            moment = utc(row.time)
            assert moment is not None
            view = EventView(moment, row.event, row.old_state, row.new_state, row.actor, row.reason)
            found.append(Change(row.repository, row.digest, view))
    return found[:limit]


@dataclass(frozen=True)
class AdvisoryState:
    """The advisory data in use and how its mirrors fare."""

    version: int | None
    imported_at: datetime | None
    source: str | None
    last_checked: datetime | None
    failing_mirrors: int
    last_error: str | None


async def advisory_state(session: AsyncSession) -> AdvisoryState:
    latest = await session.scalar(
        select(AdvisoryDataVersion).order_by(AdvisoryDataVersion.version.desc()).limit(1)
    )
    mirrors = (await session.scalars(select(AdvisoryMirror))).all()
    checked = [utc(m.checked_at) for m in mirrors if m.checked_at is not None]
    failing = [m for m in mirrors if m.failures]
    return AdvisoryState(
        version=latest.version if latest else None,
        imported_at=utc(latest.imported_at) if latest else None,
        source=latest.source if latest else None,
        last_checked=max((c for c in checked if c is not None), default=None),
        failing_mirrors=len(failing),
        last_error=failing[0].last_error if failing else None,
    )


@dataclass(frozen=True)
class DeadJob:
    repository: str
    digest: str
    error: str | None
    attempts: int
    updated_at: datetime | None


async def dead_jobs(
    session: AsyncSession, patterns: Sequence[str] | None, limit: int = 10
) -> tuple[int, list[DeadJob]]:
    """How many verifications were dead-lettered, and the latest of them."""
    exact = _exact(patterns)
    query = select(Job).where(Job.state == "dead").order_by(Job.id.desc())
    if exact is not None:
        query = query.where(globs.prefilter(Job.repository, exact))
    rows = [r for r in (await session.scalars(query.limit(1000))).all()]
    kept = [r for r in rows if exact is None or globs.matches(r.repository, exact)]
    latest = [
        DeadJob(r.repository, r.digest, r.last_error, r.attempts, utc(r.updated_at))
        for r in kept[:limit]
    ]
    if exact is None:
        total = await session.scalar(
            select(func.count()).select_from(Job).where(Job.state == "dead")
        )
        return int(total or 0), latest
    return len(kept), latest


@dataclass(frozen=True)
class FailingWebhook:
    webhook: str
    failed: int
    retrying: int
    last_status: int | None
    last_error: str | None


async def failing_webhooks(session: AsyncSession) -> list[FailingWebhook]:
    """Per webhook: deliveries given up on, and deliveries still being retried after a failed
    attempt, with the latest failure."""
    rows = (
        await session.scalars(
            select(WebhookDelivery)
            .where(
                (WebhookDelivery.state == "failed")
                | ((WebhookDelivery.state == "pending") & (WebhookDelivery.attempts > 0))
            )
            .order_by(WebhookDelivery.id.desc())
            .limit(5000)
        )
    ).all()
    by_hook: dict[str, FailingWebhook] = {}
    for row in rows:
        seen = by_hook.get(row.webhook)
        failed = (seen.failed if seen else 0) + (row.state == "failed")
        retrying = (seen.retrying if seen else 0) + (row.state == "pending")
        status = seen.last_status if seen else row.last_status
        error = seen.last_error if seen else row.last_error
        by_hook[row.webhook] = FailingWebhook(row.webhook, failed, retrying, status, error)
    return sorted(by_hook.values(), key=lambda w: w.webhook)


@dataclass(frozen=True)
class ChartEvent:
    time: datetime
    new_state: str
    old_state: str | None


async def chart_events(
    session: AsyncSession, since: datetime, patterns: Sequence[str] | None
) -> list[ChartEvent]:
    """Verdict events since ``since`` that quarantined or released an image."""
    exact = _exact(patterns)
    query = select(
        VerdictEvent.time, VerdictEvent.new_state, VerdictEvent.old_state, VerdictEvent.repository
    ).where(VerdictEvent.time >= since, VerdictEvent.new_state.in_(("quarantined", "released")))
    if exact is not None:
        query = query.where(globs.prefilter(VerdictEvent.repository, exact))
    found = []
    for moment, new, old, repository in (await session.execute(query)).all():
        if exact is None or globs.matches(repository, exact):
            when = utc(moment)
            assert when is not None
            found.append(ChartEvent(when, new, old))
    return found
