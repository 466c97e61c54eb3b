"""Which gatekeeper processes are running: each says so every few seconds (``proxy.presence``).

What a replica holds for clients (upload sessions, ``storage.uploads``) is held only while its
row is fresh: a replica that stops deletes its row, one that crashed falls silent, and either
way its holdings are let go within seconds, not after an idle timeout of minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import upsert
from storage.models import Replica
from storage.timeutil import now

NO_SYNC = {"synchronize_session": False}
FORGET_AFTER = timedelta(days=1)
"""A crashed replica's row is deleted this long after it fell silent (it counts as gone
long before: the row only keeps the table from growing with every start)."""


@dataclass(frozen=True)
class Holder:
    """A replica holding something, and how long it may stay silent before it is gone."""

    replica: str
    gone_after: timedelta


def heard_since(replica: ColumnElement[Any], since: Any) -> ColumnElement[bool]:
    """SQL: ``replica`` names a replica heard from at ``since`` or later (a value, or a bind
    parameter of a statement built once: ``storage.prepared``)."""
    return exists().where(and_(Replica.id == replica, Replica.seen_at >= since))


async def beat(session: AsyncSession, replica: str, started: datetime) -> None:
    """This replica is alive now; rows of replicas silent for a day are forgotten."""
    moment = now()
    await upsert(session, Replica, ["id"], id=replica, started_at=started, seen_at=moment)
    await session.execute(
        delete(Replica).execution_options(**NO_SYNC).where(Replica.seen_at < moment - FORGET_AFTER)
    )


async def leave(session: AsyncSession, replica: str) -> None:
    """This replica stops: what it held is let go at once."""
    await session.execute(delete(Replica).execution_options(**NO_SYNC).where(Replica.id == replica))
