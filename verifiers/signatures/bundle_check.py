"""Sigstore bundles verified (``application/vnd.dev.sigstore.bundle.v0.3+json``, 0.1/0.2).

Imported by :func:`verifiers.signatures.bundle.verify_bundle` when a bundle is first checked:
``sigstore`` is a second of imports that a start or a CLI command should not pay.

Certificate bundles are verified by ``sigstore``'s own :class:`sigstore.verify.Verifier`, which
implements the client specification's steps (0) establish time, (1) chain, (2) SCT, (3)
certificate profile, (4) inclusion proof and checkpoint, (5) inclusion promise, (6) times within
the certificate's validity, (7) signature, (8) log entry consistent with the bundle. We differ
from sigstore-python 4.5 in three places, each required by the Sigstore conformance suite:

* a timestamp authority's validity end is inclusive (a trusted root's ``TimeRange`` is closed);
* ``intoto`` 0.0.2 log entries (older DSSE attestations) are supported: their integration time
  counts, and step (8) compares the entry's payload hash, signature and certificate;
* bundles signed with a managed key (``publicKey`` hint, no certificate) are verified against
  the caller's trusted keys, with the same log checks and step (8) for the key; one made
  offline, with no log entry at all (``cosign sign --key ... --tlog-upload=false`` with a
  new bundle format), counts where the rule does not require a transparency log, as the same
  key's ``.sig`` signature without a log entry does.

Which identity signed is matched afterwards by the caller (``keyless.match_identity``), so the
identity policy passed to ``sigstore`` accepts any certificate.

``sigstore`` internals used here (pinned to 4.5.x in pyproject): ``Verifier._establish_time``,
``_verify_signed_timestamp``, ``_verify_common_signing_cert``, ``TransparencyLogEntry._verify``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rfc3161_client import TimeStampResponse, VerifierBuilder
from rfc3161_client import VerificationError as Rfc3161VerificationError
from sigstore import dsse
from sigstore._internal.timestamp import TimestampSource, TimestampVerificationResult
from sigstore._internal.trust import KeyringPurpose
from sigstore.errors import Error as SigstoreError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, TransparencyLogEntry
from sigstore.verify import Verifier
from sigstore_models.bundle.v1 import Bundle as BundleModel
from sigstore_models.common.v1 import HashAlgorithm

from oci import boundedjson
from verifiers.signatures.bundle import INTOTO, Artifact, VerifiedBundle
from verifiers.signatures.errors import StepFailed
from verifiers.signatures.keys import Check, PublicKey
from verifiers.signatures.tlog import CLOCK_SKEW, SignedMaterial, check_hashedrekord
from verifiers.signatures.trust import TrustRoot


def verify_bundle(
    raw: bytes,
    artifact: Artifact,
    trust: TrustRoot,
    keys: Sequence[PublicKey] = (),
    *,
    require_tlog: bool = True,
) -> VerifiedBundle:
    """Verify a bundle over ``artifact``; raises StepFailed (``signature.bundle-invalid``,
    ``signature.untrusted-key`` for a key bundle no trusted key verifies, or
    ``signature.tlog-missing`` for a key bundle with no log entry where ``require_tlog``).
    A log entry that is there is always checked, required or not."""
    try:
        model = BundleModel.from_json(raw)
    except Exception as exc:
        raise _invalid(f"the bundle does not parse: {_first_line(exc)}") from exc
    try:
        if model.verification_material.public_key is not None:
            return _verify_with_key(model, artifact, trust, keys, require_tlog)
        bundle = Bundle(model)
        verifier = _SigstoreVerifier(trusted_root=trust.sigstore)
        if bundle._dsse_envelope is None:
            hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=artifact.sha256)
            verifier.verify_artifact(hashed, bundle, _AnyIdentity())
            return VerifiedBundle(bundle.signing_certificate, None, None)
        kind = bundle.log_entry._inner.kind_version
        if (kind.kind, kind.version) == ("intoto", "0.0.2"):
            payload_type, payload = verifier.verify_intoto(bundle)
        else:
            payload_type, payload = verifier.verify_dsse(bundle, _AnyIdentity())
    except SigstoreError as exc:
        raise _invalid(_first_line(exc)) from exc
    except ValueError as exc:  # pydantic and cryptography parse errors inside sigstore
        raise _invalid(_first_line(exc)) from exc
    statement = _statement(payload_type, payload, artifact)
    return VerifiedBundle(bundle.signing_certificate, None, statement)


def _invalid(detail: str) -> StepFailed:
    return StepFailed("signature.bundle-invalid", detail)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0][:300]


class _AnyIdentity:
    """sigstore ``VerificationPolicy`` that accepts every certificate: identities are matched
    against the rule's signers after verification, to tell which signer it was."""

    def verify(self, cert: x509.Certificate) -> None:
        return None


