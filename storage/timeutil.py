"""Times in the database are UTC; SQLite hands them back without a zone, PostgreSQL with one.

SQLite keeps a time as text and SQLAlchemy writes its wall-clock fields, dropping the offset: a
release ``expires_at`` of 12:00-10:00 was stored as 12:00 and read back as 12:00 UTC, ten hours
early. :class:`UTCDateTime` converts every time to UTC on its way in (column values and the
values compared with them, such as ``--since``), so no caller has to remember to.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


def now() -> datetime:
    return datetime.now(UTC)


def utc(moment: datetime | None) -> datetime | None:
    """``moment`` in UTC; a time without a zone is taken to be UTC already (as stored)."""
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that stores UTC and always returns an aware UTC time."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        return utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return utc(value)
