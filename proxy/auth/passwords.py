"""Secret hashing: argon2id for everything we create, bcrypt only to accept hashes imported
from an htpasswd file (migrating from a plain registry)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters


def hash_secret(secret: str) -> str:
    return _HASHER.hash(secret)


def verify_secret(stored: str, secret: str) -> bool:
    """Constant-time check of ``secret`` against an argon2id or bcrypt hash."""
    if stored.startswith(("$2a$", "$2b$", "$2y$")):
        try:
            return bcrypt.checkpw(secret.encode(), stored.replace("$2y$", "$2b$", 1).encode())
        except ValueError:
            return False
    try:
        return _HASHER.verify(stored, secret)
    except (VerificationError, InvalidHashError):
        return False


def new_robot_token() -> str:
    """A robot secret: 256 random bits, shown once at creation."""
    return "gkr_" + secrets.token_urlsafe(32)


@functools.cache
def dummy_hash() -> str:
    """A valid hash of a random secret: checked when the user does not exist, so a wrong user
    name costs as long as a wrong password and names cannot be discovered by timing. Made on
    first use, not at import: every CLI command imports this module, and one argon2 hash is
    tens of milliseconds of CPU (more than the rest of a short command)."""
    return hash_secret(secrets.token_urlsafe(16))


class VerifiedSecrets:
    """Successful checks, remembered for a while: Docker-style clients send the same Basic
    credentials with request after request, and checking each again costs a full argon2 hash
    (about 50 ms of CPU on every core argon2 uses), which made the gatekeeper's CPU under such
    clients mostly password hashing.

    Only successes are kept, so a wrong secret always pays the full hash, and a user who does
    not exist the dummy's: timing tells an attacker nothing new (a remembered secret answers
    faster only to someone who already sent the right one). The key is an HMAC of the stored
    hash and the secret under a key made at start and never written anywhere, so the memory
    holds no secret nor anything to test guesses against offline; and it includes the stored
    hash, so a changed password (a new hash) is never matched by the old secret. Whether the
    identity may still log in is checked on every request by the caller, not here.
    """

    def __init__(self, ttl: float = 300.0, size: int = 4096) -> None:
        self.ttl = ttl
        self.size = size
        self._key = secrets.token_bytes(32)
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def _mac(self, stored: str, secret: str) -> bytes:
        message = stored.encode() + b"\0" + secret.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def known(self, stored: str, secret: str) -> bool:
        """True when this secret verified against this hash less than ``ttl`` seconds ago."""
        mac = self._mac(stored, secret)
        expires = self._seen.get(mac)
        if expires is None:
            return False
        if expires <= time.monotonic():
            del self._seen[mac]
            return False
        return True

    def remember(self, stored: str, secret: str) -> None:
        """Keep a successful check (the oldest one goes when full)."""
        mac = self._mac(stored, secret)
        self._seen[mac] = time.monotonic() + self.ttl
        self._seen.move_to_end(mac)
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
