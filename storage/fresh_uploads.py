"""Blobs uploaded through the gatekeeper lately, per repository.

A client reads a blob back after uploading it and before pushing the manifest that lists it;
the gate lets identities that may push do that (``proxy/gate.py``), but only for what was
uploaded here: a blob that reached the registry some other way (before the gatekeeper, around
it) is content nobody has verified, and no upload makes it fresh. Rows are written before the
client hears that its upload is complete, and are forgotten after :data:`KEEP`, a batch at a
time, by later uploads.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Index, String, bindparam, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base
from storage.prepared import InsertOn, Prepared, deleted, table, upserting
from storage.timeutil import UTCDateTime, now

KEEP = timedelta(hours=24)
"""How long an upload counts as fresh."""
PRUNE_BATCH = 100


class FreshUpload(Base):
    """A blob uploaded (or mounted) into a repository through the gatekeeper."""

    __tablename__ = "fresh_uploads"
    __table_args__ = (Index("ix_fresh_uploads_uploaded_at", "uploaded_at"),)

    repository: Mapped[str] = mapped_column(String(255), primary_key=True)
    digest: Mapped[str] = mapped_column(String(140), primary_key=True)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime())


_UPLOADS = table(FreshUpload)


def remembering(insert_on: InsertOn) -> Any:
    """SQL: ``uploaded`` fresh in ``in_repository`` from ``moment`` on (an upsert in the
    dialect of ``insert_on``; ``storage.uploads`` adds the session's end to it)."""
    return upserting(
        insert_on,
        _UPLOADS,
        ["repository", "digest"],
        repository=bindparam("in_repository"),
        digest=bindparam("uploaded"),
        uploaded_at=bindparam("moment"),
    )


_REMEMBER = Prepared(remembering)
_FORGET_STALE = delete(_UPLOADS).where(
    tuple_(_UPLOADS.c.repository, _UPLOADS.c.digest).in_(
        select(_UPLOADS.c.repository, _UPLOADS.c.digest)
        .where(_UPLOADS.c.uploaded_at < bindparam("stale_before"))
        .limit(PRUNE_BATCH)
        # Rows another transaction is forgetting are left to it: two closing PUTs forgetting
        # at once on PostgreSQL never wait for each other (nor deadlock); SQLite ignores it.
        .with_for_update(skip_locked=True)
    )
)
"""Built once (``storage.prepared``): completed uploads run them in the write turn."""


async def remember(
    session: AsyncSession, repository: str, digest: str, *, forget_stale: bool = True
) -> bool:
    """``digest`` was just uploaded into ``repository``; with ``forget_stale``, forget a batch
    of stale uploads too. True if that batch was full (more may be waiting): a caller that
    forgets only now and then (the closing ``PUT``, ``proxy.upload_sessions``) forgets again
    on its next upload, so the table stays bounded however fast rows are made."""
    moment = now()
    await session.execute(
        _REMEMBER(session), {"in_repository": repository, "uploaded": digest, "moment": moment}
    )
    if not forget_stale:
        return False
    forgotten = await session.execute(_FORGET_STALE, {"stale_before": moment - KEEP})
    return deleted(forgotten) >= PRUNE_BATCH


async def fresh(session: AsyncSession, repository: str, digest: str) -> bool:
    """Whether ``digest`` was uploaded into ``repository`` through the gatekeeper lately."""
    found = await session.scalar(
        select(FreshUpload.uploaded_at).where(
            FreshUpload.repository == repository,
            FreshUpload.digest == digest,
            FreshUpload.uploaded_at >= now() - KEEP,
        )
    )
    return found is not None
