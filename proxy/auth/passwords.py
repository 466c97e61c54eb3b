"""Secret hashing: argon2id for everything we create, bcrypt only to accept hashes imported
from an htpasswd file (migrating from a plain registry)."""

from __future__ import annotations

import secrets

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


# A valid hash of a random secret: checked when the user does not exist, so a wrong user
# name costs as long as a wrong password and names cannot be discovered by timing.
DUMMY_HASH = hash_secret(secrets.token_urlsafe(16))
