"""Token signing keys in the database: public halves in the clear, private halves sealed.

Rows only: sealing and choosing keys is ``proxy/auth/keystore.py``'s business. At most one row
is the active signing key (``active_slot`` is 1 there and unique), so replicas starting
together, or two rotations at once, cannot both make their new key the active one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, Text, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import insert_if_absent
from storage.models import Base
from storage.timeutil import UTCDateTime, utc

ACTIVE = 1


class TokenKeyRow(Base):
    """One token signing key: the active one, or a retired one still verifying."""

    __tablename__ = "token_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    active_slot: Mapped[int | None] = mapped_column(Integer, unique=True)
    """1 on the active key, NULL on the others."""
    public_pem: Mapped[str] = mapped_column(Text)
    sealed_private: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    verify_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """None while active; afterwards, tokens it signed are accepted until then."""


@dataclass(frozen=True)
class StoredKey:
    kid: str
    active: bool
    public_pem: str
    sealed_private: bytes
    kek_id: str
    created_at: datetime
    retired_at: datetime | None
    verify_until: datetime | None


def _stored(row: TokenKeyRow) -> StoredKey:
    return StoredKey(
        row.kid,
        row.active_slot == ACTIVE,
        row.public_pem,
        bytes(row.sealed_private),
        row.kek_id,
        utc(row.created_at) or row.created_at,
        utc(row.retired_at),
        utc(row.verify_until),
    )


async def all_keys(session: AsyncSession) -> list[StoredKey]:
    """Every stored key, the active one first, then newest first."""
    rows = (
        await session.scalars(select(TokenKeyRow).order_by(TokenKeyRow.created_at.desc()))
    ).all()
    keys = [_stored(row) for row in rows]
    return sorted(keys, key=lambda k: not k.active)


async def add_active(
    session: AsyncSession, kid: str, public_pem: str, sealed: bytes, kek_id: str, at: datetime
) -> None:
    """Store a new active key, unless another is active already (a replica or a rotation that
    came first): then nothing is stored, and reading the keys again shows which one is."""
    await insert_if_absent(
        session,
        TokenKeyRow,
        kid=kid,
        active_slot=ACTIVE,
        public_pem=public_pem,
        sealed_private=sealed,
        kek_id=kek_id,
        created_at=at,
        retired_at=None,
        verify_until=None,
    )


async def retire_active(session: AsyncSession, at: datetime, verify_until: datetime) -> str | None:
    """Retire the active key (it keeps verifying until ``verify_until``); returns its kid."""
    kid = await session.scalar(select(TokenKeyRow.kid).where(TokenKeyRow.active_slot == ACTIVE))
    if kid is None:
        return None
    await session.execute(
        update(TokenKeyRow)
        .where(TokenKeyRow.kid == kid)
        .values(active_slot=None, retired_at=at, verify_until=verify_until)
    )
    return str(kid)


async def purge(session: AsyncSession, at: datetime) -> int:
    """Forget retired keys no token they signed can still be alive for."""
    result = await session.execute(
        delete(TokenKeyRow).where(TokenKeyRow.active_slot.is_(None), TokenKeyRow.verify_until < at)
    )
    return int(getattr(result, "rowcount", 0) or 0)
