"""Migration 0016 erases the plaintext token signing key of earlier versions: the key is not
converted (there is no key-encryption key to seal it with) and its bytes do not survive in the
file's free pages."""

from __future__ import annotations

import sqlite3

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from storage.db import create_engine, upgrade
from tests.support.database import Database


@pytest.mark.sqlite_only(reason="reads the SQLite file's bytes")
async def test_the_plaintext_key_of_earlier_versions_is_erased(fresh_db: Database) -> None:
    assert fresh_db.path is not None
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    body = "".join(pem.splitlines()[1:-1])
    engine = create_engine(fresh_db.url)
    try:
        await upgrade(engine, "0015")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO signing_keys (id, private_pem, created_at) "
                    "VALUES (1, :pem, CURRENT_TIMESTAMP)"
                ),
                {"pem": pem},
            )
        with sqlite3.connect(fresh_db.path) as raw:  # the row is in the file itself
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert body[10:60].encode() in fresh_db.path.read_bytes()
        await upgrade(engine)
        async with engine.connect() as conn:
            tables = await conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
            assert "signing_keys" not in {row[0] for row in tables}
    finally:
        await engine.dispose()
    with sqlite3.connect(fresh_db.path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stored = fresh_db.path.read_bytes()
    wal = fresh_db.path.with_name(fresh_db.path.name + "-wal")
    stored += wal.read_bytes() if wal.exists() else b""
    assert b"PRIVATE KEY" not in stored
    assert body[10:60].encode() not in stored
