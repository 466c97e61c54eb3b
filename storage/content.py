"""What the database knows about blobs, whatever manifest refers to them: the findings they
carry, the holds that cover them, the images that reference them.

A manifest is only a list of digests a client wrote; the bytes behind those digests are what
can leave the registry. These queries let the gate and the verification service judge a blob by
its own history instead of by the labels of the manifest that happens to list it. Which of these
facts block what is decided elsewhere (``verifiers.lifecycle``, ``proxy.gate``).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Select, and_, bindparam, delete, not_, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import ContentHold, FindingRow, Manifest, ManifestRef, Verdict
from storage.timeutil import now as utcnow
from storage.timeutil import utc
from storage.verdicts import FindingRecord, pullable_clause
from verifiers.lifecycle import State

BLOB_KINDS = ("config", "layer")
"""Reference kinds that are blobs (an index's children are manifests)."""
_CHUNK = 500


@dataclass(frozen=True)
class BlobFinding:
    """A finding some image's verification made about one of its blobs."""

    repository: str
    digest: str
    """The image whose verification found it."""
    finding: FindingRecord


@dataclass(frozen=True)
class Hold:
    """One blob covered by an admin's hold on an image."""

    blob: str
    repository: str
    digest: str
    actor: str
    reason: str
    created_at: datetime

    @property
    def holder(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Server:
    """A manifest of one repository that references a blob, with its verdict."""

    digest: str
    state: str | None
    """None: no verdict yet."""
    release_expires: datetime | None
    origin: str = "local"
    """Where the image comes from (``Verdict.origin``): its policy depends on it."""


def _chunks(values: Sequence[str]) -> list[list[str]]:
    ordered = sorted(set(values))
    return [ordered[n : n + _CHUNK] for n in range(0, len(ordered), _CHUNK)]


async def blob_findings(
    session: AsyncSession,
    blobs: Sequence[str],
    *,
    besides: tuple[str, str] | None = None,
) -> list[BlobFinding]:
    """The findings images found about these blobs themselves (not inherited ones), except
    those of image ``besides``."""
    found: list[BlobFinding] = []
    for chunk in _chunks(blobs):
        query = select(FindingRow).where(FindingRow.blob.in_(chunk), FindingRow.origin.is_(None))
        if besides is not None:
            query = query.where(
                or_(FindingRow.repository != besides[0], FindingRow.digest != besides[1])
            )
        for row in (await session.scalars(query.order_by(FindingRow.id))).all():
            found.append(BlobFinding(row.repository, row.digest, _record_of(row)))
    return found


async def unweighed(
    session: AsyncSession,
    blob: str,
    *,
    repository: str,
    manifests: Sequence[str],
    severities: Sequence[str],
    waived: Collection[str],
    unfixed_report: Collection[str],
    limit: int = 20,
) -> list[BlobFinding]:
    """Findings of ``blob``'s own (from any image) of one of ``severities``, not waived (by
    rule id or ``verifier:rule``), not an unfixed finding of the ``unfixed_report`` verifiers,
    that none of ``manifests`` of ``repository`` was decided with (as its own finding or an
    inherited one). The database does the filtering, so a base layer shared by thousands of
    images costs an index range, not thousands of rows in Python."""
    query = _unweighed_query(
        tuple(severities), tuple(sorted(waived)), tuple(sorted(unfixed_report)), limit
    )
    values = {"blob": blob, "repository": repository, "manifests": list(manifests)}
    rows = (await session.scalars(query, values)).all()
    return [BlobFinding(r.repository, r.digest, _record_of(r)) for r in rows]


@functools.lru_cache(maxsize=256)
def _unweighed_query(
    severities: tuple[str, ...],
    waived: tuple[str, ...],
    unfixed_report: tuple[str, ...],
    limit: int,
) -> Select[FindingRow]:
    """:func:`unweighed`'s statement for one policy's rules, made once: a blob pull that is
    not cached runs it, and building it (an alias, a dozen clauses) and its cache key cost
    more of the serving loop than running it. Per pull only ``blob``, ``repository`` and
    ``manifests`` change, as bound parameters."""
    theirs = aliased(FindingRow)
    blob: BindParameter[str] = bindparam("blob")
    weighed = (
        select(theirs.id)
        .where(
            theirs.repository == bindparam("repository"),
            theirs.digest.in_(bindparam("manifests", expanding=True)),
            theirs.blob == blob,
            theirs.verifier == FindingRow.verifier,
            theirs.rule_id == FindingRow.rule_id,
            theirs.location == FindingRow.location,
        )
        .exists()
    )
    query = select(FindingRow).where(
        FindingRow.blob == blob,
        FindingRow.severity.in_(list(severities)),
        FindingRow.origin.is_(None),
        ~weighed,
    )
    if waived:
        names = list(waived)
        query = query.where(
            FindingRow.rule_id.not_in(names),
            (FindingRow.verifier + ":" + FindingRow.rule_id).not_in(names),
        )
    if unfixed_report:
        unfixed = and_(FindingRow.verifier.in_(list(unfixed_report)), FindingRow.fix == "")
        query = query.where(~unfixed)
    return query.order_by(FindingRow.id).limit(limit)


def _record_of(row: FindingRow) -> FindingRecord:
    return FindingRecord(
        row.verifier,
        row.rule_id,
        row.severity,
        row.title,
        row.location,
        row.evidence,
        row.fix,
        row.blob,
        row.origin,
    )


async def with_findings(session: AsyncSession, blobs: Sequence[str]) -> set[str]:
    """Which of ``blobs`` carry findings of their own (about what they hold: a secret, a
    vulnerable package, a hostile entry): such a blob is image content wherever it turns up
    again, whatever the manifest that lists it declares. Only held content counts, never a
    blob's mere use in some manifest: a pusher could otherwise mark the ``{}`` every artifact
    shares as image content."""
    seen: set[str] = set()
    for chunk in _chunks(blobs):
        query = select(FindingRow.blob).where(
            FindingRow.blob.in_(chunk), FindingRow.origin.is_(None)
        )
        seen.update(b for b in (await session.scalars(query.distinct())).all() if b)
    return seen


EMPTY_BLOB = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
"""The OCI empty descriptor's blob, ``{}``: every artifact shares it and it holds nothing."""


async def in_images(
    session: AsyncSession, repository: str, blobs: Sequence[str], besides: str
) -> dict[str, str]:
    """Which of ``blobs`` an image manifest of ``repository`` (other than ``besides``) lists,
    as its config or a layer, each with one such image's digest. An artifact carrying such a
    blob would be a way out for the image's content whatever its verdict, so it is verified
    as an image instead (``services.examine``). Only this repository counts (a pusher can only
    mark blobs as image content where it may push), and never the empty ``{}``."""
    found: dict[str, str] = {}
    wanted = [b for b in dict.fromkeys(blobs) if b != EMPTY_BLOB]
    for chunk in _chunks(wanted):
        rows = await session.execute(
            select(ManifestRef.digest, Manifest.digest)
            .join(Manifest, Manifest.id == ManifestRef.manifest_id)
            .where(
                ManifestRef.digest.in_(chunk),
                ManifestRef.kind.in_(("config", "layer")),
                Manifest.repository == repository,
                Manifest.digest != besides,
                or_(Manifest.content_kind.is_(None), Manifest.content_kind == "image"),
            )
        )
        for blob, manifest in rows.all():
            found.setdefault(str(blob), str(manifest))
    return found


async def holds_on(session: AsyncSession, blobs: Sequence[str]) -> list[Hold]:
    """The holds covering any of ``blobs``, oldest first."""
    found: list[Hold] = []
    for chunk in _chunks(blobs):
        rows = await session.scalars(
            select(ContentHold)
            .where(ContentHold.blob.in_(chunk))
            .order_by(ContentHold.created_at, ContentHold.repository, ContentHold.digest)
        )
        found += [_hold(r) for r in rows.all()]
    return found


def _hold(row: ContentHold) -> Hold:
    return Hold(
        row.blob,
        row.repository,
        row.digest,
        row.actor,
        row.reason,
        utc(row.created_at) or utcnow(),
    )


async def image_blobs(session: AsyncSession, repository: str, digest: str) -> list[tuple[str, str]]:
    """(kind, digest) of the config and layers of one indexed manifest."""
    rows = await session.execute(
        select(ManifestRef.kind, ManifestRef.digest)
        .join(Manifest, Manifest.id == ManifestRef.manifest_id)
        .where(
            Manifest.repository == repository,
            Manifest.digest == digest,
            ManifestRef.kind.in_(BLOB_KINDS),
        )
        .order_by(ManifestRef.position)
    )
    return [(kind, blob) for kind, blob in rows.all()]


async def hold_content(
    session: AsyncSession, repository: str, digest: str, actor: str, reason: str
) -> list[str]:
    """Cover the content of held image ``repository@digest``: its config (an image's config is
    its own; an artifact's, like the ``{}`` every artifact shares, only if no pullable manifest
    lists it too), and each layer no other pullable manifest references now (a shared base
    layer of good images stays pullable). Returns the blobs now held."""
    moment = utcnow()
    row = await session.scalar(
        select(Manifest).where(Manifest.repository == repository, Manifest.digest == digest)
    )
    own_config = row is not None and row.content_kind in (None, "image")
    held: list[str] = []
    for kind, blob in await image_blobs(session, repository, digest):
        if blob in held:
            continue
        always = kind == "config" and own_config
        if not always and await _pullable_elsewhere(session, blob, repository, digest):
            continue
        held.append(blob)
    await session.execute(
        delete(ContentHold).where(
            ContentHold.repository == repository, ContentHold.digest == digest
        )
    )
    for blob in held:
        session.add(
            ContentHold(
                blob=blob,
                repository=repository,
                digest=digest,
                actor=actor,
                reason=reason,
                created_at=moment,
            )
        )
    await session.flush()
    return held


async def _pullable_elsewhere(
    session: AsyncSession, blob: str, repository: str, digest: str
) -> bool:
    query = select(Manifest.id).where(
        ManifestRef.digest == blob,
        ManifestRef.kind.in_(BLOB_KINDS),
        Manifest.id == ManifestRef.manifest_id,
        or_(Manifest.repository != repository, Manifest.digest != digest),
        Verdict.repository == Manifest.repository,
        Verdict.digest == Manifest.digest,
        pullable_clause(utcnow()),
    )
    return (await session.scalar(query.limit(1))) is not None


async def lift_holds(session: AsyncSession, repository: str, digest: str) -> list[str]:
    """Drop the holds of image ``repository@digest`` (it was released); returns the blobs they
    covered."""
    blobs = list(
        (
            await session.scalars(
                select(ContentHold.blob).where(
                    ContentHold.repository == repository, ContentHold.digest == digest
                )
            )
        ).all()
    )
    await session.execute(
        delete(ContentHold).where(
            ContentHold.repository == repository, ContentHold.digest == digest
        )
    )
    return blobs


async def referencing(
    session: AsyncSession, blobs: Sequence[str], limit: int = 10_000
) -> list[tuple[str, str]]:
    """Manifests, in any repository, that reference any of ``blobs`` as config or layer."""
    found: set[tuple[str, str]] = set()
    for chunk in _chunks(blobs):
        rows = await session.execute(
            select(Manifest.repository, Manifest.digest)
            .join(ManifestRef, ManifestRef.manifest_id == Manifest.id)
            .where(ManifestRef.digest.in_(chunk), ManifestRef.kind.in_(BLOB_KINDS))
            .distinct()
            .limit(limit)
        )
        found.update((r, d) for r, d in rows.all())
    return sorted(found)[:limit]


_SERVING = (
    select(Manifest.digest, Verdict.state, Verdict.release_expires, Verdict.origin)
    .join(ManifestRef, ManifestRef.manifest_id == Manifest.id)
    .outerjoin(
        Verdict,
        and_(Verdict.repository == Manifest.repository, Verdict.digest == Manifest.digest),
    )
    .where(
        Manifest.repository == bindparam("repository"),
        ManifestRef.digest == bindparam("blob"),
        ManifestRef.kind.in_(BLOB_KINDS),
    )
    .distinct()
)
""":func:`serving`'s statement, made once (see :func:`_unweighed_query`)."""


async def serving(session: AsyncSession, repository: str, blob: str) -> list[Server]:
    """The manifests of ``repository`` that reference ``blob`` as config or layer, each with
    its verdict (the candidates a blob pull could be part of)."""
    rows = await session.execute(_SERVING, {"repository": repository, "blob": blob})
    return [
        Server(digest, state, utc(expires), origin or "local")
        for digest, state, expires, origin in rows.all()
    ]


async def unpullable_with(session: AsyncSession, blob: str) -> tuple[str, str, str | None] | None:
    """One image, in any repository, that lists ``blob`` as config or layer and may not be
    pulled now (quarantined, pending, never verified, or a release that ran out), as
    (repository, digest, state); None when there is none."""
    row = (
        await session.execute(
            select(Manifest.repository, Manifest.digest, Verdict.state)
            .join(ManifestRef, ManifestRef.manifest_id == Manifest.id)
            .outerjoin(
                Verdict,
                and_(Verdict.repository == Manifest.repository, Verdict.digest == Manifest.digest),
            )
            .where(ManifestRef.digest == blob, ManifestRef.kind.in_(BLOB_KINDS))
            .where(or_(Verdict.digest.is_(None), not_(pullable_clause(utcnow()))))
            .order_by(Manifest.repository, Manifest.digest)
            .limit(1)
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2])


async def parents(session: AsyncSession, repository: str, digest: str) -> list[str]:
    """Indexes of ``repository`` that list manifest ``digest`` as a child."""
    return await _index_links(session, repository, ManifestRef.digest == digest, Manifest.digest)


async def children(session: AsyncSession, repository: str, digest: str) -> list[str]:
    """The manifests index ``repository@digest`` lists (none if it is not an index)."""
    return await _index_links(session, repository, Manifest.digest == digest, ManifestRef.digest)


async def _index_links(session: AsyncSession, repository: str, where: Any, pick: Any) -> list[str]:
    """One side of the index -> child links of ``repository`` that match ``where``."""
    rows = await session.scalars(
        select(pick)
        .select_from(ManifestRef)
        .join(Manifest, Manifest.id == ManifestRef.manifest_id)
        .where(Manifest.repository == repository, ManifestRef.kind == "manifest", where)
        .distinct()
    )
    return sorted(rows.all())


async def dependents(session: AsyncSession, repository: str, digest: str) -> list[str]:
    """Manifests of ``repository`` whose verdict depends on that of ``digest``: the indexes
    that list it, and the artifacts about it."""
    about = select(Manifest.digest).where(
        Manifest.repository == repository, Manifest.about_digest == digest
    )
    listing = (
        select(Manifest.digest)
        .select_from(ManifestRef)
        .join(Manifest, Manifest.id == ManifestRef.manifest_id)
        .where(
            Manifest.repository == repository,
            ManifestRef.kind == "manifest",
            ManifestRef.digest == digest,
        )
    )
    # One statement (a verdict's change looks them up before a held first pull is answered).
    return sorted(set((await session.scalars(union(about, listing))).all()))


async def states(
    session: AsyncSession, repository: str, digests: Sequence[str]
) -> dict[str, tuple[State, datetime | None, list[str]]]:
    """State, release expiry and reasons of the verdicts of these manifests of one repository
    (missing: no verdict)."""
    found: dict[str, tuple[State, datetime | None, list[str]]] = {}
    for chunk in _chunks(digests):
        rows = await session.execute(
            select(Verdict.digest, Verdict.state, Verdict.release_expires, Verdict.reasons).where(
                Verdict.repository == repository, Verdict.digest.in_(chunk)
            )
        )
        for digest, state, expires, reasons in rows.all():
            found[digest] = (State(state), utc(expires), list(reasons or ()))
    return found
