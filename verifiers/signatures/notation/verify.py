"""One Notation signature found as a referrer, checked as the Notary Project verification
specification orders it, each validation enforced or only logged as the trust policy's level
says.

Steps (integrity is always enforced):

1. the referrer is a Notation signature about this image, its envelope layer the first blob;
2. the envelope blob matches its layer digest (bounded read);
3. the trust policy Notation would apply to this repository is one of the rule's signers
   (a ``skip`` policy ends here: nothing is verified, as documented);
4. the envelope parses as JWS or COSE, by the layer's media type (integrity);
5. the signature verifies with the signing certificate's key (integrity);
6. the payload's target artifact is this image: digest, size, media type (integrity);
7. no critical extended attribute the gatekeeper does not understand (verification plugins);
8. the chain is well-formed and meets the certificate requirements (authenticity);
9. it leads to a named store of the scheme's type: ``ca`` or ``signingAuthority``;
10. the signing certificate's subject is a trusted identity (authenticity);
11. the signature's own expiry has not passed (expiry);
12. ``notary.x509`` with a ``tsa`` store: the RFC 3161 countersignature (authenticTimestamp);
13. the chain was valid at the authentic signing time, else now (authenticTimestamp);
14. no certificate of the chain is revoked, by the configured CRLs (revocation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature

from verifiers.base import Descriptor
from verifiers.signatures.context import Context, read_limited
from verifiers.signatures.errors import StepFailed
from verifiers.signatures.notation import chain, envelope_cose, envelope_jws
from verifiers.signatures.notation.envelope import (
    MEDIA_COSE,
    MEDIA_JWS,
    SCHEME_AUTHORITY,
    Envelope,
    EnvelopeInvalid,
    integrity,
    target_of,
)
from verifiers.signatures.notation.identity import describe_subject
from verifiers.signatures.notation.timestamp import Stamped, verify_token
from verifiers.signatures.notation.trustpolicy import (
    AUTHENTIC_TIMESTAMP,
    AUTHENTICITY,
    ENFORCE,
    EXPIRY,
    REVOCATION,
    SKIP,
    NotationPolicy,
)
from verifiers.signatures.policy import Signer
from verifiers.signatures.steps import Checked, Trail, run_trail

ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
PARSERS: dict[str, Callable[[bytes], Envelope]] = {
    MEDIA_JWS: envelope_jws.parse,
    MEDIA_COSE: envelope_cose.parse,
}


def _envelope_invalid(detail: str) -> StepFailed:
    return StepFailed("notation.envelope-invalid", detail)


@dataclass(frozen=True)
class NotationSignature:
    """A referrer of artifact type ``application/vnd.cncf.notary.signature``."""

    source: str
    manifest: Any

    async def check(self, ctx: Context) -> Checked:
        return await run_trail(self.source, lambda trail: self._check(ctx, trail))

    async def _check(self, ctx: Context, trail: Trail) -> str:
        with trail.step("the referrer is a Notation signature about this image") as note:
            layer = envelope_layer(self.manifest, ctx.digest)
            note.detail = layer.media_type
        with trail.step("the envelope matches its layer digest") as note:
            raw = await read_limited(ctx, layer, "signature envelope")
            note.detail = f"{len(raw)} bytes"
        with trail.step("a Notation trust policy of the rule applies to this repository") as note:
            signer, policy = applicable(ctx)
            note.detail = f"{policy.describe()}, signer {signer.name}"
        if policy.skipped:
            with trail.step("verification level skip: nothing is verified") as note:
                note.detail = f"{signer.name} counts without verification"
            return signer.name
        envelope = self._integrity(ctx, trail, raw, layer.media_type)
        self._authenticity(trail, envelope, policy)
        self._expiry(ctx, trail, envelope, policy)
        stamped = self._timestamp(ctx, trail, envelope, policy)
        self._revocation(ctx, trail, envelope, policy, stamped)
        return signer.name

    def _integrity(self, ctx: Context, trail: Trail, raw: bytes, media_type: str) -> Envelope:
        with trail.step("the envelope is a valid Notary Project envelope") as note:
            try:
                envelope = PARSERS[media_type](raw)
            except EnvelopeInvalid as exc:
                raise _envelope_invalid(str(exc)) from exc
            note.detail = f"{envelope.format}, {envelope.signing_scheme}"
        with trail.step("the signature verifies with the signing certificate's key") as note:
            try:
                note.detail = integrity(envelope)
            except EnvelopeInvalid as exc:
                raise _envelope_invalid(str(exc)) from exc
            except InvalidSignature as exc:
                raise StepFailed(
                    "notation.signature-invalid",
                    "the signature does not verify: the envelope was changed after signing, "
                    "or the signature is for other bytes",
                ) from exc
        with trail.step("the payload names this image: digest, size and media type") as note:
            try:
                target = target_of(envelope)
            except EnvelopeInvalid as exc:
                raise _envelope_invalid(str(exc)) from exc
            check_target(target.digest, target.size, target.media_type, ctx)
            note.detail = f"{target.digest} ({target.size} bytes)"
        with trail.step("every critical attribute is one the gatekeeper understands"):
            unknown = envelope.unknown_critical
            if unknown:
                raise StepFailed(
                    "notation.unknown-critical-attribute",
                    f"critical attributes {', '.join(unknown)} must be understood to trust the "
                    "signature, and the gatekeeper does not (it runs no verification plugins)",
                )
        return envelope

    def _authenticity(self, trail: Trail, envelope: Envelope, policy: NotationPolicy) -> None:
        enforce = policy.action(AUTHENTICITY) == ENFORCE
        certs = envelope.certificates
        with trail.step("the certificate chain is complete and well-formed", enforce=enforce):
            chain.check_order(certs)
            chain.check_requirements(certs, chain.CODE_SIGNING)
        kind = "signingAuthority" if envelope.signing_scheme == SCHEME_AUTHORITY else "ca"
        with trail.step(f"the chain leads to a {kind} trust store", enforce=enforce) as note:
            note.detail = chain.trusted_by(certs, policy.stores_for(kind))
        with trail.step("the signing certificate is a trusted identity", enforce=enforce) as note:
            subject = describe_subject(certs[0].subject)
            if policy.identities is None:
                note.detail = f"{subject} (the policy trusts any identity: '*')"
            elif any(i.matches(certs[0].subject) for i in policy.identities):
                note.detail = subject
            else:
                trusted = "; ".join(i.text for i in policy.identities)
                raise StepFailed(
                    "notation.identity-not-trusted",
                    f"signed by {subject or '(empty subject)'}, not a trusted identity of trust "
                    f"policy {policy.name} (trusted: {trusted})",
                )

    def _expiry(
        self, ctx: Context, trail: Trail, envelope: Envelope, policy: NotationPolicy
    ) -> None:
        enforce = policy.action(EXPIRY) == ENFORCE
        with trail.step("the signature has not expired", enforce=enforce) as note:
            if envelope.expiry is None:
                note.detail = "no expiry set"
            elif ctx.now >= envelope.expiry:
                raise StepFailed(
                    "notation.expired",
                    f"the signature expired {envelope.expiry:%Y-%m-%dT%H:%M:%SZ}",
                )
            else:
                note.detail = f"until {envelope.expiry:%Y-%m-%dT%H:%M:%SZ}"

    def _timestamp(
        self, ctx: Context, trail: Trail, envelope: Envelope, policy: NotationPolicy
    ) -> Stamped | None:
        action = policy.action(AUTHENTIC_TIMESTAMP)
        enforce = action == ENFORCE
        certs = envelope.certificates
        stamped: Stamped | None = None
        if _timestamp_required(envelope, policy, ctx.now):
            with trail.step("the RFC 3161 timestamp verifies", enforce=enforce) as note:
                stamped = verify_token(envelope.timestamp, envelope.signature, list(policy.tsa))
                note.detail = stamped.describe()
        with trail.step("the chain was valid at the authentic signing time", enforce=enforce) as n:
            if stamped is not None:
                chain.check_validity(certs, stamped.lower, stamped.upper)
                n.detail = f"timestamped {stamped.describe()}"
            elif envelope.authentic_signing_time is not None:
                moment = envelope.authentic_signing_time
                chain.check_validity(certs, moment, moment)
                n.detail = f"authentic signing time {moment:%Y-%m-%dT%H:%M:%SZ}"
            else:
                chain.check_validity(certs, ctx.now, ctx.now)
                n.detail = "no authentic time: valid now"
        return stamped

    def _revocation(
        self,
        ctx: Context,
        trail: Trail,
        envelope: Envelope,
        policy: NotationPolicy,
        stamped: Stamped | None,
    ) -> None:
        action = policy.action(REVOCATION)
        if action == SKIP:
            return
        with trail.step("no certificate of the chain is revoked", enforce=action == ENFORCE) as n:
            if ctx.crls is None or not ctx.crls.crls:
                n.detail = "no CRL files configured (notation.crl_files): not checked"
                return
            signed_at = stamped.upper if stamped else envelope.authentic_signing_time
            n.detail = ctx.crls.check(envelope.certificates, ctx.now, signed_at)


def _timestamp_required(envelope: Envelope, policy: NotationPolicy, now: datetime) -> bool:
    """The specification's conditions for verifying the countersignature."""
    if envelope.signing_scheme == SCHEME_AUTHORITY or not policy.tsa:
        return False
    if policy.verify_timestamp == "afterCertExpiry":
        return chain.expired_at(envelope.certificates, now)
    return True


