"""VEX documents the gatekeeper accepted at run time: stored rows only.

Two ways in: an admin over the API (``source = "admin"``, a repository glob as its scope), and a
referrer of an image signed by a key the policy trusts (``source = "referrer"``, its own
repository as the scope, the image it is about as ``subject``, the key's id as ``signer``).
What the documents waive is the policy's business (``verifiers.vex.claims``,
``services.policybook``). Like a waiver, a document is never deleted: withdrawing one stamps who
withdrew it and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Index, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId
from storage.timeutil import UTCDateTime, now, utc

ADMIN = "admin"
REFERRER = "referrer"


class VexRow(Base):
    """One accepted OpenVEX document."""

    __tablename__ = "vex_documents"
    __table_args__ = (
        Index("ix_vex_documents_withdrawn_at", "withdrawn_at"),
        Index("ix_vex_documents_referrer", "scope", "referrer"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str | None] = mapped_column(String(100))
    """The image a referrer is about (its manifest digest)."""
    referrer: Mapped[str | None] = mapped_column(String(100))
    """The referrer manifest's digest."""
    signer: Mapped[str | None] = mapped_column(String(100))
    """The id (``sha256:`` of the SPKI) of the key that signed a referrer."""
    document: Mapped[str] = mapped_column(Text)
    """The OpenVEX JSON as accepted (parsed again whenever the policies are loaded)."""
    author: Mapped[str] = mapped_column(String(255))
    """The document's author."""
    added_by: Mapped[str] = mapped_column(String(255))
    """The admin who added it, or ``gatekeeper`` for a referrer."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    withdrawn_by: Mapped[str | None] = mapped_column(String(255))
    withdraw_reason: Mapped[str | None] = mapped_column(Text)


@dataclass(frozen=True)
class StoredVex:
    """A document as stored."""

    id: int
    source: str
    scope: str
    subject: str | None
    referrer: str | None
    signer: str | None
    document: str
    author: str
    added_by: str
    created_at: datetime
    withdrawn_at: datetime | None = None
    withdrawn_by: str | None = None
    withdraw_reason: str | None = None


def _view(row: VexRow) -> StoredVex:
    created = utc(row.created_at)
    assert created is not None
    return StoredVex(
        id=row.id,
        source=row.source,
        scope=row.scope,
        subject=row.subject,
        referrer=row.referrer,
        signer=row.signer,
        document=row.document,
        author=row.author,
        added_by=row.added_by,
        created_at=created,
        withdrawn_at=utc(row.withdrawn_at),
        withdrawn_by=row.withdrawn_by,
        withdraw_reason=row.withdraw_reason,
    )


async def add(
    session: AsyncSession,
    *,
    source: str,
    scope: str,
    document: str,
    author: str,
    added_by: str,
    subject: str | None = None,
    referrer: str | None = None,
    signer: str | None = None,
) -> StoredVex:
    row = VexRow(
        source=source,
        scope=scope,
        subject=subject,
        referrer=referrer,
        signer=signer,
        document=document,
        author=author,
        added_by=added_by,
        created_at=now(),
    )
    session.add(row)
    await session.flush()
    return _view(row)


async def get(session: AsyncSession, vex_id: int) -> StoredVex | None:
    row = await session.get(VexRow, vex_id)
    return _view(row) if row is not None else None


async def of_referrer(session: AsyncSession, repository: str, referrer: str) -> StoredVex | None:
    """The document a referrer brought, not withdrawn (a referrer verified again adds none)."""
    query = select(VexRow).where(
        VexRow.scope == repository,
        VexRow.referrer == referrer,
        VexRow.withdrawn_at.is_(None),
    )
    row = (await session.scalars(query.limit(1))).first()
    return _view(row) if row is not None else None


async def active(session: AsyncSession) -> list[StoredVex]:
    """Documents not withdrawn, oldest first (a stable order: the same documents always make
    the same policy, and a tie in statement time goes to the later document)."""
    query = select(VexRow).where(VexRow.withdrawn_at.is_(None)).order_by(VexRow.id)
    return [_view(r) for r in (await session.scalars(query)).all()]


async def listed(session: AsyncSession, *, include_withdrawn: bool) -> list[StoredVex]:
    if not include_withdrawn:
        return await active(session)
    rows = (await session.scalars(select(VexRow).order_by(VexRow.id))).all()
    return [_view(r) for r in rows]


async def withdraw(session: AsyncSession, vex_id: int, who: str, reason: str) -> StoredVex | None:
    """Withdraw a document not withdrawn yet; None when it was (or does not exist)."""
    done = await session.execute(
        update(VexRow)
        .where(VexRow.id == vex_id, VexRow.withdrawn_at.is_(None))
        .values(withdrawn_at=now(), withdrawn_by=who, withdraw_reason=reason)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        return None
    return await get(session, vex_id)
