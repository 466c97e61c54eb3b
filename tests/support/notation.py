"""Notary Project signatures made per the specification with ``cryptography`` and ``cbor2``
(there is no notation binary here): a CA hierarchy and signing certificates, JWS and COSE
envelopes, the signature manifest Notation pushes as a referrer, the trust store directory and
CRLs.

Every envelope field can be bent by a test (another digest, an expiry in the past, an extra
critical attribute) and is then signed properly, so only the bent part is wrong.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.ocihttp import OCI_EMPTY, OCI_MANIFEST, digest_of, push_blob

ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
JWS = "application/jose+json"
COSE = "application/cose"
PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
X509 = "notary.x509"
AUTHORITY = "notary.x509.signingAuthority"
_COSE_ALG = {"ES256": -7, "ES384": -35, "ES512": -36, "PS256": -37, "PS384": -38, "PS512": -39}

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _name(**attrs: str) -> x509.Name:
    oids = {
        "C": NameOID.COUNTRY_NAME,
        "ST": NameOID.STATE_OR_PROVINCE_NAME,
        "L": NameOID.LOCALITY_NAME,
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "CN": NameOID.COMMON_NAME,
    }
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in attrs.items()])


@dataclass
class Pki:
    """A root CA and an intermediate, issuing code-signing certificates."""

    name: str = "Test Root"
    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    ca_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    root: x509.Certificate = field(init=False)
    intermediate: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        now = datetime.now(UTC)
        root_name = _name(C="US", ST="WA", O="Notary Test", CN=self.name)
        self.root = _ca_cert(root_name, root_name, self.root_key, self.root_key, now, None)
        ca_name = _name(C="US", ST="WA", O="Notary Test", CN=f"{self.name} CA")
        self.intermediate = _ca_cert(ca_name, root_name, self.ca_key, self.root_key, now, 0)

    def issue(
        self,
        subject: x509.Name | None = None,
        *,
        key: SigningKey | None = None,
        not_before: datetime | None = None,
        lifetime: timedelta = timedelta(days=30),
        crl_url: str | None = None,
    ) -> tuple[x509.Certificate, SigningKey]:
        """A code-signing certificate, by default ``C=US, ST=WA, O=acme, CN=release``."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        start = not_before or datetime.now(UTC) - timedelta(hours=1)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject or _name(C="US", ST="WA", O="acme", CN="release"))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
        )
        if crl_url is not None:
            point = x509.DistributionPoint(
                [x509.UniformResourceIdentifier(crl_url)], None, None, None
            )
            builder = builder.add_extension(x509.CRLDistributionPoints([point]), False)
        return builder.sign(self.ca_key, hashes.SHA384()), key

    def chain(self, leaf: x509.Certificate) -> list[x509.Certificate]:
        return [leaf, self.intermediate, self.root]

    def crl(self, revoked: list[x509.Certificate], *, next_update: timedelta) -> bytes:
        """A CRL from the intermediate (the signing certificates' issuer), DER."""
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.intermediate.subject)
            .last_update(now - timedelta(days=2))
            .next_update(now + next_update)
        )
        for cert in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(now - timedelta(days=1))
                .build()
            )
        return builder.sign(self.ca_key, hashes.SHA384()).public_bytes(serialization.Encoding.DER)

    def write_store(self, root: Path, kind: str, name: str) -> None:
        """``<root>/x509/<kind>/<name>/root.pem``, as ``notation cert add`` lays it out."""
        directory = root / "x509" / kind / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "root.pem").write_bytes(self.root.public_bytes(serialization.Encoding.PEM))


def _ca_cert(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    now: datetime,
    path_length: int | None,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=10))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(signer, hashes.SHA384())
    )


# -- envelopes -------------------------------------------------------------------------------


def payload(digest: str, size: int, media_type: str = OCI_MANIFEST) -> bytes:
    """The signature payload: the target artifact's descriptor."""
    target = {"mediaType": media_type, "digest": digest, "size": size}
    return json.dumps({"targetArtifact": target}, separators=(",", ":")).encode()


