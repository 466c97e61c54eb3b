"""Where the token signing key comes from, never in plaintext at rest in the database.

Whoever holds the signing key can mint a token for any identity, an admin included, so the
database (and every copy of it: backups, ``pg_dump``, a replica's volume) must not give it
away. Two sources, chosen in ``[auth]``:

- **a key file** (``signing_key_file``): a PEM the operator provides on every replica, readable
  by the gatekeeper's user only (checked at start-up: mode 0600 or stricter, owned by that user
  or root). ``verification_key_files`` lists earlier keys whose tokens are still accepted; a
  rotation is a new file plus the old one listed there until its tokens have expired;
- **the database, sealed** (``key_encryption_key`` from the environment or
  ``key_encryption_key_file``): the private key is stored encrypted (``proxy/auth/sealing.py``);
  only its public half and its ``kid`` are in the clear. The first replica to start generates
  it; all of them share it. ``gatekeeper token-key rotate`` adds a new active key and keeps the
  previous one verifying for a token lifetime plus a refresh interval, so tokens signed by any
  replica before it noticed the rotation stay valid until they expire. Replicas read the keys
  again every :data:`REFRESH_SECONDS`, and at once (at most once a second) when a token names a
  key they do not know.

With neither, the gatekeeper refuses to start (with authentication on): there is no plaintext
fallback.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.ext.asyncio import async_sessionmaker

from config.auth import AuthSettings, parse_key_encryption_key
from config.settings import ConfigError
from proxy.auth import sealing
from proxy.auth.keyring import (
    KeyFormatError,
    Keyring,
    generate,
    key_id,
    private_from_pem,
    public_from_pem,
    public_pem,
)
from storage import token_keys
from storage.timeutil import now

log = logging.getLogger("gatekeeper.auth")

REFRESH_SECONDS = 60.0
"""How often a replica reads the keys again (a rotation elsewhere is seen within this)."""
UNKNOWN_KID_REFRESH_SECONDS = 1.0
"""A token naming an unknown key makes a replica read the keys at most this often."""
LEEWAY_SECONDS = 5.0
"""Clock skew allowed between replicas (tokens carry the same leeway)."""


class KeySource(Protocol):
    """Gives the keyring in force, read again when asked."""

    async def load(self) -> Keyring: ...

    async def refresh(self, *, unknown_kid: bool = False) -> Keyring | None:
        """A newer keyring, or None when nothing needed reading or nothing changed."""
        ...


def check_secret_file(path: Path, field: str) -> bytes:
    """The content of a file holding a secret, refused unless only its owner (this process's
    user, or root) may read it."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"auth.{field}: {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"auth.{field}: {path} is not a regular file")
    if info.st_mode & 0o077:
        raise ConfigError(
            f"auth.{field}: {path} may be read by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"it holds a secret: chmod 600 {path}"
        )
    if info.st_uid not in (os.geteuid(), 0):
        raise ConfigError(
            f"auth.{field}: {path} belongs to another user (uid {info.st_uid}); it must belong "
            "to the gatekeeper's user"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"auth.{field}: {path}: {exc.strerror}") from exc


def key_encryption_key(settings: AuthSettings) -> bytes | None:
    """The KEK from the settings (environment) or its file, or None when neither is set."""
    if settings.key_encryption_key is not None:
        return parse_key_encryption_key(settings.key_encryption_key.get_secret_value())
    if settings.key_encryption_key_file is None:
        return None
    raw = check_secret_file(settings.key_encryption_key_file, "key_encryption_key_file")
    try:
        return parse_key_encryption_key(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"auth.key_encryption_key_file: {exc}") from exc


def key_source(settings: AuthSettings, db: async_sessionmaker[Any]) -> KeySource:
    """The configured source, or the configuration error that says what to set."""
    if settings.signing_key_file is not None:
        return FileKeys(settings)
    kek = key_encryption_key(settings)
    if kek is None:
        raise ConfigError(
            "auth: the token signing key needs a home that is not plaintext in the database: "
            "set a key-encryption key (GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY, base64 of 32 random "
            "bytes, or auth.key_encryption_key_file) to keep it sealed in the database, or "
            "auth.signing_key_file (see docs/deployment.md)"
        )
    return DatabaseKeys(db, kek, overlap_seconds=settings.token_ttl_seconds)


class FileKeys:
    """The signing key from a file, earlier keys from files; read once, at start-up."""

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings

    async def load(self) -> Keyring:
        path = self._settings.signing_key_file
        assert path is not None
        try:
            signing = private_from_pem(
                check_secret_file(path, "signing_key_file"), f"auth.signing_key_file {path}"
            )
            earlier = [
                public_from_pem(other.read_bytes(), f"auth.verification_key_files {other}")
                for other in self._settings.verification_key_files
            ]
        except KeyFormatError as exc:
            raise ConfigError(str(exc)) from exc
        except OSError as exc:
            raise ConfigError(f"auth.verification_key_files: {exc}") from exc
        return Keyring.of(signing, earlier)

    async def refresh(self, *, unknown_kid: bool = False) -> Keyring | None:
        return None  # files change with a restart


