"""Verification summaries the gatekeeper made, and whether each reached the registry.

Rows only: what a summary says is ``proxy/attest/summaries.py``'s business, pushing it
``proxy/attest/publisher.py``'s. A summary is made once (its signed bundle is stored with it)
and pushed until it lands or ``attestations.max_attempts`` is used up; old ones are never
replaced, they are dated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Index, Integer, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId
from storage.timeutil import UTCDateTime, utc

PENDING = "pending"
PUSHED = "pushed"
FAILED = "failed"


class AttestationRow(Base):
    """One signed verification summary of one image."""

    __tablename__ = "attestations"
    __table_args__ = (
        Index("ix_attestations_image", "repository", "digest", "id"),
        Index("ix_attestations_due", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repository: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(140))
    result: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    bundle: Mapped[str] = mapped_column(Text)
    """The signed Sigstore bundle (JSON), exactly as pushed."""
    referrer: Mapped[str | None] = mapped_column(String(140))
    """The digest of the referrer manifest once pushed."""
    error: Mapped[str | None] = mapped_column(Text)


@dataclass(frozen=True)
class Attestation:
    id: int
    repository: str
    digest: str
    result: str
    created_at: datetime
    state: str
    attempts: int
    bundle: str
    referrer: str | None
    error: str | None


def _view(row: AttestationRow) -> Attestation:
    return Attestation(
        row.id,
        row.repository,
        row.digest,
        row.result,
        utc(row.created_at) or row.created_at,
        row.state,
        row.attempts,
        row.bundle,
        row.referrer,
        row.error,
    )


async def add(
    session: AsyncSession, repository: str, digest: str, result: str, bundle: str, at: datetime
) -> int:
    row = AttestationRow(
        repository=repository,
        digest=digest,
        result=result,
        created_at=at,
        state=PENDING,
        attempts=0,
        next_attempt_at=at,
        bundle=bundle,
    )
    session.add(row)
    await session.flush()
    return int(row.id)


async def claim_due(session: AsyncSession, at: datetime, lease: timedelta) -> list[Attestation]:
    """Pending summaries due now, each pushed off by ``lease`` so another replica's loop does
    not push it at the same moment (a second push of the same bytes would be harmless)."""
    rows = (
        await session.scalars(
            select(AttestationRow)
            .where(AttestationRow.state == PENDING, AttestationRow.next_attempt_at <= at)
            .order_by(AttestationRow.id)
            .limit(20)
        )
    ).all()
    claimed = []
    for row in rows:
        result = await session.execute(
            update(AttestationRow)
            .where(
                AttestationRow.id == row.id, AttestationRow.next_attempt_at == row.next_attempt_at
            )
            .values(next_attempt_at=at + lease)
        )
        if getattr(result, "rowcount", 0):
            claimed.append(_view(row))
    return claimed


async def pushed(session: AsyncSession, ident: int, referrer: str) -> None:
    await session.execute(
        update(AttestationRow)
        .where(AttestationRow.id == ident)
        .values(state=PUSHED, referrer=referrer, error=None, attempts=AttestationRow.attempts + 1)
    )


async def failed_attempt(
    session: AsyncSession, ident: int, error: str, retry_at: datetime | None
) -> None:
    """One more failed push; ``retry_at`` None: given up."""
    values: dict[str, object] = {"error": error[:2000], "attempts": AttestationRow.attempts + 1}
    if retry_at is None:
        values["state"] = FAILED
    else:
        values["next_attempt_at"] = retry_at
    await session.execute(update(AttestationRow).where(AttestationRow.id == ident).values(**values))


async def of_image(session: AsyncSession, repository: str, digest: str) -> list[Attestation]:
    """The image's summaries, oldest first."""
    rows = (
        await session.scalars(
            select(AttestationRow)
            .where(AttestationRow.repository == repository, AttestationRow.digest == digest)
            .order_by(AttestationRow.id)
        )
    ).all()
    return [_view(row) for row in rows]


async def is_summary(session: AsyncSession, repository: str, digest: str) -> bool:
    """``digest`` is the referrer manifest of one of the gatekeeper's own summaries."""
    found = await session.scalar(
        select(AttestationRow.id)
        .where(AttestationRow.repository == repository, AttestationRow.referrer == digest)
        .limit(1)
    )
    return found is not None
