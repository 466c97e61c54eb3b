"""Signatures in exactly cosign's formats, made with ``cryptography`` (there is no cosign binary).

* Key pairs as ``cosign generate-key-pair`` writes them: ``cosign.key`` is the PKCS#8 private key
  encrypted with scrypt + NaCl secretbox inside a JSON document, PEM-armoured as
  ``ENCRYPTED SIGSTORE PRIVATE KEY`` (go-securesystemslib's ``encrypted`` package);
  ``cosign.pub`` is the PKIX public key in PEM. :func:`load_cosign_key` reads a real user's
  ``cosign.key`` the same way, so the tests sign with what they decrypt.
* The simple-signing payload and the ``sha256-<hex>.sig`` signature manifest cosign pushes.
* A private Sigstore deployment (:class:`PrivateSigstore`): a CA standing in for Fulcio, a
  transparency-log key signing entries (SET, and checkpoints for bundles), and the
  ``trusted_root.json`` that describes both.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nacl.secret
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from tests.support.ocihttp import OCI_CONFIG, OCI_EMPTY, OCI_MANIFEST, digest_of, push_blob

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
SCRYPT = {"N": 65536, "r": 8, "p": 1}  # go-securesystemslib's "standard", cosign's default

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


# -- keys ------------------------------------------------------------------------------------


def new_key(kind: str = "p256") -> PrivateKey:
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(kind)


def public_pem(key: PrivateKey) -> bytes:
    """``cosign.pub``."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def encrypt_cosign_key(key: PrivateKey, password: bytes) -> bytes:
    """``cosign.key``: PKCS#8 DER, scrypt-derived key, secretbox, JSON, PEM."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt, nonce = os.urandom(32), os.urandom(24)
    box = nacl.secret.SecretBox(_scrypt(password, salt, SCRYPT))
    ciphertext = box.encrypt(der, nonce).ciphertext
    doc = {
        "kdf": {"name": "scrypt", "params": SCRYPT, "salt": _b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(ciphertext),
    }
    body = base64.encodebytes(json.dumps(doc, separators=(",", ":")).encode()).decode()
    return f"-----BEGIN {PEM_TYPE}-----\n{body}-----END {PEM_TYPE}-----\n".encode()


def decrypt_cosign_secret(document: bytes, password: bytes) -> bytes:
    """go-securesystemslib ``encrypted.Decrypt`` (the JSON document, not PEM)."""
    doc = json.loads(document)
    if doc["kdf"]["name"] != "scrypt" or doc["cipher"]["name"] != "nacl/secretbox":
        raise ValueError("unsupported kdf or cipher")
    params = doc["kdf"]["params"]
    if params not in ({"N": 32768, "r": 8, "p": 1}, SCRYPT, {"N": 131072, "r": 8, "p": 1}):
        raise ValueError("unsupported scrypt parameters")
    key = _scrypt(password, base64.b64decode(doc["kdf"]["salt"]), params)
    box = nacl.secret.SecretBox(key)
    return box.decrypt(
        base64.b64decode(doc["ciphertext"]), base64.b64decode(doc["cipher"]["nonce"])
    )


def load_cosign_key(pem: bytes, password: bytes) -> PrivateKey:
    """Read ``cosign.key`` (``ENCRYPTED SIGSTORE PRIVATE KEY`` or the older ``ENCRYPTED COSIGN
    PRIVATE KEY``) with its password."""
    text = pem.decode()
    for label in (PEM_TYPE, "ENCRYPTED COSIGN PRIVATE KEY"):
        begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
        if begin in text:
            inner = text.split(begin, 1)[1].split(end, 1)[0]
            der = decrypt_cosign_secret(base64.b64decode(inner), password)
            key = serialization.load_der_private_key(der, None)
            assert isinstance(key, PrivateKey)
            return key
    raise ValueError("not an encrypted cosign private key")


def _scrypt(password: bytes, salt: bytes, params: dict[str, int]) -> bytes:
    n, r, p = params["N"], params["r"], params["p"]
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sign(key: PrivateKey, data: bytes) -> bytes:
    """What cosign's signer produces: DER ECDSA (curve hash), Ed25519, RSA PKCS#1 v1.5."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm = hashes.SHA384() if key.curve.name == "secp384r1" else hashes.SHA256()
        return key.sign(data, ec.ECDSA(algorithm))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


# -- cosign's layout -------------------------------------------------------------------------


