"""The gatekeeper's own signing key in the database: public half in the clear, private half
sealed.

Rows only: sealing and choosing the key is ``proxy/attest/keys.py``'s business. The key signs
what the gatekeeper vouches for (verification summaries, access-log checkpoints), so unlike a
token key a retired one is never deleted: what it signed years ago must still verify. At most
one row is the active key (``active_slot`` is 1 there and unique), so replicas starting
together cannot both make their new key the active one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import insert_if_absent
from storage.models import Base
from storage.timeutil import UTCDateTime, utc

ACTIVE = 1


class GatekeeperKeyRow(Base):
    """One key the gatekeeper signs (or signed) attestations with."""

    __tablename__ = "gatekeeper_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    active_slot: Mapped[int | None] = mapped_column(Integer, unique=True)
    """1 on the active key, NULL on retired ones (which keep verifying for ever)."""
    public_pem: Mapped[str] = mapped_column(Text)
    sealed_private: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class StoredKey:
    kid: str
    active: bool
    public_pem: str
    sealed_private: bytes
    kek_id: str
    created_at: datetime


async def all_keys(session: AsyncSession) -> list[StoredKey]:
    """Every stored key, the active one first, then newest first."""
    rows = (
        await session.scalars(select(GatekeeperKeyRow).order_by(GatekeeperKeyRow.created_at.desc()))
    ).all()
    keys = [
        StoredKey(
            row.kid,
            row.active_slot == ACTIVE,
            row.public_pem,
            bytes(row.sealed_private),
            row.kek_id,
            utc(row.created_at) or row.created_at,
        )
        for row in rows
    ]
    return sorted(keys, key=lambda k: not k.active)


async def add_active(
    session: AsyncSession, kid: str, public_pem: str, sealed: bytes, kek_id: str, at: datetime
) -> None:
    """Store a new active key unless another is active already (a replica that came first)."""
    await insert_if_absent(
        session,
        GatekeeperKeyRow,
        kid=kid,
        active_slot=ACTIVE,
        public_pem=public_pem,
        sealed_private=sealed,
        kek_id=kek_id,
        created_at=at,
    )