def _statement(payload_type: str, payload: bytes, artifact: Artifact) -> dict[str, Any]:
    if payload_type != INTOTO:
        raise _invalid(f"the DSSE payload is {payload_type!r}, not an in-toto statement")
    try:
        statement = boundedjson.loads(payload)
        subjects = statement.get("subject") or []
        digests = {str((s.get("digest") or {}).get("sha256", "")).lower() for s in subjects}
    except (ValueError, AttributeError, TypeError) as exc:
        raise _invalid(f"the in-toto statement is malformed ({exc})") from exc
    if artifact.sha256.hex() not in digests:
        raise StepFailed(
            "signature.payload-digest-mismatch",
            f"the statement's subjects do not include sha256:{artifact.sha256.hex()}",
        )
    return cast(dict[str, Any], statement)


class _SigstoreVerifier(Verifier):
    """``sigstore.verify.Verifier`` with the deviations listed in the module docstring."""

    def _verify_signed_timestamp(
        self, timestamp_response: TimeStampResponse, message: bytes
    ) -> TimestampVerificationResult | None:
        for authority in self._trusted_root.get_timestamp_authorities():
            certificates = authority.certificates(allow_expired=True)
            if len(certificates) < 2:
                continue
            builder = (
                VerifierBuilder()
                .tsa_certificate(certificates[0])
                .add_root_certificate(certificates[-1])
            )
            for certificate in certificates[1:-1]:
                builder = builder.add_intermediate_certificate(certificate)
            try:
                builder.build().verify_message(timestamp_response, message)
            except Rfc3161VerificationError:
                continue
            generated = timestamp_response.tst_info.gen_time
            end = authority.validity_period_end
            if authority.validity_period_start <= generated and (end is None or generated <= end):
                return TimestampVerificationResult(
                    source=TimestampSource.TIMESTAMP_AUTHORITY, time=generated
                )
        return None

    def _establish_time(self, bundle: Bundle) -> list[TimestampVerificationResult]:
        entry = bundle.log_entry._inner
        kind = entry.kind_version
        if (kind.kind, kind.version) != ("intoto", "0.0.2"):
            return super()._establish_time(bundle)
        verified: list[TimestampVerificationResult] = []
        if bundle.verification_material.timestamp_verification_data:
            verified.extend(self._verify_timestamp_authority(bundle))
        if entry.integrated_time and entry.inclusion_promise:
            verified.append(
                TimestampVerificationResult(
                    source=TimestampSource.TRANSPARENCY_SERVICE,
                    time=datetime.fromtimestamp(entry.integrated_time, tz=UTC),
                )
            )
        return verified

    def verify_intoto(self, bundle: Bundle) -> tuple[str, bytes]:
        """Steps (0)-(6) as sigstore does them, (7) the DSSE signature, (8) the entry."""
        self._verify_common_signing_cert(bundle, _AnyIdentity())
        envelope = bundle._dsse_envelope
        assert envelope is not None
        key = cast(ec.EllipticCurvePublicKey, bundle.signing_certificate.public_key())
        dsse._verify(key, envelope)
        _check_intoto_entry(bundle, envelope)
        return envelope._inner.payload_type, envelope._inner.payload


