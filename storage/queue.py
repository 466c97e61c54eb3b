"""The console's quarantine queue: verdicts filtered by repository, state, severity, verifier
and age, in one of three orders, a keyset page at a time (``storage.keyset``).

The severity and verifier filters ask for a stored finding of that verifier at or above that
severity (``EXISTS`` on the findings' image index), so an image is listed for what it carries,
not for the words of its reasons.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from storage import globs
from storage.keys import images_clause
from storage.keyset import Page, read_page
from storage.models import FindingRow, Verdict
from storage.verdicts import VerdictView, as_view
from verifiers.base import Severity


class Order(enum.Enum):
    """How the queue is sorted; each order is a keyset over a unique key."""

    NEWEST = "newest"
    """Most recently changed first."""
    OLDEST = "oldest"
    """Longest unchanged first: what has waited longest for a review."""
    REPOSITORY = "repository"
    """By repository, then digest."""


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows; unset fields do not filter."""

    repository: str | None = None
    """A repository name or glob (``team/*``)."""
    state: str | None = None
    severity: Severity | None = None
    """At least one finding at or above this severity."""
    verifier: str | None = None
    """At least one finding of this verifier."""
    changed_after: datetime | None = None
    changed_before: datetime | None = None
    order: Order = Order.NEWEST


Cursor = tuple[Any, ...]
"""The position after which a page starts: the order's key of the last row shown."""


def cursor_of(view: VerdictView, order: Order) -> Cursor:
    if order is Order.REPOSITORY:
        return (view.repository, view.digest)
    return (view.updated_at, view.repository, view.digest)


def _ordered(query: Any, order: Order, after: Cursor | None) -> Any:
    if order is Order.REPOSITORY:
        key = tuple_(Verdict.repository, Verdict.digest)
        if after is not None:
            query = query.where(key > tuple_(*after))
        return query.order_by(Verdict.repository, Verdict.digest)
    key = tuple_(Verdict.updated_at, Verdict.repository, Verdict.digest)
    if order is Order.NEWEST:
        if after is not None:
            query = query.where(key < tuple_(*after))
        return query.order_by(
            Verdict.updated_at.desc(), Verdict.repository.desc(), Verdict.digest.desc()
        )
    if after is not None:
        query = query.where(key > tuple_(*after))
    return query.order_by(Verdict.updated_at, Verdict.repository, Verdict.digest)


def _filtered(f: QueueFilter, patterns: Sequence[str] | None) -> Any:
    query = select(Verdict)
    if f.state is not None:
        query = query.where(Verdict.state == f.state)
    if f.repository is not None:
        query = query.where(globs.prefilter(Verdict.repository, [f.repository]))
    if f.changed_after is not None:
        query = query.where(Verdict.updated_at > f.changed_after)
    if f.changed_before is not None:
        query = query.where(Verdict.updated_at <= f.changed_before)
    if f.severity is not None or f.verifier is not None:
        found = [FindingRow.repository == Verdict.repository, FindingRow.digest == Verdict.digest]
        if f.severity is not None:
            at_least = [s.name.lower() for s in Severity if s >= f.severity]
            found.append(FindingRow.severity.in_(at_least))
        if f.verifier is not None:
            found.append(FindingRow.verifier == f.verifier)
        query = query.where(exists().where(*found))
    if patterns is not None and not globs.everything(patterns):
        query = query.where(globs.prefilter(Verdict.repository, patterns))
    return query


async def queue_page(
    session: AsyncSession,
    f: QueueFilter,
    *,
    patterns: Sequence[str] | None,
    after: Cursor | None,
    limit: int,
) -> Page[VerdictView]:
    """One page of the queue after ``after``, of the repositories ``patterns`` match."""
    base = _filtered(f, patterns)

    async def fetch(last: VerdictView | None, n: int) -> list[VerdictView]:
        position = cursor_of(last, f.order) if last is not None else after
        rows = (await session.scalars(_ordered(base, f.order, position).limit(n))).all()
        return [as_view(r) for r in rows]

    wanted = [f.repository] if f.repository is not None else None
    page = await read_page(fetch, lambda v: v.repository, patterns, limit)
    if wanted is not None:  # the LIKE let through names the glob does not match
        return Page([v for v in page.rows if globs.matches(v.repository, wanted)], page.more)
    return page


async def severity_counts(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, int]]:
    """Each image's findings counted by severity, in one query for a page of images."""
    counts: dict[tuple[str, str], dict[str, int]] = {key: {} for key in keys}
    if not keys:
        return counts
    rows = await session.execute(
        select(FindingRow.repository, FindingRow.digest, FindingRow.severity, func.count())
        .where(images_clause(FindingRow.repository, FindingRow.digest, keys))
        .group_by(FindingRow.repository, FindingRow.digest, FindingRow.severity)
    )
    for repository, digest, severity, n in rows.all():
        counts[(repository, digest)][severity] = int(n)
    return counts


def age_window(age: str, moment: datetime) -> tuple[datetime | None, datetime | None]:
    """``(changed_after, changed_before)`` for an age choice: ``<1d`` changed within a day,
    ``>7d`` unchanged for over a week; ``""`` no bound."""
    if not age:
        return None, None
    sign, amount = age[0], AGES[age[1:]]
    return (moment - amount, None) if sign == "<" else (None, moment - amount)


AGES = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
AGE_CHOICES = ("", "<1h", "<1d", "<7d", ">1d", ">7d", ">30d")
