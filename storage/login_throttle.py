"""Failed-login counters, shared by every replica through the database.

A counter per key (an address, an identity, or an identity from one address): how many
failures since the window started, how many times the key has been blocked, and until when.
Kept in the database, not in a replica's memory, so that N replicas behind a load balancer do
not give an attacker N times the guesses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, String, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import insert_if_absent
from storage.models import Base
from storage.timeutil import UTCDateTime, utc


class LoginCounter(Base):
    """One throttling key's state."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(600), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_started: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    strikes: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class Counter:
    """What a key has seen within the current window."""

    failures: int
    blocked_until: datetime | None


async def read(
    session: AsyncSession, keys: list[str], moment: datetime, window: timedelta
) -> dict[str, Counter]:
    """The live counters of ``keys`` (a window that has run out counts no failures)."""
    rows = (await session.scalars(select(LoginCounter).where(LoginCounter.key.in_(keys)))).all()
    found: dict[str, Counter] = {}
    for row in rows:
        started = utc(row.window_started)
        failures = row.failures if started is not None and moment - started <= window else 0
        found[row.key] = Counter(failures, utc(row.blocked_until))
    return found


async def record_failure(
    session: AsyncSession,
    key: str,
    limit: int | None,
    moment: datetime,
    window: timedelta,
    max_backoff: timedelta,
) -> None:
    """Count one failure of ``key``; at ``limit`` failures in the window, block it for a
    back-off that doubles with each block (up to ``max_backoff``)."""
    # Create-if-absent first, so the row can be locked (FOR UPDATE on PostgreSQL; SQLite's
    # BEGIN IMMEDIATE already serialises writers): two replicas never lose a count.
    await insert_if_absent(
        session, LoginCounter, key=key, failures=0, window_started=moment, strikes=0
    )
    row = await session.get(LoginCounter, key, with_for_update=True, populate_existing=True)
    if row is None:  # pragma: no cover - inserted above in this transaction
        raise RuntimeError(f"login counter {key!r} vanished")
    started = utc(row.window_started)
    if started is None or moment - started > window:
        row.failures, row.window_started = 0, moment
    row.failures += 1
    if limit is not None and row.failures >= limit:
        row.strikes += 1
        backoff = min(timedelta(seconds=2.0 ** min(row.strikes - 1, 30)), max_backoff)
        row.blocked_until = moment + backoff


async def forget(session: AsyncSession, key: str) -> None:
    await session.execute(delete(LoginCounter).where(LoginCounter.key == key))


async def prune(session: AsyncSession, moment: datetime, window: timedelta) -> None:
    """Drop counters whose window and block are both over (bounds the table under a spray)."""
    await session.execute(
        delete(LoginCounter).where(
            LoginCounter.window_started < moment - window,
            (LoginCounter.blocked_until.is_(None)) | (LoginCounter.blocked_until < moment),
        )
    )
