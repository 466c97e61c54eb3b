"""The manifest index a push writes (``storage.manifests.record_manifest``) and a first pull
fills (``index_if_absent``): one statement for a new manifest, the row replaced in place for
one pushed again."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from oci.manifests import DescriptorRecord, ManifestRecord
from storage import manifests
from storage.models import Manifest, ManifestRef, Tag

IMAGE = "sha256:" + "1" * 64
OTHER = "sha256:" + "2" * 64
SUBJECT = "sha256:" + "3" * 64


def _record(digest: str = IMAGE, *, layers: int = 2, **fields: Any) -> ManifestRecord:
    refs = (
        DescriptorRecord(
            "config", "sha256:" + "c" * 64, "application/vnd.oci.image.config.v1+json", 9
        ),
        *(
            DescriptorRecord(
                "layer", f"sha256:{n:064x}", "application/vnd.oci.image.layer.v1.tar", n
            )
            for n in range(layers)
        ),
    )
    values: dict[str, Any] = {
        "media_type": "application/vnd.oci.image.manifest.v1+json",
        "size": 321,
        "config_digest": "sha256:" + "c" * 64,
        "annotations": {"org.example": "x\u00e9"},
        "refs": refs,
        **fields,
    }
    return ManifestRecord("team/app", digest, **values)


async def _record_it(db: async_sessionmaker[Any], record: ManifestRecord, tag: str | None) -> None:
    async with db() as session, session.begin():
        await manifests.record_manifest(session, record, tag)


async def _state(
    db: async_sessionmaker[Any],
) -> tuple[list[Manifest], list[tuple[Any, ...]], dict[str, str]]:
    async with db() as session:
        rows = list((await session.scalars(select(Manifest).order_by(Manifest.id))).all())
        refs = [
            tuple(r)
            for r in await session.execute(
                select(
                    ManifestRef.manifest_id,
                    ManifestRef.position,
                    ManifestRef.kind,
                    ManifestRef.digest,
                ).order_by(ManifestRef.manifest_id, ManifestRef.position)
            )
        ]
        tags = {t.tag: t.digest for t in (await session.scalars(select(Tag))).all()}
    return rows, refs, tags


async def test_a_new_manifest_is_indexed_with_its_references_and_tag(
    db: async_sessionmaker[Any],
) -> None:
    await _record_it(db, _record(subject_digest=SUBJECT), "v1")
    rows, refs, tags = await _state(db)
    [row] = rows
    assert (row.repository, row.digest, row.media_type, row.size) == (
        "team/app",
        IMAGE,
        "application/vnd.oci.image.manifest.v1+json",
        321,
    )
    assert row.annotations == {"org.example": "x\u00e9"}
    assert row.subject_digest == row.about_digest == SUBJECT
    assert row.created_at.tzinfo is not None
    assert [(r[1], r[2]) for r in refs] == [(0, "config"), (1, "layer"), (2, "layer")]
    assert {r[0] for r in refs} == {row.id}
    assert tags == {"v1": IMAGE}


async def test_pushing_the_same_digest_again_replaces_the_row_in_place(
    db: async_sessionmaker[Any],
) -> None:
    await _record_it(db, _record(about_digest=SUBJECT), "v1")
    [before], _, _ = await _state(db)
    # The same digest again, under another tag, saying nothing about what it is about.
    await _record_it(db, _record(layers=1, size=999), "v2")
    rows, refs, tags = await _state(db)
    [row] = rows
    assert (row.id, row.created_at) == (before.id, before.created_at)
    assert row.size == 999
    assert row.about_digest == SUBJECT  # kept: the push did not say otherwise
    assert [(r[0], r[1], r[2]) for r in refs] == [(row.id, 0, "config"), (row.id, 1, "layer")]
    assert tags == {"v1": IMAGE, "v2": IMAGE}


async def test_a_tag_pushed_again_points_at_the_new_digest(db: async_sessionmaker[Any]) -> None:
    await _record_it(db, _record(), "latest")
    await _record_it(db, _record(OTHER), "latest")
    rows, refs, tags = await _state(db)
    assert [r.digest for r in rows] == [IMAGE, OTHER]
    assert len(refs) == 6
    assert tags == {"latest": OTHER}


async def test_index_if_absent_leaves_an_indexed_manifest_as_it_is(
    db: async_sessionmaker[Any],
) -> None:
    await _record_it(db, _record(about_digest=SUBJECT), None)
    async with db() as session, session.begin():
        about = await manifests.index_if_absent(session, _record(size=5))
    assert about == SUBJECT
    rows, refs, tags = await _state(db)
    assert [r.size for r in rows] == [321] and len(refs) == 3 and tags == {}
    async with db() as session, session.begin():
        about = await manifests.index_if_absent(session, _record(OTHER, subject_digest=SUBJECT))
    assert about == SUBJECT
    rows, refs, _ = await _state(db)
    assert [r.digest for r in rows] == [IMAGE, OTHER] and len(refs) == 6
