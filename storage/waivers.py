"""Waivers made at run time by admins: stored rows only.

What a waiver does (a finding stops blocking within its scope until it expires) is the policy's
business (``verifiers.policy``); which waivers join which policy is ``services.policybook``'s. A
waiver is never deleted: withdrawing one stamps who withdrew it and why, so the history of
every exception made to the policy stays readable.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Index, String, Text, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId
from storage.timeutil import UTCDateTime, now, utc


class WaiverRow(Base):
    """One waiver an admin made (the settings file's waivers are not stored)."""

    __tablename__ = "waivers"
    __table_args__ = (Index("ix_waivers_withdrawn_at", "withdrawn_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    finding: Mapped[str] = mapped_column(String(255))
    """A rule id (``CVE-2024-1``) or ``verifier:rule``, as in the settings file."""
    scope: Mapped[str] = mapped_column(String(255))
    """The repository glob it applies in (``team/*``)."""
    reason: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(255))
    """The identity that made it (the actor of the admin API request)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    withdrawn_by: Mapped[str | None] = mapped_column(String(255))
    withdraw_reason: Mapped[str | None] = mapped_column(Text)


class Status(enum.StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class StoredWaiver:
    """A waiver as stored."""

    id: int
    finding: str
    scope: str
    reason: str
    author: str
    created_at: datetime
    expires_at: datetime | None
    withdrawn_at: datetime | None = None
    withdrawn_by: str | None = None
    withdraw_reason: str | None = None

    def status(self, moment: datetime | None = None) -> Status:
        if self.withdrawn_at is not None:
            return Status.WITHDRAWN
        if self.expires_at is not None and self.expires_at <= (moment or now()):
            return Status.EXPIRED
        return Status.ACTIVE


def _view(row: WaiverRow) -> StoredWaiver:
    created = utc(row.created_at)
    assert created is not None
    return StoredWaiver(
        id=row.id,
        finding=row.finding,
        scope=row.scope,
        reason=row.reason,
        author=row.author,
        created_at=created,
        expires_at=utc(row.expires_at),
        withdrawn_at=utc(row.withdrawn_at),
        withdrawn_by=row.withdrawn_by,
        withdraw_reason=row.withdraw_reason,
    )


async def add(
    session: AsyncSession,
    *,
    finding: str,
    scope: str,
    reason: str,
    author: str,
    expires_at: datetime | None,
) -> StoredWaiver:
    row = WaiverRow(
        finding=finding,
        scope=scope,
        reason=reason,
        author=author,
        created_at=now(),
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return _view(row)


async def get(session: AsyncSession, waiver_id: int) -> StoredWaiver | None:
    row = await session.get(WaiverRow, waiver_id)
    return _view(row) if row is not None else None


async def active(session: AsyncSession, moment: datetime | None = None) -> list[StoredWaiver]:
    """Neither withdrawn nor expired at ``moment``, oldest first (a stable order, so the
    policy a set of waivers makes always has the same version)."""
    at = moment or now()
    query = (
        select(WaiverRow)
        .where(WaiverRow.withdrawn_at.is_(None))
        .where(or_(WaiverRow.expires_at.is_(None), WaiverRow.expires_at > at))
        .order_by(WaiverRow.id)
    )
    return [_view(r) for r in (await session.scalars(query)).all()]


async def listed(session: AsyncSession, *, include_inactive: bool) -> list[StoredWaiver]:
    """Every waiver (or only the active ones), oldest first."""
    if not include_inactive:
        return await active(session)
    rows = (await session.scalars(select(WaiverRow).order_by(WaiverRow.id))).all()
    return [_view(r) for r in rows]


async def withdraw(
    session: AsyncSession, waiver_id: int, who: str, reason: str
) -> StoredWaiver | None:
    """Withdraw a waiver not withdrawn yet; None when it was (or does not exist). One
    conditional update, so two admins withdrawing at once cannot both succeed."""
    done = await session.execute(
        update(WaiverRow)
        .where(WaiverRow.id == waiver_id, WaiverRow.withdrawn_at.is_(None))
        .values(withdrawn_at=now(), withdrawn_by=who, withdraw_reason=reason)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        return None
    return await get(session, waiver_id)