def algorithm_of(key: SigningKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return {2048: "PS256", 3072: "PS384", 4096: "PS512"}[key.key_size]
    return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[key.curve.name]


def raw_sign(key: SigningKey, data: bytes, algorithm: str) -> bytes:
    """JWS/COSE signature bytes: RSASSA-PSS (salt = hash length), or ECDSA as r||s."""
    digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[algorithm[2:]]
    if isinstance(key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        return key.sign(data, pss, digest)
    r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


@dataclass
class Attributes:
    """The signed attributes; a test bends any of them."""

    scheme: str = X509
    signing_time: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    expiry: datetime | None = None
    extended: dict[str, Any] = field(default_factory=dict)
    critical_extended: list[str] = field(default_factory=list)

    def headers(self) -> tuple[dict[str, Any], list[str]]:
        time_key = (
            "io.cncf.notary.signingTime"
            if self.scheme == X509
            else "io.cncf.notary.authenticSigningTime"
        )
        values: dict[str, Any] = {
            "io.cncf.notary.signingScheme": self.scheme,
            time_key: self.signing_time,
        }
        critical = ["io.cncf.notary.signingScheme"]
        if self.scheme == AUTHORITY:
            critical.append(time_key)
        if self.expiry is not None:
            values["io.cncf.notary.expiry"] = self.expiry
            critical.append("io.cncf.notary.expiry")
        values.update(self.extended)
        return values, critical + self.critical_extended


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _rfc3339(value: Any) -> Any:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(value, datetime) else value


def jws(
    body: bytes,
    key: SigningKey,
    chain: list[x509.Certificate],
    attributes: Attributes | None = None,
) -> bytes:
    """A JWS envelope (flattened JSON serialization), as notation-core-go writes it."""
    values, critical = (attributes or Attributes()).headers()
    algorithm = algorithm_of(key)
    protected = {
        "alg": algorithm,
        "crit": critical,
        "cty": PAYLOAD_TYPE,
        **{k: _rfc3339(v) for k, v in values.items()},
    }
    protected_b64 = _b64url(json.dumps(protected, separators=(",", ":")).encode())
    payload_b64 = _b64url(body)
    signature = raw_sign(key, f"{protected_b64}.{payload_b64}".encode(), algorithm)
    header = {
        "x5c": [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain
        ],
        "io.cncf.notary.signingAgent": "gatekeeper-tests/1.0",
    }
    envelope = {
        "payload": payload_b64,
        "protected": protected_b64,
        "header": header,
        "signature": _b64url(signature),
    }
    return json.dumps(envelope).encode()


def cose(
    body: bytes,
    key: SigningKey,
    chain: list[x509.Certificate],
    attributes: Attributes | None = None,
) -> bytes:
    """A tagged COSE_Sign1 envelope, as notation-core-go writes it (times as tag-1 dates)."""
    values, critical = (attributes or Attributes()).headers()
    algorithm = algorithm_of(key)
    protected_map: dict[Any, Any] = {1: _COSE_ALG[algorithm], 2: critical, 3: PAYLOAD_TYPE}
    for name, value in values.items():
        protected_map[name] = (
            cbor2.CBORTag(1, int(value.timestamp())) if isinstance(value, datetime) else value
        )
    protected = cbor2.dumps(protected_map)
    signature = raw_sign(key, cbor2.dumps(["Signature1", protected, b"", body]), algorithm)
    unprotected = {
        33: [c.public_bytes(serialization.Encoding.DER) for c in chain],
        "io.cncf.notary.signingAgent": "gatekeeper-tests/1.0",
    }
    return cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, body, signature]))


def tamper_payload(envelope: bytes, media_type: str, body: bytes) -> bytes:
    """The same envelope and signature over another payload."""
    if media_type == JWS:
        doc = json.loads(envelope)
        doc["payload"] = _b64url(body)
        return json.dumps(doc).encode()
    protected, unprotected, _, signature = cbor2.loads(envelope).value
    return cbor2.dumps(cbor2.CBORTag(18, [protected, dict(unprotected), body, signature]))


# -- the signature manifest ------------------------------------------------------------------


def signature_manifest(digest: str, size: int, envelope: bytes, media_type: str) -> bytes:
    """What ``notation sign`` pushes: an OCI image manifest with the envelope as its only
    layer, the empty config, artifact type ``application/vnd.cncf.notary.signature``."""
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": OCI_EMPTY, "digest": digest_of(b"{}"), "size": 2},
        "layers": [{"mediaType": media_type, "digest": digest_of(envelope), "size": len(envelope)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": size},
        "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": "[]"},
    }
    return json.dumps(manifest).encode()


def push_signature(
    client: httpx.Client, repo: str, digest: str, size: int, envelope: bytes, media_type: str
) -> str:
    """Push the envelope, the empty config and the manifest by digest, as notation does."""
    push_blob(client, repo, b"{}")
    push_blob(client, repo, envelope)
    body = signature_manifest(digest, size, envelope, media_type)
    resp = client.put(
        f"/v2/{repo}/manifests/{digest_of(body)}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert resp.status_code == 201, resp.text
    return digest_of(body)
