"""Envelope encryption of the token signing key for the database (AES-256-GCM).

Whoever holds the token signing key can mint a token for any identity, so it never reaches
the database in the clear: it is sealed under the key-encryption key (KEK), which lives outside
the database (the environment, or a secret file). The associated data binds each sealed key to
its ``kid``, so a sealed key copied onto another row does not open. The KEK's id, a keyed hash
of it, is stored beside each sealed key so that a replica given another KEK says so instead of
failing obscurely; it reveals nothing of the KEK.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
_AAD = b"registry-gatekeeper token signing key\x00"
ATTESTATION_KEY = b"registry-gatekeeper attestation signing key\x00"
"""The associated data of the gatekeeper's own signing key (``proxy/attest/keys.py``): a sealed
token key copied onto its row, or the other way round, does not open."""
_KEK_ID = b"registry-gatekeeper key-encryption key id\x00"


class SealError(Exception):
    """A sealed key does not open under this KEK (another KEK, or a damaged row)."""


def kek_id(kek: bytes) -> str:
    """A short public name of a KEK, to tell which one sealed a key."""
    return hashlib.sha256(_KEK_ID + kek).hexdigest()[:16]


def seal(kek: bytes, kid: str, secret: bytes, *, purpose: bytes = _AAD) -> bytes:
    """``secret`` encrypted under ``kek`` for the key named ``kid`` (a token key unless
    ``purpose`` says otherwise): nonce, then ciphertext."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, secret, purpose + kid.encode())


def unseal(kek: bytes, kid: str, sealed: bytes, *, purpose: bytes = _AAD) -> bytes:
    try:
        return AESGCM(kek).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], purpose + kid.encode()
        )
    except (InvalidTag, ValueError) as exc:
        raise SealError(
            f"the signing key {kid} does not open with this key-encryption key"
        ) from exc
