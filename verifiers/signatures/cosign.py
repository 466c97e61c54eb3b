"""Cosign's signature layout: the ``sha256-<hex>.sig`` manifest and its simple-signing layers.

Each layer of type ``application/vnd.dev.cosign.simplesigning.v1+json`` is one signature: the
layer blob is the signed payload, the ``dev.cosignproject.cosign/signature`` annotation the
base64 signature, and for keyless signing ``dev.sigstore.cosign/certificate`` (+ ``/chain``)
the Fulcio certificate and ``dev.sigstore.cosign/bundle`` the transparency-log proof.

Steps, in the order cosign specifies them (the payload is parsed only once authenticated):

1. the payload blob is within the size limit and matches its layer digest;
2. the signature is valid base64;
3. it verifies over the exact payload bytes with a trusted key — or, keyless, with the
   certificate's key;
4. the transparency log proves it (mandatory unless the rule says otherwise);
5. keyless only: the certificate was valid then, chains to the trusted root, names a trusted
   identity (see :mod:`keyless`);
6. the payload is simple-signing JSON of the cosign type;
7. ``critical.image.docker-manifest-digest`` is this image's digest;
8. ``critical.identity.docker-reference`` names this repository (or a pattern the rule allows);
9. ... on this registry: its host is one of the gatekeeper's public names (``public_url``,
   ``public_aliases``, else the listen address and loopback names), so a signature made for
   the same repository path on another registry does not count here.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from oci import boundedjson
from oci.boundedjson import JSONTooDeep
from verifiers.base import Descriptor
from verifiers.registry_names import split_reference
from verifiers.signatures import keyless
from verifiers.signatures.context import Context, read_limited
from verifiers.signatures.errors import StepFailed
from verifiers.signatures.keys import Check, PublicKey
from verifiers.signatures.policy import Signer
from verifiers.signatures.steps import Checked, Trail, run_trail
from verifiers.signatures.tlog import LogProof, SignedMaterial, verify_rekor_bundle

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
CERTIFICATE = "dev.sigstore.cosign/certificate"
CHAIN = "dev.sigstore.cosign/chain"
BUNDLE = "dev.sigstore.cosign/bundle"
COSIGN_TYPE = "cosign container image signature"


def layers(manifest: dict[str, Any], where: str, limit: int) -> list[CosignSignature]:
    """The simple-signing layers of a signature manifest, at most ``limit``."""
    found: list[CosignSignature] = []
    values = manifest.get("layers")
    for index, layer in enumerate(values if isinstance(values, list) else []):
        if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLESIGNING:
            continue
        annotations = layer.get("annotations")
        found.append(
            CosignSignature(
                source=f"{where}, layer {index + 1}",
                layer=Descriptor(
                    SIMPLESIGNING, str(layer.get("digest")), int(layer.get("size") or 0)
                ),
                annotations={str(k): str(v) for k, v in (annotations or {}).items()}
                if isinstance(annotations, dict)
                else {},
            )
        )
        if len(found) >= limit:
            break
    return found


@dataclass(frozen=True)
class CosignSignature:
    """One simple-signing layer."""

    source: str
    layer: Descriptor
    annotations: dict[str, str] = field(default_factory=dict)

    async def check(self, ctx: Context) -> Checked:
        return await run_trail(self.source, lambda trail: self._check(ctx, trail))

    async def _check(self, ctx: Context, trail: Trail) -> str:
        with trail.step("the payload matches its layer digest") as note:
            payload = await read_limited(ctx, self.layer, "payload")
            note.detail = f"{len(payload)} bytes, {self.layer.digest}"
        with trail.step("the signature is valid base64") as note:
            signature = _decode_signature(self.annotations.get(SIGNATURE))
            note.detail = f"{len(signature)} bytes"
        certificate = self.annotations.get(CERTIFICATE)
        if certificate and ctx.rule.identities:
            return self._keyless(ctx, trail, payload, signature, certificate)
        with trail.step("the signature verifies with a trusted key") as note:
            signer = _by_key(ctx.rule.keys, signature, payload)
            note.detail = f"{signer.name} ({signer.describe()})"
        assert signer.key is not None
        self._tlog(ctx, trail, SignedMaterial(signature, _sha256(payload), signer.key))
        self._payload(ctx, trail, payload)
        return signer.name

    def _keyless(
        self, ctx: Context, trail: Trail, payload: bytes, signature: bytes, pem: str
    ) -> str:
        with trail.step("the certificate parses") as note:
            cert, chain = _certificates(pem, self.annotations.get(CHAIN, ""))
            note.detail = keyless.identity_of(cert).describe()
        with trail.step("the signature verifies with the certificate's key"):
            key = PublicKey.from_key(cert.public_key())
            _require_valid(key.check(signature, payload), "the certificate's key")
        proof = self._tlog(ctx, trail, SignedMaterial(signature, _sha256(payload), key, cert))
        moment = proof.integrated_time if proof else ctx.now
        with trail.step("the certificate was valid at signing time") as note:
            keyless.check_validity(cert, moment)
            note.detail = f"signed {moment:%Y-%m-%dT%H:%M:%SZ}"
        with trail.step("the certificate chains to the trusted root") as note:
            note.detail = keyless.check_chain(cert, chain, ctx.trust, moment)
        with trail.step("the certificate names a trusted signer") as note:
            signer = keyless.match_identity(keyless.identity_of(cert), ctx.rule.identities)
            note.detail = signer.name
        self._payload(ctx, trail, payload)
        return signer.name

    def _tlog(self, ctx: Context, trail: Trail, material: SignedMaterial) -> LogProof | None:
        with trail.step("the transparency log proves the signature") as note:
            annotation = self.annotations.get(BUNDLE)
            if not annotation:
                if ctx.rule.require_tlog:
                    raise StepFailed(
                        "signature.tlog-missing",
                        f"no transparency-log entry, and rule {ctx.rule.name} requires one",
                    )
                note.detail = f"no entry; rule {ctx.rule.name} does not require one"
                return None
            proof = verify_rekor_bundle(annotation, ctx.trust, material, ctx.now)
            note.detail = proof.describe()
            return proof

    def _payload(self, ctx: Context, trail: Trail, payload: bytes) -> None:
        with trail.step("the payload is a simple-signing JSON document"):
            critical = _critical(payload)
        with trail.step("the payload is a cosign container image signature"):
            kind = critical.get("type")
            if kind != COSIGN_TYPE:
                raise StepFailed("signature.wrong-type", f"critical.type is {kind!r}")
        with trail.step("the payload names this image's digest"):
            image = critical.get("image")
            named = image.get("docker-manifest-digest") if isinstance(image, dict) else None
            if named != ctx.digest:
                raise StepFailed(
                    "signature.payload-digest-mismatch",
                    f"the payload signs {named}, not {ctx.digest}",
                )
        identity = critical.get("identity")
        reference = identity.get("docker-reference") if isinstance(identity, dict) else None
        with trail.step("the payload names this repository") as note:
            allowed_by = _allowed_by(reference, ctx)
            note.detail = _check_repository(reference, ctx, allowed_by)
        with trail.step("the payload names this registry") as note:
            note.detail = _check_registry(str(reference), ctx, allowed_by)


def _decode_signature(value: str | None) -> bytes:
    if not value:
        raise StepFailed("signature.malformed", f"the layer has no {SIGNATURE} annotation")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise StepFailed("signature.malformed", f"the signature is not base64 ({exc})") from exc
    if not decoded:
        raise StepFailed("signature.malformed", "the signature is empty")
    return decoded


def _require_valid(result: Check, whose: str) -> None:
    if result is Check.MALFORMED:
        raise StepFailed(
            "signature.malformed",
            f"the signature is not well-formed for {whose} (truncated or corrupt DER?)",
        )
    if result is Check.INVALID:
        raise StepFailed(
            "signature.invalid",
            f"the signature does not verify with {whose}: the payload was changed after "
            "signing, or the signature is for other bytes",
        )


def _by_key(signers: list[Signer], signature: bytes, payload: bytes) -> Signer:
    results = []
    for signer in signers:
        assert signer.key is not None
        result = signer.key.check(signature, payload)
        if result is Check.VALID:
            return signer
        results.append(result)
    if not signers:
        raise StepFailed(
            "signature.untrusted-key",
            "the rule trusts no key, and the signature has no certificate",
        )
    if all(r is Check.MALFORMED for r in results):
        raise StepFailed(
            "signature.malformed",
            "the signature is not well-formed for any trusted key (truncated or corrupt DER?)",
        )
    raise StepFailed(
        "signature.untrusted-key",
        "no trusted key verifies the signature: it was made by another key, or the payload "
        "was changed after signing",
    )


def _certificates(pem: str, chain_pem: str) -> tuple[x509.Certificate, list[x509.Certificate]]:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
        chain = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem.strip() else []
    except ValueError as exc:
        raise StepFailed(
            "signature.certificate-invalid", f"the certificate annotation is not PEM ({exc})"
        ) from exc
    return cert, chain


def _critical(payload: bytes) -> dict[str, Any]:
    try:
        doc = boundedjson.loads(payload)
    except JSONTooDeep as exc:
        raise StepFailed("signature.payload-not-json", f"the payload is {exc}") from exc
    except ValueError as exc:
        raise StepFailed(
            "signature.payload-not-json", f"the payload is not JSON ({exc.__class__.__name__})"
        ) from exc
    critical = doc.get("critical") if isinstance(doc, dict) else None
    if not isinstance(critical, dict):
        raise StepFailed("signature.payload-invalid", "the payload has no critical section")
    return critical


def _allowed_by(reference: Any, ctx: Context) -> str | None:
    """The rule's ``references`` pattern the whole reference matches (promoted images: their
    signatures name the registry and repository they were signed in), if any."""
    if not isinstance(reference, str) or not reference:
        raise StepFailed("signature.reference-mismatch", "the payload names no docker-reference")
    return next((p for p in ctx.rule.references if fnmatch.fnmatchcase(reference, p)), None)


def _check_repository(reference: Any, ctx: Context, allowed_by: str | None) -> str:
    if allowed_by is not None:
        return f"{reference} (allowed by {allowed_by})"
    if split_reference(reference).repository == ctx.repository:
        return str(reference)
    raise StepFailed(
        "signature.reference-mismatch",
        f"the signature was made for {reference}, not for repository {ctx.repository}",
    )


def _check_registry(reference: str, ctx: Context, allowed_by: str | None) -> str:
    if allowed_by is not None:
        return f"{reference} (allowed by {allowed_by})"
    parts = split_reference(reference)
    if ctx.registry.names(parts.host):
        return parts.host
    named = parts.host if parts.explicit_host else f"no registry host, which means {parts.host}"
    raise StepFailed(
        "signature.registry-mismatch",
        f"the signature was made for {reference} ({named}), not for this registry "
        f"({ctx.registry.describe()}; other names it is reached by belong in public_aliases)",
    )


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
