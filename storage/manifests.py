"""The gatekeeper's own index of manifests: what each references, which tags point where, and
which artifacts name an image as their ``subject`` (the referrers API the upstream lacks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from oci.manifests import ManifestRecord
from storage.models import Manifest, ManifestRef, Tag


@dataclass(frozen=True)
class Referrer:
    """A descriptor for the referrers response."""

    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, Any] | None


async def record_manifest(session: AsyncSession, record: ManifestRecord, tag: str | None) -> None:
    """Insert or replace the manifest's row (pushing the same digest again is idempotent)."""
    now = datetime.now(UTC)
    existing = await get_manifest(session, record.repository, record.digest)
    if existing is None:
        await _add(session, record, now)
    else:
        await session.execute(delete(ManifestRef).where(ManifestRef.manifest_id == existing.id))
        await _fill(session, existing, record)
    if tag is not None:
        await session.merge(
            Tag(repository=record.repository, tag=tag, digest=record.digest, updated_at=now)
        )


async def index_if_absent(session: AsyncSession, record: ManifestRecord) -> str | None:
    """Index ``record`` unless the manifest is indexed already (what a push recorded stays,
    e.g. the image a cosign tag is about); the image it is about, as indexed. The insert says
    which: one statement and the references' for a new manifest, no read first."""
    about = record.about_digest or record.subject_digest
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert_into = postgresql.insert if dialect == "postgresql" else sqlite.insert
    created = await session.scalar(
        insert_into(Manifest)
        .values(
            repository=record.repository,
            digest=record.digest,
            created_at=datetime.now(UTC),
            media_type=record.media_type,
            size=record.size,
            artifact_type=record.artifact_type,
            config_digest=record.config_digest,
            subject_digest=record.subject_digest,
            about_digest=about,
            annotations=record.annotations,
        )
        .on_conflict_do_nothing()
        .returning(Manifest.id)
    )
    if created is None:
        return await session.scalar(
            select(Manifest.about_digest).where(
                Manifest.repository == record.repository, Manifest.digest == record.digest
            )
        )
    await _add_refs(session, created, record)
    return about


async def _add(session: AsyncSession, record: ManifestRecord, now: datetime) -> Manifest:
    row = Manifest(repository=record.repository, digest=record.digest, created_at=now)
    session.add(row)
    await _fill(session, row, record)
    return row


async def _fill(session: AsyncSession, row: Manifest, record: ManifestRecord) -> None:
    """Write ``record`` onto ``row`` and add its references (the row's old ones are gone)."""
    row.media_type = record.media_type
    row.size = record.size
    row.artifact_type = record.artifact_type
    row.config_digest = record.config_digest
    row.subject_digest = record.subject_digest
    row.about_digest = record.about_digest or record.subject_digest or row.about_digest
    row.annotations = record.annotations
    await session.flush()
    await _add_refs(session, row.id, record)


async def _add_refs(session: AsyncSession, manifest_id: int, record: ManifestRecord) -> None:
    """The manifest's references, in one statement (as ORM objects, one insert each: their
    ids are not needed)."""
    if not record.refs:
        return
    refs = [
        {
            "manifest_id": manifest_id,
            "position": position,
            "kind": ref.kind,
            "digest": ref.digest,
            "media_type": ref.media_type,
            "size": ref.size,
            "platform": ref.platform,
        }
        for position, ref in enumerate(record.refs)
    ]
    await session.execute(insert(ManifestRef), refs)


async def set_content_kind(session: AsyncSession, repository: str, digest: str, kind: str) -> None:
    """Record what verification found the manifest to be (``verifiers.classify.Kind``): one
    statement, no read (a manifest not indexed is left so)."""
    await session.execute(
        update(Manifest)
        .execution_options(synchronize_session=False)
        .where(Manifest.repository == repository, Manifest.digest == digest)
        .values(content_kind=kind)
    )


async def forget_manifest(session: AsyncSession, repository: str, digest: str) -> None:
    """The upstream deleted the manifest: drop it and every tag that pointed at it."""
    await session.execute(
        delete(Manifest).where(Manifest.repository == repository, Manifest.digest == digest)
    )
    await session.execute(delete(Tag).where(Tag.repository == repository, Tag.digest == digest))


async def referrers(
    session: AsyncSession, repository: str, subject: str, artifact_type: str | None
) -> list[Referrer]:
    """Manifests of ``repository`` whose ``subject`` is ``subject``, oldest first."""
    query = select(Manifest).where(
        Manifest.repository == repository, Manifest.subject_digest == subject
    )
    if artifact_type is not None:
        query = query.where(Manifest.artifact_type == artifact_type)
    rows = (await session.scalars(query.order_by(Manifest.id))).all()
    return [
        Referrer(
            digest=row.digest,
            media_type=row.media_type,
            size=row.size,
            artifact_type=row.artifact_type,
            annotations=row.annotations,
        )
        for row in rows
    ]


async def get_manifest(
    session: AsyncSession, repository: str, digest: str, *, for_update: bool = False
) -> Manifest | None:
    """The manifest's row; ``for_update`` holds it until the transaction ends, so a delete
    (:func:`forget_manifest`) waits for what is being decided from it, or goes first."""
    query = select(Manifest).where(Manifest.repository == repository, Manifest.digest == digest)
    return await session.scalar(query.with_for_update() if for_update else query)


async def content_size(session: AsyncSession, repository: str, digest: str) -> int | None:
    """Bytes of the blobs an image lists (config and layers), or for an index those of the
    platform images of it that are indexed; None when the manifest is not indexed yet. What a
    verification of it reads, roughly (``services.eta``)."""
    row = await get_manifest(session, repository, digest)
    if row is None:
        return None
    refs = (
        await session.execute(
            select(ManifestRef.kind, ManifestRef.digest, ManifestRef.size).where(
                ManifestRef.manifest_id == row.id
            )
        )
    ).all()
    if row.config_digest is not None:
        return sum(int(size) for kind, _, size in refs if kind in ("config", "layer"))
    children = [child for kind, child, _ in refs if kind == "manifest"]
    if not children:
        return 0
    total = await session.scalar(
        select(func.coalesce(func.sum(ManifestRef.size), 0))
        .join(Manifest, Manifest.id == ManifestRef.manifest_id)
        .where(
            Manifest.repository == repository,
            Manifest.digest.in_(children[:1000]),
            ManifestRef.kind.in_(("config", "layer")),
        )
    )
    return int(total or 0)