def payload(docker_reference: str, digest: str) -> bytes:
    """The simple-signing payload, byte for byte as cosign marshals it."""
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        },
        separators=(",", ":"),
    ).encode()


@dataclass(frozen=True)
class SigLayer:
    """One signature: the payload blob and its annotations."""

    payload: bytes
    annotations: dict[str, str]


def key_signature(key: PrivateKey, reference: str, digest: str, **extra: str) -> SigLayer:
    body = payload(reference, digest)
    return SigLayer(body, {"dev.cosignproject.cosign/signature": _b64(sign(key, body)), **extra})


def signature_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def signature_manifest(layers: list[SigLayer]) -> tuple[bytes, bytes]:
    """(config, manifest) as cosign builds them with go-containerregistry."""
    config = json.dumps(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [digest_of(s.payload) for s in layers]},
            "config": {},
        },
        separators=(",", ":"),
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": digest_of(config)},
        "layers": [
            {
                "mediaType": SIMPLESIGNING,
                "size": len(s.payload),
                "digest": digest_of(s.payload),
                "annotations": s.annotations,
            }
            for s in layers
        ],
    }
    return config, json.dumps(manifest, separators=(",", ":")).encode()


def push_signatures(client: httpx.Client, repo: str, digest: str, layers: list[SigLayer]) -> str:
    """Push the payloads, the config and the manifest under ``sha256-<hex>.sig``; returns the
    signature manifest's digest."""
    config, manifest = signature_manifest(layers)
    push_blob(client, repo, config)
    for layer in layers:
        push_blob(client, repo, layer.payload)
    resp = client.put(
        f"/v2/{repo}/manifests/{signature_tag(digest)}",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert resp.status_code == 201, resp.text
    return resp.headers["Docker-Content-Digest"]


def push_bundle(client: httpx.Client, repo: str, digest: str, bundle: bytes) -> str:
    """Attach a Sigstore bundle as an OCI 1.1 referrer (cosign's bundle specification)."""
    empty = b"{}"
    push_blob(client, repo, empty)
    push_blob(client, repo, bundle)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_TYPE,
        "config": {"mediaType": OCI_EMPTY, "digest": digest_of(empty), "size": 2},
        "layers": [{"mediaType": BUNDLE_TYPE, "digest": digest_of(bundle), "size": len(bundle)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": 0},
    }
    body = json.dumps(manifest).encode()
    resp = client.put(
        f"/v2/{repo}/manifests/{digest_of(body)}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert resp.status_code == 201, resp.text
    return digest_of(body)


# -- a private Sigstore deployment -----------------------------------------------------------

ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _utf8_der(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


@dataclass
class PrivateSigstore:
    """A Fulcio stand-in CA and a transparency log, as a private deployment configures them."""

    ca_key: ec.EllipticCurvePrivateKey = field(default_factory=_p256)
    log_key: ec.EllipticCurvePrivateKey = field(default_factory=_p256)
    origin: str = "rekor.private.test - 1"
    ca: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        now = datetime.now(UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "private-fulcio")])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )

    @property
    def log_id(self) -> bytes:
        return hashlib.sha256(_spki(self.log_key)).digest()

    def issue(
        self,
        identity: str,
        issuer: str,
        *,
        not_before: datetime | None = None,
        lifetime: timedelta = timedelta(minutes=10),
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A short-lived code-signing certificate for ``identity`` (email or URI)."""
        key = key or ec.generate_private_key(ec.SECP256R1())
        start = not_before or datetime.now(UTC) - timedelta(minutes=1)
        san: x509.GeneralName = (
            x509.RFC822Name(identity)
            if "@" in identity and "://" not in identity
            else x509.UniformResourceIdentifier(identity)
        )
        ca_ski = self.ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(x509.UnrecognizedExtension(ISSUER_V1, issuer.encode()), False)
            .add_extension(x509.UnrecognizedExtension(ISSUER_V2, _utf8_der(issuer)), False)
            .sign(self.ca_key, hashes.SHA256())
        )
        return cert, key

    def hashedrekord(self, signature: bytes, sha256_hex: str, signer_pem: bytes) -> bytes:
        return json.dumps(
            {
                "apiVersion": "0.0.1",
                "kind": "hashedrekord",
                "spec": {
                    "data": {"hash": {"algorithm": "sha256", "value": sha256_hex}},
                    "signature": {
                        "content": _b64(signature),
                        "publicKey": {"content": _b64(signer_pem)},
                    },
                },
            },
            separators=(",", ":"),
        ).encode()

    def entry_set(self, body: bytes, integrated: int, index: int) -> bytes:
        """The signed entry timestamp over the canonical entry (keys sorted, no spaces)."""
        canonical = json.dumps(
            {
                "body": _b64(body),
                "integratedTime": integrated,
                "logID": self.log_id.hex(),
                "logIndex": index,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        return self.log_key.sign(canonical, ec.ECDSA(hashes.SHA256()))

    def rekor_annotation(
        self,
        signature: bytes,
        signed: bytes,
        signer_pem: bytes,
        *,
        integrated: datetime | None = None,
        index: int = 1,
    ) -> str:
        """``dev.sigstore.cosign/bundle``: the entry and its SET, as cosign stores them."""
        when = int((integrated or datetime.now(UTC)).timestamp())
        body = self.hashedrekord(signature, hashlib.sha256(signed).hexdigest(), signer_pem)
        return json.dumps(
            {
                "SignedEntryTimestamp": _b64(self.entry_set(body, when, index)),
                "Payload": {
                    "body": _b64(body),
                    "integratedTime": when,
                    "logIndex": index,
                    "logID": self.log_id.hex(),
                },
            }
        )

    def keyless_signature(
        self,
        cert: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        reference: str,
        digest: str,
        *,
        integrated: datetime | None = None,
        tlog: bool = True,
    ) -> SigLayer:
        body = payload(reference, digest)
        signature = sign(key, body)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        annotations = {
            "dev.cosignproject.cosign/signature": _b64(signature),
            "dev.sigstore.cosign/certificate": pem.decode(),
            "dev.sigstore.cosign/chain": self.ca.public_bytes(serialization.Encoding.PEM).decode(),
        }
        if tlog:
            annotations["dev.sigstore.cosign/bundle"] = self.rekor_annotation(
                signature, body, pem, integrated=integrated
            )
        return SigLayer(body, annotations)

    def key_bundle(self, key: PrivateKey, digest: str, *, logged: bool = True) -> bytes:
        """A v0.3 bundle: a managed key's message signature over the image manifest (whose
        SHA-256 is the image digest), logged with inclusion proof, checkpoint and SET; or,
        not ``logged``, made offline: no transparency-log entry at all."""
        sha256 = bytes.fromhex(digest.removeprefix("sha256:"))
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        signature = key.sign(sha256, ec.ECDSA(Prehashed(hashes.SHA256())))
        body = self.hashedrekord(signature, sha256.hex(), public_pem(key))
        root = hashlib.sha256(b"\x00" + body).digest()
        note = f"{self.origin}\n1\n{_b64(root)}\n"
        note_sig = self.log_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = f"{note}\n\u2014 {self.origin.split()[0]} {_b64(self.log_id[:4] + note_sig)}\n"
        when = int(datetime.now(UTC).timestamp())
        entry = {
            "logIndex": "0",
            "logId": {"keyId": _b64(self.log_id)},
            "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
            "integratedTime": str(when),
            "inclusionPromise": {"signedEntryTimestamp": _b64(self.entry_set(body, when, 0))},
            "inclusionProof": {
                "logIndex": "0",
                "rootHash": _b64(root),
                "treeSize": "1",
                "hashes": [],
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": _b64(body),
        }
        key_id = hashlib.sha256(_spki(key)).digest()
        return json.dumps(
            {
                "mediaType": BUNDLE_TYPE,
                "verificationMaterial": {
                    "publicKey": {"hint": _b64(key_id)},
                    "tlogEntries": [entry] if logged else [],
                },
                "messageSignature": {
                    "messageDigest": {"algorithm": "SHA2_256", "digest": _b64(sha256)},
                    "signature": _b64(signature),
                },
            }
        ).encode()

    def trusted_root(self) -> dict[str, Any]:
        """``trusted_root.json`` for this deployment."""
        start = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [
                {
                    "baseUrl": "https://rekor.private.test",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {
                        "rawBytes": _b64(_spki(self.log_key)),
                        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                        "validFor": {"start": start},
                    },
                    "logId": {"keyId": _b64(self.log_id)},
                }
            ],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "private", "commonName": "private-fulcio"},
                    "uri": "https://fulcio.private.test",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(self.ca.public_bytes(serialization.Encoding.DER))}
                        ]
                    },
                    "validFor": {"start": start},
                }
            ],
            "ctlogs": [],
            "timestampAuthorities": [],
        }


def _spki(key: Any) -> bytes:
    public = key.public_key() if hasattr(key, "public_key") else key
    return bytes(
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
