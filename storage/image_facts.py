"""What the console's image page shows besides the verdict: tags, the manifest's own facts and
platform, its layers in order (so a finding's ``blob`` can be named as "layer 2"), referrers
(signatures, SBOMs, attestations pointing at it), who pulled it, and whether an SBOM exists."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import AccessRecord
from storage.models import AccessLog, ImageInventoryRow, Manifest, ManifestRef, Tag
from storage.timeutil import utc

PULL_ACTIONS = ("manifest.pull",)
"""Access-log actions that count as pulling an image (a HEAD only looks)."""


@dataclass(frozen=True)
class Blob:
    """One blob the manifest lists."""

    kind: str
    """``config``, ``layer`` or ``manifest`` (a child of an index)."""
    position: int
    digest: str
    media_type: str
    size: int
    platform: dict[str, Any] | None


@dataclass(frozen=True)
class Referrer:
    digest: str
    artifact_type: str | None
    media_type: str
    created_at: datetime | None
    via: str
    """``subject`` (an OCI referrer) or ``tag`` (cosign's ``sha256-<hex>.sig`` style tag)."""


@dataclass(frozen=True)
class ImageFacts:
    tags: list[str]
    media_type: str | None
    artifact_type: str | None
    size: int | None
    created_at: datetime | None
    blobs: list[Blob]
    platforms: list[dict[str, Any]]
    """The platforms indexes in this repository declare for it."""
    referrers: list[Referrer]
    has_sbom: bool


async def image_facts(session: AsyncSession, repository: str, digest: str) -> ImageFacts:
    tags = await session.scalars(
        select(Tag.tag).where(Tag.repository == repository, Tag.digest == digest).order_by(Tag.tag)
    )
    manifest = await session.scalar(
        select(Manifest).where(Manifest.repository == repository, Manifest.digest == digest)
    )
    blobs: list[Blob] = []
    if manifest is not None:
        refs = await session.scalars(
            select(ManifestRef)
            .where(ManifestRef.manifest_id == manifest.id)
            .order_by(ManifestRef.kind, ManifestRef.position)
        )
        blobs = [Blob(r.kind, r.position, r.digest, r.media_type, r.size, r.platform) for r in refs]
    declared = await session.scalars(
        select(ManifestRef.platform)
        .join(Manifest, Manifest.id == ManifestRef.manifest_id)
        .where(
            Manifest.repository == repository,
            ManifestRef.digest == digest,
            ManifestRef.kind == "manifest",
        )
    )
    platforms = [p for p in declared.all() if p]
    inventory = await session.get(ImageInventoryRow, (repository, digest))
    return ImageFacts(
        tags=list(tags.all()),
        media_type=manifest.media_type if manifest else None,
        artifact_type=manifest.artifact_type if manifest else None,
        size=manifest.size if manifest else None,
        created_at=utc(manifest.created_at) if manifest else None,
        blobs=blobs,
        platforms=[dict(p) for p in {str(sorted(p.items())): p for p in platforms}.values()],
        referrers=await referrers(session, repository, digest),
        has_sbom=inventory is not None,
    )


async def referrers(session: AsyncSession, repository: str, digest: str) -> list[Referrer]:
    rows = await session.scalars(
        select(Manifest)
        .where(
            Manifest.repository == repository,
            or_(Manifest.subject_digest == digest, Manifest.about_digest == digest),
        )
        .order_by(Manifest.id)
        .limit(200)
    )
    return [
        Referrer(
            r.digest,
            r.artifact_type,
            r.media_type,
            utc(r.created_at),
            "subject" if r.subject_digest == digest else "tag",
        )
        for r in rows.all()
    ]


async def pulls(
    session: AsyncSession, repository: str, digest: str, limit: int = 50
) -> list[AccessRecord]:
    """The latest pulls of this image from the access log (by tag or digest), newest first."""
    rows = await session.scalars(
        select(AccessLog)
        .where(
            AccessLog.digest == digest,
            AccessLog.repository == repository,
            AccessLog.action.in_(PULL_ACTIONS),
        )
        .order_by(AccessLog.time.desc(), AccessLog.id.desc())
        .limit(limit)
    )
    fields = AccessRecord.__dataclass_fields__
    return [AccessRecord(**{name: getattr(r, name) for name in fields}) for r in rows.all()]
