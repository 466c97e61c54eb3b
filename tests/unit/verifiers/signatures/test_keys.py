"""Public keys and cosign's key files."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support import cosign
from verifiers.signatures.keys import Check, KeyFormatError, PublicKey

# go-securesystemslib's encrypted package test vector (passphrase "supersecret").
GO_VECTOR = (
    b'{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0'
    b'eiLR4A7FV3mjVAQrg1g="},"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1'
    b'nkA/5Ik"},"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}'
)


@pytest.mark.parametrize("kind", ["p256", "p384", "ed25519", "rsa"])
def test_each_supported_key_type_verifies_and_rejects(kind: str) -> None:
    private = cosign.new_key(kind)
    key = PublicKey.from_pem(cosign.public_pem(private))
    signature = cosign.sign(private, b"payload")
    assert key.check(signature, b"payload") is Check.VALID
    assert key.check(signature, b"payload!") is Check.INVALID
    assert key.check(signature[:-3], b"payload") is Check.MALFORMED
    assert key.key_id.startswith("sha256:") and len(key.key_id) == 71


def test_a_truncated_der_signature_is_malformed_not_merely_wrong() -> None:
    private = cosign.new_key("p256")
    key = PublicKey.from_pem(cosign.public_pem(private))
    der = cosign.sign(private, b"x")
    assert key.check(der[:20], b"x") is Check.MALFORMED
    assert key.check(der + b"\x00", b"x") is Check.MALFORMED


def test_unusable_keys_are_refused_with_a_reason() -> None:
    with pytest.raises(KeyFormatError, match="not a PEM public key"):
        PublicKey.from_pem(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeyFormatError, match="at least 2048"):
        PublicKey.from_pem(cosign.public_pem(weak))


def test_decrypts_go_securesystemslib_vector() -> None:
    assert cosign.decrypt_cosign_secret(GO_VECTOR, b"supersecret") == b"reallyimportant"
    with pytest.raises(Exception, match="Decryption failed"):
        cosign.decrypt_cosign_secret(GO_VECTOR, b"wrong")


def test_cosign_key_pair_round_trip() -> None:
    private = cosign.new_key("p256")
    pem = cosign.encrypt_cosign_key(private, b"hunter2")
    assert pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    inner = b"".join(pem.splitlines()[1:-1])
    doc = json.loads(base64.b64decode(inner))
    assert doc["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert doc["cipher"]["name"] == "nacl/secretbox"
    loaded = cosign.load_cosign_key(pem, b"hunter2")
    key = PublicKey.from_pem(cosign.public_pem(private))
    assert key.check(cosign.sign(loaded, b"data"), b"data") is Check.VALID