def applicable(ctx: Context) -> tuple[Signer, NotationPolicy]:
    """The rule's signer standing for the trust policy Notation applies to the repository."""
    if ctx.notation is None:
        raise StepFailed(
            "notation.no-trust-policy",
            "no Notation trust policy is configured ([verifiers.signatures.options.notation])",
        )
    policy = ctx.notation.select(ctx.repository)
    if policy is None:
        hosts = ", ".join(ctx.notation.hosts) or "(no registry_hosts)"
        raise StepFailed(
            "notation.no-trust-policy",
            f"no trust policy's registryScopes covers {ctx.repository} on {hosts}, and none "
            "is global ('*')",
        )
    for signer in ctx.rule.signers:
        if signer.notation is not None and signer.notation.name == policy.name:
            return signer, policy
    raise StepFailed(
        "notation.no-trust-policy",
        f"trust policy {policy.name} applies to {ctx.repository}, but rule {ctx.rule.name} "
        "names no signer for it",
    )


def check_target(digest: str, size: int, media_type: str, ctx: Context) -> None:
    if digest != ctx.digest:
        raise StepFailed(
            "notation.digest-mismatch", f"the signature is for {digest}, not {ctx.digest}"
        )
    if ctx.image_size is not None and size != ctx.image_size:
        raise StepFailed(
            "notation.digest-mismatch",
            f"the signature says the manifest is {size} bytes; it is {ctx.image_size}",
        )
    if media_type != ctx.image_media_type:
        raise StepFailed(
            "notation.digest-mismatch",
            f"the signature is for a {media_type}, the image is a {ctx.image_media_type}",
        )


def envelope_layer(manifest: Any, digest: str) -> Descriptor:
    """The first blob of the signature manifest, which must be a JWS or COSE envelope."""
    if not isinstance(manifest, dict):
        raise _envelope_invalid("the signature manifest is not JSON")
    subject = manifest.get("subject")
    if not isinstance(subject, dict) or subject.get("digest") != digest:
        raise _envelope_invalid("the signature manifest's subject is another image")
    layers = manifest.get("layers") or manifest.get("blobs")
    first = layers[0] if isinstance(layers, list) and layers else None
    if not isinstance(first, dict) or first.get("mediaType") not in PARSERS:
        raise _envelope_invalid(
            f"the first blob is not a {MEDIA_JWS} or {MEDIA_COSE} signature envelope"
        )
    size = first.get("size")
    return Descriptor(
        str(first["mediaType"]),
        str(first.get("digest")),
        size if isinstance(size, int) and not isinstance(size, bool) else -1,
    )