class DatabaseKeys:
    """Keys in the database, the private halves sealed under the KEK."""

    def __init__(self, db: async_sessionmaker[Any], kek: bytes, *, overlap_seconds: float) -> None:
        self._db = db
        self._kek = kek
        self._overlap = overlap_seconds
        self._current: Keyring | None = None
        self._read_at = 0.0

    async def inspect(self) -> str | None:
        """The active key's ``kid`` if it opens under this key-encryption key, None if no key
        was generated yet; changes nothing (``gatekeeper doctor``). ConfigError or SealError
        say what is wrong."""
        async with self._db() as session:
            stored = await token_keys.all_keys(session)
        active = next((key for key in stored if key.active), None)
        if active is None:
            return None
        if self._open(active) is None:
            raise ConfigError(
                f"auth: the stored token signing key {active.kid} was sealed under another "
                "key-encryption key than the one given"
            )
        return active.kid

    async def load(self) -> Keyring:
        async with self._db() as session, session.begin():
            stored = await token_keys.all_keys(session)
            if not any(key.active for key in stored):
                await _add_active(session, self._kek, generate())
        keyring = await self._read()
        log.info("token signing key %s (sealed in the database)", keyring.signing_kid)
        return keyring

    async def refresh(self, *, unknown_kid: bool = False) -> Keyring | None:
        interval = UNKNOWN_KID_REFRESH_SECONDS if unknown_kid else REFRESH_SECONDS
        if time.monotonic() - self._read_at < interval:
            return None
        before = self._current
        keyring = await self._read()
        return None if keyring is before else keyring

    async def _read(self) -> Keyring:
        """The keys as stored now; the keyring in hand if nothing changed."""
        self._read_at = time.monotonic()
        moment = now()
        async with self._db() as session, session.begin():
            await token_keys.purge(session, moment)
            stored = await token_keys.all_keys(session)
        verifying = {
            key.kid: public_from_pem(key.public_pem.encode(), f"stored key {key.kid}")
            for key in stored
            if key.active or (key.verify_until is not None and key.verify_until > moment)
        }
        active = next((key for key in stored if key.active), None)
        signing = self._open(active)
        if signing is None:
            # Another KEK sealed the active key (a rotation under a new KEK, seen before this
            # replica was given it): keep signing with the key in hand while it still verifies.
            held = self._current
            if held is None or held.signing_kid not in verifying:
                assert active is not None
                raise ConfigError(
                    f"auth: the active token signing key {active.kid} was sealed under "
                    f"key-encryption key {active.kek_id}, this replica has "
                    f"{sealing.kek_id(self._kek)}: give every replica the same key-encryption key"
                )
            log.error(
                "token signing key %s is sealed under another key-encryption key; still "
                "signing with %s",
                active.kid if active else "?",
                held.signing_kid,
            )
            signing = held.signing
        public = signing.public_key()
        verifying[key_id(public)] = public
        held = self._current
        if held is None or (held.signing_kid, set(held.verifying)) != (
            key_id(public),
            set(verifying),
        ):
            held = self._current = Keyring(key_id(public), signing, verifying)
        return held

    def _open(self, active: token_keys.StoredKey | None) -> ec.EllipticCurvePrivateKey | None:
        if active is None or active.kek_id != sealing.kek_id(self._kek):
            return None
        if self._current is not None and self._current.signing_kid == active.kid:
            return self._current.signing
        der = sealing.unseal(self._kek, active.kid, active.sealed_private)
        key = serialization.load_der_private_key(der, password=None)
        if (
            not isinstance(key, ec.EllipticCurvePrivateKey)
            or key_id(key.public_key()) != active.kid
        ):
            raise ConfigError(f"auth: the stored token signing key {active.kid} is damaged")
        return key


async def _add_active(session: Any, kek: bytes, key: ec.EllipticCurvePrivateKey) -> str:
    kid = key_id(key.public_key())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    await token_keys.add_active(
        session,
        kid,
        public_pem(key.public_key()),
        sealing.seal(kek, kid, der),
        sealing.kek_id(kek),
        now(),
    )
    return kid


async def rotate(db: async_sessionmaker[Any], settings: AuthSettings) -> tuple[str | None, str]:
    """Make a new active key; the previous one keeps verifying for a token lifetime plus a
    refresh interval. Returns (previous kid, active kid)."""
    kek = key_encryption_key(settings)
    if settings.signing_key_file is not None or kek is None:
        raise ConfigError(
            "auth: token-key rotate works on keys sealed in the database (a key-encryption key "
            "is set); with signing_key_file, rotate the file (docs/deployment.md)"
        )
    moment = now()
    overlap = timedelta(seconds=settings.token_ttl_seconds + REFRESH_SECONDS + LEEWAY_SECONDS)
    async with db() as session, session.begin():
        previous = await token_keys.retire_active(session, moment, moment + overlap)
        await _add_active(session, kek, generate())
    async with db() as session:
        active = next((k.kid for k in await token_keys.all_keys(session) if k.active), "")
    return previous, active


async def stored_keys(db: async_sessionmaker[Any]) -> list[token_keys.StoredKey]:
    async with db() as session:
        return await token_keys.all_keys(session)


def describe(key: token_keys.StoredKey, moment: datetime) -> str:
    """One line for ``gatekeeper token-key list``."""
    if key.active:
        state = "active"
    elif key.verify_until is not None and key.verify_until > moment:
        state = f"verifying until {key.verify_until.isoformat(timespec='seconds')}"
    else:
        state = "expired"
    created = key.created_at.isoformat(timespec="seconds")
    return f"{key.kid}  {state}  created {created}  sealed under key-encryption key {key.kek_id}"
