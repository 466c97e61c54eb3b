"""The gatekeeper's own index of manifests: what each references, which tags point where, and
which artifacts name an image as their ``subject`` (the referrers API the upstream lacks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BindParameter, bindparam, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from oci.manifests import ManifestRecord
from storage.models import Manifest, ManifestRef, Tag
from storage.prepared import Prepared, table, upserting


@dataclass(frozen=True)
class Referrer:
    """A descriptor for the referrers response."""

    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, Any] | None


_MANIFESTS = table(Manifest)
_REFS = table(ManifestRef)

_DESCRIBED = ("media_type", "size", "artifact_type", "config_digest", "subject_digest")
"""The columns a manifest's content sets, written as they are by every push of it."""
_WRITTEN: dict[str, BindParameter[Any]] = {
    name: bindparam(f"new_{name}") for name in (*_DESCRIBED, "about_digest", "annotations")
}
"""Those and the image it is about, and its annotations: bind parameters ``new_<column>``."""

_ADD = Prepared(
    lambda insert_on: (
        insert_on(_MANIFESTS)
        .values(
            repository=bindparam("in_repository"),
            digest=bindparam("manifest_digest"),
            created_at=bindparam("moment"),
            **_WRITTEN,
        )
        .on_conflict_do_nothing()
        .returning(_MANIFESTS.c.id)
    )
)
"""Index a manifest unless it is indexed already; its new id, or nothing. Built once, as the
other statements of a push's write transaction (``storage.prepared``)."""

_THIS = (_MANIFESTS.c.repository == bindparam("in_repository")) & (
    _MANIFESTS.c.digest == bindparam("manifest_digest")
)
_INDEXED = select(_MANIFESTS.c.id, _MANIFESTS.c.about_digest).where(_THIS)
_REPLACE = update(_MANIFESTS).where(_MANIFESTS.c.id == bindparam("manifest_id")).values(**_WRITTEN)
_DROP_REFS = delete(_REFS).where(_REFS.c.manifest_id == bindparam("manifest_id"))
_ADD_REFS = insert(_REFS)
_TAG = Prepared(
    lambda insert_on: upserting(
        insert_on,
        table(Tag),
        ["repository", "tag"],
        repository=bindparam("in_repository"),
        tag=bindparam("new_tag"),
        digest=bindparam("manifest_digest"),
        updated_at=bindparam("moment"),
    )
)


def _values(record: ManifestRecord, about: str | None) -> dict[str, Any]:
    """The bind parameters of :data:`_ADD` and :data:`_REPLACE` for ``record``."""
    return {
        "in_repository": record.repository,
        "manifest_digest": record.digest,
        **{f"new_{name}": getattr(record, name) for name in _DESCRIBED},
        "new_about_digest": about,
        "new_annotations": record.annotations,
    }


async def record_manifest(session: AsyncSession, record: ManifestRecord, tag: str | None) -> None:
    """Insert or replace the manifest's row (pushing the same digest again is idempotent):
    one statement for a new manifest (the insert says whether it was new, no read first), a
    read, an update and the references' replacement for one indexed already (its
    ``created_at`` and what verification recorded on it stay); then the tag, one upsert."""
    moment = datetime.now(UTC)
    about = record.about_digest or record.subject_digest
    values = _values(record, about)
    created = await session.scalar(_ADD(session), {**values, "moment": moment})
    if created is None:
        indexed = (await session.execute(_INDEXED, values)).one()
        # What a push of the same digest does not say about the image stays as it was.
        values["new_about_digest"] = about or indexed.about_digest
        await session.execute(_REPLACE, {**values, "manifest_id": indexed.id})
        await session.execute(_DROP_REFS, {"manifest_id": indexed.id})
        created = indexed.id
    await _add_refs(session, int(created), record)
    if tag is not None:
        await session.execute(
            _TAG(session),
            {
                "in_repository": record.repository,
                "new_tag": tag,
                "manifest_digest": record.digest,
                "moment": moment,
            },
        )


async def index_if_absent(session: AsyncSession, record: ManifestRecord) -> str | None:
    """Index ``record`` unless the manifest is indexed already (what a push recorded stays,
    e.g. the image a cosign tag is about); the image it is about, as indexed. The insert says
    which: one statement and the references' for a new manifest, no read first."""
    about = record.about_digest or record.subject_digest
    values = _values(record, about)
    created = await session.scalar(_ADD(session), {**values, "moment": datetime.now(UTC)})
    if created is None:
        indexed = (await session.execute(_INDEXED, values)).one()
        return str(indexed.about_digest) if indexed.about_digest is not None else None
    await _add_refs(session, int(created), record)
    return about


async def _add_refs(session: AsyncSession, manifest_id: int, record: ManifestRecord) -> None:
    """The manifest's references, in one statement (Core rows: their ids are not needed)."""
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
    await session.execute(_ADD_REFS, refs)


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
