"""Sign-in sessions of the web console (``proxy/ui``), one row per signed-in browser.

The browser holds a random secret; the row is keyed by its SHA-256, so a copy of the database
signs nobody in. A session records the identity's ``token_version`` at sign-in: rotating or
revoking the identity's credentials ends it, as it ends the identity's tokens. Whether the
identity is still usable (not disabled, not expired) is asked on every request by the console,
not here: this module only stores and expires rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Integer, String, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId
from storage.timeutil import UTCDateTime, utc


class ConsoleSessionRow(Base):
    """One signed-in browser (migration 0018)."""

    __tablename__ = "console_sessions"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    identity_id: Mapped[int] = mapped_column(BigId, ForeignKey("identities.id", ondelete="CASCADE"))
    token_version: Mapped[int] = mapped_column(Integer)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class ConsoleSession:
    """A live session as the console sees it."""

    key_hash: str
    identity_id: int
    token_version: int
    csrf: str
    """The secret every state-changing form of this session must carry back."""
    created_at: datetime
    last_seen: datetime


def key_hash(secret: str) -> str:
    """What is stored for the cookie's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _view(row: ConsoleSessionRow) -> ConsoleSession:
    created, seen = utc(row.created_at), utc(row.last_seen)
    assert created is not None and seen is not None
    return ConsoleSession(row.key_hash, row.identity_id, row.token_version, row.csrf, created, seen)


async def create(
    session: AsyncSession,
    secret: str,
    *,
    identity_id: int,
    token_version: int,
    csrf: str,
    moment: datetime,
) -> ConsoleSession:
    row = ConsoleSessionRow(
        key_hash=key_hash(secret),
        identity_id=identity_id,
        token_version=token_version,
        csrf=csrf,
        created_at=moment,
        last_seen=moment,
    )
    session.add(row)
    await session.flush()
    return _view(row)


async def live(
    session: AsyncSession, secret: str, *, moment: datetime, idle: timedelta, absolute: timedelta
) -> ConsoleSession | None:
    """The session of ``secret`` if it has neither idled out nor outlived ``absolute``."""
    row = await session.get(ConsoleSessionRow, key_hash(secret))
    if row is None:
        return None
    found = _view(row)
    if found.last_seen + idle <= moment or found.created_at + absolute <= moment:
        return None
    return found


async def touch(session: AsyncSession, key: str, moment: datetime) -> None:
    """Record use (the idle clock starts again)."""
    await session.execute(
        update(ConsoleSessionRow).where(ConsoleSessionRow.key_hash == key).values(last_seen=moment)
    )


async def end(session: AsyncSession, key: str) -> None:
    """Sign out: the row goes, so the cookie is worthless on every replica."""
    await session.execute(delete(ConsoleSessionRow).where(ConsoleSessionRow.key_hash == key))


async def sweep(
    session: AsyncSession, *, moment: datetime, idle: timedelta, absolute: timedelta
) -> None:
    """Delete every expired session (run at each sign-in, so the table stays small)."""
    await session.execute(
        delete(ConsoleSessionRow).where(
            or_(
                ConsoleSessionRow.last_seen <= moment - idle,
                ConsoleSessionRow.created_at <= moment - absolute,
            )
        )
    )


async def count_for(session: AsyncSession, identity_id: int) -> int:
    """Sessions of one identity (for tests and the overview)."""
    rows = await session.scalars(
        select(ConsoleSessionRow.key_hash).where(ConsoleSessionRow.identity_id == identity_id)
    )
    return len(rows.all())