def _check_intoto_entry(bundle: Bundle, envelope: dsse.Envelope) -> None:
    """(8) for ``intoto`` 0.0.2: the entry's payload hash, signatures and certificate are the
    bundle's. (Its envelope hash covers uncanonicalised JSON and cannot be recomputed.)"""
    try:
        body = boundedjson.loads(bundle.log_entry._inner.canonicalized_body)
        content = body["spec"]["content"]
        recorded_hash = content["payloadHash"]
        recorded = content["envelope"]["signatures"]
        sigs = [base64.b64decode(base64.b64decode(s["sig"])) for s in recorded]
        certs = [base64.b64decode(s["publicKey"]) for s in recorded]
    except (ValueError, KeyError, TypeError) as exc:
        raise _invalid(f"the intoto log entry is malformed ({exc})") from exc
    payload = envelope._inner.payload
    if recorded_hash.get("algorithm") != "sha256" or (
        recorded_hash.get("value") != hashlib.sha256(payload).hexdigest()
    ):
        raise _invalid("the log entry records the hash of a different payload")
    if sigs != [s.sig for s in envelope._inner.signatures]:
        raise _invalid("the log entry records different signatures")
    pem = bundle.signing_certificate.public_bytes(serialization.Encoding.PEM)
    if any(
        x509.load_pem_x509_certificate(c).public_bytes(serialization.Encoding.PEM) != pem
        for c in certs
    ):
        raise _invalid("the log entry records a different certificate")


def _verify_with_key(
    model: BundleModel,
    artifact: Artifact,
    trust: TrustRoot,
    keys: Sequence[PublicKey],
    require_tlog: bool,
) -> VerifiedBundle:
    """A managed-key message-signature bundle: (7) the signature with a trusted key, (4)-(5)
    the log entry's inclusion proof, checkpoint and promise, its time, and (8) the entry records
    this signature, digest and key. Without a log entry (an offline signature) only (7), and
    only where the rule does not require the log."""
    message = model.message_signature
    if model.dsse_envelope is not None or message is None:
        raise _invalid("only message signatures are supported for bundles signed with a key")
    if message.message_digest is not None and message.message_digest.digest != artifact.sha256:
        raise _invalid("the bundle's message digest is not the artifact's")
    signature = message.signature
    key = _key_for(keys, lambda k: k.check_prehashed(signature, artifact.sha256))
    entries = model.verification_material.tlog_entries or []
    if not entries:
        if require_tlog:
            raise StepFailed(
                "signature.tlog-missing",
                "the bundle has no transparency-log entry, and the rule requires one",
            )
        return VerifiedBundle(None, key, None, logged=False)
    if len(entries) != 1:
        raise _invalid(f"expected exactly one transparency-log entry, found {len(entries)}")
    try:
        entry = TransparencyLogEntry(entries[0])
        entry._verify(trust.sigstore.rekor_keyring(KeyringPurpose.VERIFY))
    except (SigstoreError, ValueError) as exc:
        raise _invalid(f"invalid log entry: {_first_line(exc)}") from exc
    integrated = entries[0].integrated_time
    if integrated and datetime.fromtimestamp(integrated, UTC) > datetime.now(UTC) + CLOCK_SKEW:
        raise _invalid("the log entry's integration time is in the future")
    kind = entries[0].kind_version
    if (kind.kind, kind.version) != ("hashedrekord", "0.0.1"):
        raise _invalid(f"unsupported log entry {kind.kind} {kind.version} for a key bundle")
    try:
        check_hashedrekord(
            entries[0].canonicalized_body, SignedMaterial(signature, artifact.sha256, key)
        )
    except StepFailed as exc:
        raise _invalid(exc.detail) from exc
    return VerifiedBundle(None, key, None)


def _key_for(keys: Sequence[PublicKey], check: Callable[[PublicKey], Check]) -> PublicKey:
    for key in keys:
        if check(key) is Check.VALID:
            return key
    if not keys:
        raise StepFailed(
            "signature.untrusted-key", "the bundle is signed with a key, and no key is trusted"
        )
    raise StepFailed("signature.untrusted-key", "no trusted key verifies the bundle's signature")
