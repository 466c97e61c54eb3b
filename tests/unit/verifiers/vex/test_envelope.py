"""A VEX referrer's signature, checked before a word of it is believed: cosign's DSSE in-toto
attestation (in a Sigstore bundle or bare), signed by a key the policy trusts for VEX, about
the image it is attached to, in this repository."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.cosign import new_key, public_pem
from tests.support.vex import bundle, document, envelope, in_toto, statement
from verifiers.signatures.keys import PublicKey
from verifiers.vex.envelope import Rejected, verify

IMAGE = "sha256:" + "c" * 64
REPO = "team/app"
DOC = document(statement("CVE-2023-49083", [IMAGE]))


def trusted(*keys: object) -> list[PublicKey]:
    return [PublicKey.from_pem(public_pem(k)) for k in keys]  # type: ignore[arg-type]


def check(blob: bytes, keys: list[PublicKey], subject: str = IMAGE, repo: str = REPO) -> object:
    return verify(blob, subject=subject, repository=repo, keys=keys, policy="prod")


def rule_of(blob: bytes, keys: list[PublicKey], **kw: str) -> str:
    with pytest.raises(Rejected) as caught:
        check(blob, keys, **kw)
    return caught.value.rule


def test_a_bundle_signed_by_a_trusted_key_is_believed() -> None:
    key = new_key()
    accepted = verify(
        bundle(key, in_toto(DOC, IMAGE, f"localhost:5000/{REPO}")),
        subject=IMAGE,
        repository=REPO,
        keys=trusted(new_key(), key),
        policy="prod",
    )
    assert accepted.signer.key_id == trusted(key)[0].key_id
    assert accepted.document.statements[0].vulnerability.name == "CVE-2023-49083"
    assert json.loads(accepted.text)["author"] == DOC["author"]


@pytest.mark.parametrize("kind", ["p256", "p384", "ed25519", "rsa"])
def test_a_bare_envelope_of_any_cosign_key_type_is_believed(kind: str) -> None:
    key = new_key(kind)
    blob = json.dumps(envelope(key, in_toto(DOC, IMAGE, REPO))).encode()
    check(blob, trusted(key))


def test_another_key_is_untrusted_and_no_key_trusts_nothing() -> None:
    blob = bundle(new_key(), in_toto(DOC, IMAGE, REPO))
    assert rule_of(blob, trusted(new_key())) == "vex.untrusted-key"
    assert rule_of(blob, []) == "vex.untrusted-key"


def test_an_unsigned_document_is_not_believed() -> None:
    assert rule_of(json.dumps(DOC).encode(), trusted(new_key())) == "vex.unsigned"
    key = new_key()
    unsigned = {**envelope(key, in_toto(DOC, IMAGE, REPO)), "signatures": []}
    assert rule_of(json.dumps(unsigned).encode(), trusted(key)) == "vex.unsigned"


def test_a_payload_changed_after_signing_is_untrusted() -> None:
    key = new_key()
    signed = envelope(key, in_toto(DOC, IMAGE, REPO))
    other = in_toto(document(statement("CVE-2099-9", [IMAGE])), IMAGE, REPO)
    forged = {**signed, "payload": base64.b64encode(other).decode()}
    assert rule_of(json.dumps(forged).encode(), trusted(key)) == "vex.untrusted-key"


def test_a_statement_about_another_image_or_repository_is_refused() -> None:
    key = new_key()
    blob = bundle(key, in_toto(DOC, IMAGE, f"localhost:5000/{REPO}"))
    assert rule_of(blob, trusted(key), subject="sha256:" + "d" * 64) == "vex.wrong-subject"
    assert rule_of(blob, trusted(key), repo="other/app") == "vex.wrong-subject"


def test_a_signed_but_invalid_document_is_malformed() -> None:
    key = new_key()
    bad = {**DOC, "statements": [{**DOC["statements"][0], "status": "maybe"}]}
    assert rule_of(bundle(key, in_toto(bad, IMAGE, REPO)), trusted(key)) == "vex.malformed"
    assert rule_of(b"not json", trusted(key)) == "vex.malformed"
    assert rule_of(b"[" * 10_000, trusted(key)) == "vex.malformed"
