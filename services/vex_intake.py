"""VEX referrers of an image: checked when they are verified, stored when they are believed.

A manifest pushed with a ``subject`` (or under an image's cosign tag) that presents itself as
an OpenVEX document or an OpenVEX attestation (its artifact type, layer types, or cosign's
``predicateType`` annotations) is read here, after the content examination found it to be an
artifact: ``verifiers.vex.envelope`` checks it against the keys the subject's policy trusts
for VEX. What it finds becomes the referrer's own ``vex`` outcome: a document that verified is
stored (``storage.vex``, scoped to this repository and this subject) and the policies are
applied again, so the subject is decided again from its stored findings; one that did not is
an ``info`` finding on the referrer naming the reason (``vex.unsigned``, ``vex.untrusted-key``,
``vex.wrong-subject``, ``vex.malformed``) and changes nothing else.

A document is stored only while its referrer is still indexed, in the transaction that holds the
manifest's row: a verification that read the referrer before it was deleted (a second job for
it, queued while the subject was decided) must not store again what the deletion withdrew.

Deleting a referrer manifest withdraws the document it brought (:func:`referrer_deleted`), but
only a document all of whose statements waive: withdrawing one that says ``affected`` or
``under_investigation`` could bring back an older ``not_affected`` it overrode, so anyone who
may delete in the repository could roll a retraction back. Such a document is withdrawn by an
admin (``POST /vex/{id}/withdraw``), or overridden by a later statement.

The labels only decide whether a manifest is *offered* as VEX: a VEX document can only take
findings away from an image if its signature verifies, so a mislabelled one is merely not
believed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from config.policy import Policy
from services.examine import Fetched
from storage import manifests, vex
from storage.vex import StoredVex
from upstream.reads import UpstreamBlobs
from verifiers.base import Finding, Severity
from verifiers.pipeline import Outcome
from verifiers.signatures.bundle import BUNDLE_MEDIA_TYPES
from verifiers.vex.envelope import (
    DSSE_TYPE,
    OPENVEX_TYPE,
    PREDICATE_ANNOTATIONS,
    Rejected,
    is_openvex,
    verify,
)
from verifiers.vex.model import MAX_BYTES, VexError, parse

NAME = "vex"
VERSION = "1"
MAX_LAYERS = 4
"""Layers of one referrer read at most (cosign writes one)."""
GONE = "the referrer was deleted while it was verified: its VEX is not stored"


@dataclass(frozen=True)
class Intake:
    """What one VEX referrer came to."""

    outcome: Outcome
    stored: StoredVex | None = None
    """The document it brought, newly stored (the policies must be applied again)."""


def _annotated(annotations: object) -> bool:
    if not isinstance(annotations, dict):
        return False
    return any(is_openvex(annotations.get(name)) for name in PREDICATE_ANNOTATIONS)


def offered(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The layers of a manifest that present themselves as VEX (empty: it is not offered as
    VEX at all)."""
    layers = [x for x in doc.get("layers") or [] if isinstance(x, dict)]
    kind = doc.get("artifactType")
    manifest_says = kind == OPENVEX_TYPE or (
        kind in BUNDLE_MEDIA_TYPES and _annotated(doc.get("annotations"))
    )
    chosen = []
    for layer in layers:
        media_type = layer.get("mediaType")
        if (
            media_type == OPENVEX_TYPE
            or (media_type == DSSE_TYPE and _annotated(layer.get("annotations")))
            or (manifest_says and media_type in (*BUNDLE_MEDIA_TYPES, DSSE_TYPE))
        ):
            chosen.append(layer)
    return chosen[:MAX_LAYERS]


def _rejected(problems: Sequence[Rejected], where: str) -> Outcome:
    findings = tuple(
        Finding(NAME, p.rule, Severity.INFO, f"VEX referrer not believed: {p.detail}"[:300], where)
        for p in problems
    )
    return Outcome(NAME, VERSION, "ok", findings, "a VEX referrer that changes nothing")


async def intake(
    db: async_sessionmaker[Any], blobs: UpstreamBlobs, fetched: Fetched, policy: Policy
) -> Intake | None:
    """Check and store the VEX a referrer brings (see the module docstring); None for a
    manifest that is not offered as VEX or is about no image."""
    record, subject = fetched.record, fetched.about
    layers = offered(fetched.doc)
    if not layers or subject is None or subject == record.digest:
        return None
    keys = policy.vex.trusted_keys if policy.vex else ()
    problems: list[Rejected] = []
    for layer in layers:
        try:
            blob = await _read(blobs, layer)
            accepted = verify(
                blob,
                subject=subject,
                repository=record.repository,
                keys=keys,
                policy=policy.name,
            )
        except Rejected as problem:
            problems.append(problem)
            continue
        async with db() as session, session.begin():
            if not await manifests.get_manifest(
                session, record.repository, record.digest, for_update=True
            ):
                return Intake(Outcome(NAME, VERSION, "ok", (), GONE))
            known = await vex.of_referrer(session, record.repository, record.digest)
            if known is not None:
                detail = f"VEX {known.id} (by {known.author}) is in force"
                return Intake(Outcome(NAME, VERSION, "ok", (), detail))
            stored = await vex.add(
                session,
                source=vex.REFERRER,
                scope=record.repository,
                subject=subject,
                referrer=record.digest,
                signer=accepted.signer.key_id,
                document=accepted.text,
                author=accepted.document.author,
                added_by="gatekeeper",
            )
        detail = (
            f"VEX {stored.id} by {stored.author} accepted for {subject}, signed by "
            f"{accepted.signer.key_id[:23]}... (trusted by policy {policy.name})"
        )
        return Intake(Outcome(NAME, VERSION, "ok", (), detail), stored)
    return Intake(_rejected(problems, record.digest))


async def _read(blobs: UpstreamBlobs, layer: dict[str, Any]) -> bytes:
    digest = str(layer.get("digest") or "")
    if not digest.startswith("sha256:"):
        raise Rejected("vex.malformed", f"layer digest {digest[:80]!r} is not sha256")
    size = layer.get("size")
    if not isinstance(size, int) or size > MAX_BYTES:
        raise Rejected("vex.malformed", f"the VEX layer is over {MAX_BYTES} bytes or unsized")
    blob = await blobs.read(digest, MAX_BYTES)
    if blob is None or "sha256:" + hashlib.sha256(blob).hexdigest() != digest:
        raise Rejected("vex.malformed", f"the VEX layer does not match its digest {digest}")
    return blob


DELETED = "its referrer manifest was deleted"


async def referrer_deleted(
    db: async_sessionmaker[Any], repository: str, digest: str, who: str
) -> StoredVex | None:
    """Withdraw the document the deleted referrer brought, if it only waives (see the module
    docstring); the withdrawn document, or None."""
    async with db() as session, session.begin():
        found = await vex.of_referrer(session, repository, digest)
        if found is None or not _only_waives(found.document):
            return None
        return await vex.withdraw(session, found.id, who, DELETED)


def _only_waives(text: str) -> bool:
    try:
        document = parse(text)
    except VexError:
        return True  # it waives nothing the policies load: withdrawing it changes nothing
    return all(s.status.waives for s in document.statements)
