"""What the database knows of a manifest before it is verified, read in one go.

A verification weighs, besides the content itself, what the gatekeeper's own records say: the
admins' holds covering its blobs, the findings other images made about them, the referrers
stored for it (signatures, SBOMs) and the indexes that list it. Each of these was a read of its
own, and each read on a busy serving loop waits for that loop (and, on PostgreSQL, for a round
trip of its checkout, its ``BEGIN`` and its end). Read together they cost one session, or
nothing of their own when a first pull verified in the serving process reads them in the write
transaction that marks it pending (``VerificationService.verify_inline``): that transaction
holds SQLite's write turn (PostgreSQL: its own snapshot per statement), so what they say is
what a read just after its commit would have said.

The facts are keyed by what the content lists (``_blobs``: config and layers; an index lists
no blob), never by its labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from oci.manifests import ManifestRecord
from storage import content, manifests
from storage.content import BlobFinding, Hold
from storage.manifests import Referrer


@dataclass(frozen=True)
class Facts:
    """The stored facts one verification of one manifest weighs."""

    holds: tuple[Hold, ...]
    """Admins' holds covering any of its blobs (its own image's included: the examination
    leaves those out)."""
    inherited: tuple[BlobFinding, ...]
    """Findings other images made about its blobs (none read for an index: it has none)."""
    referrers: tuple[Referrer, ...]
    """Manifests whose ``subject`` it is, oldest first."""
    covering: tuple[str, ...]
    """Indexes of its repository that list it, when the policy lets an index's signatures
    cover its platform images (else not read: empty)."""


def blobs(record: ManifestRecord) -> list[str]:
    """The blobs a manifest lists (config and layers), each once."""
    return list(dict.fromkeys(r.digest for r in record.refs if r.kind in content.BLOB_KINDS))


async def read(session: AsyncSession, record: ManifestRecord, *, covering: bool) -> Facts:
    """The facts of ``record``, in the caller's session (a read, or a write transaction).
    ``covering``: the policy lets index signatures cover children (the indexes listing it are
    read only then, and never for an index)."""
    repository, digest = record.repository, record.digest
    listed = blobs(record)
    is_index = record.config_digest is None
    holds = await content.holds_on(session, listed) if listed else []
    inherited = (
        []
        if is_index or not listed
        else await content.blob_findings(session, listed, besides=(repository, digest))
    )
    referrers = await manifests.referrers(session, repository, digest, None)
    parents = (
        await content.parents(session, repository, digest) if covering and not is_index else []
    )
    return Facts(tuple(holds), tuple(inherited), tuple(referrers), tuple(parents))
