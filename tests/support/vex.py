"""OpenVEX documents, and VEX attestations in exactly cosign's formats, made with
``cryptography`` (there is no cosign binary).

``cosign attest --type openvex --predicate vex.json --key cosign.key IMAGE`` signs an in-toto
statement (predicate type ``https://openvex.dev/ns``, the image as subject) in a DSSE envelope;
with its new bundle format (the default from cosign 3) the envelope goes into a Sigstore bundle
v0.3 pushed as an OCI 1.1 referrer of the image, annotated with the predicate type.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx

from tests.support.cosign import BUNDLE_TYPE, PrivateKey, SigLayer, _spki, sign, signature_manifest
from tests.support.ocihttp import OCI_EMPTY, OCI_MANIFEST, digest_of, push_blob

PREDICATE = "https://openvex.dev/ns"
INTOTO = "application/vnd.in-toto+json"
DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"


def statement(
    vulnerability: str,
    products: list[Any],
    status: str = "not_affected",
    **extra: Any,
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "vulnerability": {"name": vulnerability},
        "products": [{"@id": p} if isinstance(p, str) else p for p in products],
        "status": status,
        **extra,
    }
    if status == "not_affected" and "justification" not in extra:
        found["justification"] = "vulnerable_code_not_in_execute_path"
    return found


def document(
    *statements: dict[str, Any],
    author: str = "Security Team <security@example.com>",
    timestamp: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    return {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/"
        + hashlib.sha256(json.dumps(statements).encode()).hexdigest()[:12],
        "author": author,
        "timestamp": timestamp,
        "version": 1,
        "statements": list(statements),
    }


def in_toto(predicate: dict[str, Any], digest: str, name: str) -> bytes:
    """The statement cosign signs (``_type`` v1, as cosign 3 writes it)."""
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}}],
            "predicateType": PREDICATE,
            "predicate": predicate,
        },
        separators=(",", ":"),
    ).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def envelope(key: PrivateKey, payload: bytes) -> dict[str, Any]:
    signature = sign(key, pae(INTOTO, payload))
    return {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": INTOTO,
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
    }


def bundle(key: PrivateKey, payload: bytes) -> bytes:
    """A v0.3 bundle of a key-signed DSSE envelope made offline (no log entry)."""
    key_id = hashlib.sha256(_spki(key)).digest()
    return json.dumps(
        {
            "mediaType": BUNDLE_TYPE,
            "verificationMaterial": {
                "publicKey": {"hint": base64.b64encode(key_id).decode()},
                "tlogEntries": [],
            },
            "dsseEnvelope": envelope(key, payload),
        }
    ).encode()


def referrer_manifest(content: bytes, subject: str, media_type: str = BUNDLE_TYPE) -> bytes:
    empty = b"{}"
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": media_type,
            "config": {"mediaType": OCI_EMPTY, "digest": digest_of(empty), "size": 2},
            "layers": [
                {"mediaType": media_type, "digest": digest_of(content), "size": len(content)}
            ],
            "annotations": {
                "dev.sigstore.bundle.content": "dsse-envelope",
                "dev.sigstore.bundle.predicateType": PREDICATE,
            },
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 0},
        }
    ).encode()


def push_referrer(
    client: httpx.Client, repo: str, subject: str, content: bytes, media_type: str = BUNDLE_TYPE
) -> str:
    """Push a VEX attestation (or an unsigned document) as a referrer of ``subject``."""
    push_blob(client, repo, b"{}")
    push_blob(client, repo, content)
    body = referrer_manifest(content, subject, media_type)
    resp = client.put(
        f"/v2/{repo}/manifests/{digest_of(body)}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert resp.status_code == 201, resp.text
    return digest_of(body)


def push_attestation_tag(
    client: httpx.Client, repo: str, subject: str, key: PrivateKey, payload: bytes
) -> str:
    """cosign's attestation layout before bundles: the DSSE envelope as a layer of the
    ``sha256-<hex>.att`` manifest, annotated with its predicate type."""
    content = json.dumps(envelope(key, payload)).encode()
    layer = SigLayer(content, {"predicateType": PREDICATE})
    config, manifest = signature_manifest([layer])
    doc = json.loads(manifest)
    doc["layers"][0]["mediaType"] = DSSE_TYPE
    body = json.dumps(doc, separators=(",", ":")).encode()
    push_blob(client, repo, config)
    push_blob(client, repo, content)
    tag = subject.replace(":", "-") + ".att"
    resp = client.put(
        f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert resp.status_code == 201, resp.text
    return digest_of(body)
