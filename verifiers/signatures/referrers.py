"""Where an image's signatures are found, and the Sigstore-bundle referrer check.

Two places, both from the gatekeeper's own view of the repository (never a client's word):
cosign's tag scheme (``sha256-<hex>.sig``) and OCI 1.1 referrers whose artifact type is a
Sigstore bundle, a cosign signature or a Notary Project signature
(``application/vnd.cncf.notary.signature``, checked by :mod:`notation.verify`). Both are
looked up in one repository: the image's own, or the rule's signature repository. That is what
cosign does with ``COSIGN_REPOSITORY``: it writes the tags *and* the referrer manifests there,
and reads both back from there only.

Each finding is a :class:`Candidate` that checks itself; a manifest that cannot even be read as a
signature becomes a candidate whose single step failed, so it is reported rather than silently
dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oci import boundedjson
from oci.cosign_tags import cosign_tag
from verifiers.base import Descriptor, Image, RepositoryView
from verifiers.signatures import keyless
from verifiers.signatures.bundle import BUNDLE_MEDIA_TYPES, Artifact, verify_bundle
from verifiers.signatures.context import Candidate, Context, read_limited
from verifiers.signatures.cosign import layers
from verifiers.signatures.errors import StepFailed
from verifiers.signatures.notation.verify import ARTIFACT_TYPE as NOTATION_ARTIFACT
from verifiers.signatures.notation.verify import NotationSignature
from verifiers.signatures.steps import Checked, Trail, run_trail

COSIGN_SIGNATURE_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
"""The in-toto predicate cosign uses for an image signature in a DSSE bundle. Other predicates
(provenance, SBOMs) are attestations about the image, not approvals of it, and do not count."""


async def discover(
    image: Image, store: RepositoryView, limit: int
) -> tuple[list[Candidate], list[str]]:
    """Candidates (at most ``limit``) found in ``store`` for ``image``, and notes on where
    nothing was found."""
    found: list[Candidate] = []
    notes: list[str] = []
    elsewhere = store.name != image.repository
    tag = cosign_tag(image.digest)
    label = f"{store.name}:{tag}" if elsewhere else tag
    at = f"{store.name}@" if elsewhere else ""
    fetched = await store.manifests.fetch(tag)
    if fetched is None:
        notes.append(f"no cosign signature tag {label}")
    else:
        found += _cosign_manifest(fetched.body, f"cosign tag {label}", limit)
    bundles = 0
    for descriptor, artifact_type in zip(store.referrers, store.referrer_types, strict=False):
        if len(found) >= limit:
            break
        if artifact_type in BUNDLE_MEDIA_TYPES:
            bundles += 1
            manifest = await store.manifests.fetch(descriptor.digest)
            where = f"referrer {at}{descriptor.digest[:19]}… (Sigstore bundle)"
            if manifest is not None:
                found.append(BundleReferrer(where, _json(manifest.body)))
        elif artifact_type == COSIGN_SIGNATURE_ARTIFACT:
            bundles += 1
            manifest = await store.manifests.fetch(descriptor.digest)
            if manifest is not None:
                where = f"referrer {at}{descriptor.digest[:19]}… (cosign signature)"
                found += _cosign_manifest(manifest.body, where, limit - len(found))
        elif artifact_type == NOTATION_ARTIFACT:
            bundles += 1
            manifest = await store.manifests.fetch(descriptor.digest)
            if manifest is not None:
                where = f"referrer {at}{descriptor.digest[:19]}… (Notation signature)"
                found.append(NotationSignature(where, _json(manifest.body)))
    if not bundles:
        # Where nothing was found, never "no signature": one may be under the cosign tag.
        where = f" in {store.name}" if elsewhere else ""
        notes.append(f"no referrer of a signature type{where} (Sigstore bundle, cosign, Notation)")
    return found[:limit], notes


def _json(body: bytes) -> Any:
    try:
        return boundedjson.loads(body)
    except ValueError:
        return None


def _cosign_manifest(body: bytes, where: str, limit: int) -> list[Candidate]:
    doc = _json(body)
    if not isinstance(doc, dict):
        return [Unreadable(where, "the signature manifest is not a JSON object")]
    found: list[Candidate] = list(layers(doc, where, limit))
    return found or [Unreadable(where, "the signature manifest has no simple-signing layer")]


@dataclass(frozen=True)
class Unreadable:
    """A signature manifest that holds no checkable signature."""

    source: str
    reason: str

    async def check(self, ctx: Context) -> Checked:
        trail = Trail(self.source)
        try:
            with trail.step("the signature manifest holds a signature"):
                raise StepFailed("signature.manifest-invalid", self.reason)
        except StepFailed:
            pass
        return trail.result(None)


@dataclass(frozen=True)
class BundleReferrer:
    """An OCI 1.1 referrer carrying a Sigstore bundle about the image."""

    source: str
    manifest: Any

    async def check(self, ctx: Context) -> Checked:
        return await run_trail(self.source, lambda trail: self._check(ctx, trail))

    async def _check(self, ctx: Context, trail: Trail) -> str:
        with trail.step("the referrer is a Sigstore bundle about this image"):
            layer = _bundle_layer(self.manifest, ctx.digest)
        with trail.step("the bundle matches its layer digest") as note:
            raw = await read_limited(ctx, layer, "bundle")
            note.detail = f"{len(raw)} bytes"
        keys = [s.key for s in ctx.rule.keys if s.key is not None]
        with trail.step("the bundle verifies: signature over this image, log proof, chain") as note:
            verified = verify_bundle(
                raw,
                Artifact.image(ctx.digest),
                ctx.trust,
                keys,
                require_tlog=ctx.rule.require_tlog,
            )
            if not verified.logged:
                note.detail = f"no log entry; rule {ctx.rule.name} does not require one"
        if verified.statement is not None:
            with trail.step("the bundle is a cosign image signature"):
                predicate = verified.statement.get("predicateType")
                if predicate != SIGN_PREDICATE:
                    raise StepFailed(
                        "signature.wrong-type",
                        f"the statement is a {predicate!r} attestation, not a signature",
                    )
        with trail.step("the bundle names a trusted signer") as note:
            if verified.key is not None:
                key_id = verified.key.key_id
                signer = next(s for s in ctx.rule.keys if s.key and s.key.key_id == key_id)
            else:
                assert verified.certificate is not None
                identity = keyless.identity_of(verified.certificate)
                signer = keyless.match_identity(identity, ctx.rule.identities)
            note.detail = f"{signer.name} ({signer.describe()})"
        return signer.name


def _bundle_layer(manifest: Any, digest: str) -> Descriptor:
    if not isinstance(manifest, dict):
        raise StepFailed("signature.bundle-invalid", "the referrer manifest is not JSON")
    subject = manifest.get("subject")
    if not isinstance(subject, dict) or subject.get("digest") != digest:
        raise StepFailed("signature.bundle-invalid", "the referrer's subject is another image")
    for layer in manifest.get("layers") or []:
        if isinstance(layer, dict) and layer.get("mediaType") in BUNDLE_MEDIA_TYPES:
            return Descriptor(
                str(layer["mediaType"]), str(layer.get("digest")), int(layer.get("size") or 0)
            )
    raise StepFailed("signature.bundle-invalid", "the referrer has no Sigstore bundle layer")
