"""Where the token signing key comes from (``proxy/auth/keystore.py``): sealed in the database
under a key-encryption key, or a file only its owner may read; rotation with an overlap."""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker

from config.auth import AuthSettings
from config.settings import ConfigError
from proxy.auth import keystore, sealing
from proxy.auth.keyring import Keyring, key_id
from proxy.auth.tokens import TokenError, TokenIssuer
from storage import token_keys
from storage.timeutil import now

KEK = base64.b64encode(os.urandom(32)).decode()


def settings(**values: Any) -> AuthSettings:
    return AuthSettings(**{"key_encryption_key": KEK, **values})


def issuer(keys: Keyring) -> TokenIssuer:
    return TokenIssuer(keys, service="s", issuer="i", ttl=60)


def pem_file(path: Path, mode: int) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(mode)
    return path


def test_a_seal_opens_only_with_its_kek_and_kid() -> None:
    kek = os.urandom(32)
    sealed = sealing.seal(kek, "kid-1", b"secret")
    assert sealing.unseal(kek, "kid-1", sealed) == b"secret"
    assert b"secret" not in sealed
    with pytest.raises(sealing.SealError):
        sealing.unseal(os.urandom(32), "kid-1", sealed)
    with pytest.raises(sealing.SealError):
        sealing.unseal(kek, "kid-2", sealed)  # copied onto another key's row
    assert sealing.kek_id(kek) != sealing.kek_id(os.urandom(32))


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"key_encryption_key": "c2hvcnQ="}, "32 bytes"),
        ({"key_encryption_key": "not base64!"}, "base64"),
        ({"key_encryption_key_file": "/k"}, "not both"),
        ({"signing_key_file": "/k.pem"}, "choose one"),
        ({"key_encryption_key": None, "verification_key_files": ["/old.pem"]}, "signing_key_file"),
    ],
)
def test_settings_name_what_is_wrong(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        settings(**values)


async def test_no_key_source_is_a_configuration_error(db: async_sessionmaker[Any]) -> None:
    with pytest.raises(ConfigError, match="KEY_ENCRYPTION_KEY"):
        keystore.key_source(AuthSettings(), db)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
async def test_a_key_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = pem_file(tmp_path / "key.pem", mode)
    source = keystore.FileKeys(AuthSettings(signing_key_file=path))
    with pytest.raises(ConfigError, match="chmod 600"):
        await source.load()


async def test_key_files_sign_and_earlier_ones_verify(tmp_path: Path) -> None:
    old = pem_file(tmp_path / "old.pem", 0o600)
    old_keys = await keystore.FileKeys(AuthSettings(signing_key_file=old)).load()
    old_token, _ = issuer(old_keys).issue("alice", 1, 1, [])
    new = pem_file(tmp_path / "new.pem", 0o400)
    keys = await keystore.FileKeys(
        AuthSettings(signing_key_file=new, verification_key_files=[old])
    ).load()
    assert issuer(keys).verify(old_token).subject == "alice"  # the overlap
    alone = await keystore.FileKeys(AuthSettings(signing_key_file=new)).load()
    with pytest.raises(TokenError, match="does not accept"):
        issuer(alone).verify(old_token)


async def test_replicas_share_one_sealed_key(db: async_sessionmaker[Any]) -> None:
    first = await keystore.DatabaseKeys(db, _kek(), overlap_seconds=60).load()
    second = await keystore.DatabaseKeys(db, _kek(), overlap_seconds=60).load()
    assert first.signing_kid == second.signing_kid == key_id(second.signing.public_key())
    async with db() as session:
        (stored,) = await token_keys.all_keys(session)
    assert stored.active and b"PRIVATE" not in stored.sealed_private
    with pytest.raises(ConfigError, match="same key-encryption key"):
        await keystore.DatabaseKeys(db, os.urandom(32), overlap_seconds=60).load()


async def test_rotation_overlaps_then_the_old_key_is_forgotten(db: async_sessionmaker[Any]) -> None:
    replica = keystore.DatabaseKeys(db, _kek(), overlap_seconds=60)
    before = await replica.load()
    old_token, _ = issuer(before).issue("alice", 1, 1, [])
    previous, active = await keystore.rotate(db, settings())
    assert previous == before.signing_kid and active != previous
    # Read again (as on a token naming the new kid): the new key signs, the old verifies.
    replica._read_at = 0.0
    after = await replica.refresh(unknown_kid=True)
    assert after is not None and after.signing_kid == active
    assert issuer(after).verify(old_token).subject == "alice"
    assert await replica.refresh() is None  # not due again yet
    # Once its overlap has passed, the old key is gone and so are its tokens.
    async with db() as session, session.begin():
        await session.execute(
            update(token_keys.TokenKeyRow)
            .where(token_keys.TokenKeyRow.kid == previous)
            .values(verify_until=now() - timedelta(seconds=1))
        )
    replica._read_at = 0.0
    later = await replica.refresh(unknown_kid=True)
    assert later is not None and set(later.verifying) == {active}
    with pytest.raises(TokenError):
        issuer(later).verify(old_token)
    async with db() as session:
        assert [k.kid for k in await token_keys.all_keys(session)] == [active]


async def test_rotate_refuses_a_key_file_setup(db: async_sessionmaker[Any], tmp_path: Path) -> None:
    path = pem_file(tmp_path / "key.pem", 0o600)
    with pytest.raises(ConfigError, match="rotate the file"):
        await keystore.rotate(db, AuthSettings(signing_key_file=path))


def _kek() -> bytes:
    return base64.b64decode(KEK)
