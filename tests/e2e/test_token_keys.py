"""The token signing key at rest (issue 13): never in plaintext in the database, shared by
replicas, rotated with an overlap, and refused when it would be kept unsafely.

Whoever holds the signing key can mint an admin token, so the database file, its WAL and a
``pg_dump`` are searched for the private key in every form it could take (PEM, PKCS#8 DER, the
raw scalar in binary, hex and base64); the public key, which is stored in the clear, is
searched the same way first, to prove the search sees the table.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.support import postgres
from tests.support.database import Database
from tests.support.gatekeeper import (
    TEST_KEY_ENCRYPTION_KEY,
    Gatekeeper,
    make_gatekeeper,
    run_cli,
)
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e
SERVICE = "registry-gatekeeper"
AUTH_ON = {"GATEKEEPER_AUTH__ENABLED": "true"}


def create_user(gk: Gatekeeper, name: str) -> str:
    done = run_cli(gk, "users", "create", name, "--grant", "keys/*=pull,push")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1]


def token(gk: Gatekeeper, user: str, secret: str) -> str:
    resp = httpx.get(
        f"{gk.url}/auth/token",
        params={"service": SERVICE, "scope": "repository:keys/app:pull"},
        auth=(user, secret),
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["token"])


def accepted(gk: Gatekeeper, bearer: str) -> int:
    """The status of a request made with ``bearer`` (not 401: the token was accepted)."""
    resp = httpx.get(
        f"{gk.url}/v2/keys/app/tags/list", headers={"Authorization": f"Bearer {bearer}"}
    )
    return resp.status_code


def kid_of(bearer: str) -> str:
    return str(jwt.get_unverified_header(bearer)["kid"])


def stored_keys(gk: Gatekeeper) -> list[dict[str, Any]]:
    return gk.database.fetch("SELECT * FROM token_signing_keys ORDER BY created_at")


def opened(row: dict[str, Any]) -> ec.EllipticCurvePrivateKey:
    """The private key of a stored row, opened with the tests' key-encryption key the way the
    gatekeeper seals it (AES-256-GCM, nonce first, the kid in the associated data)."""
    sealed = bytes(row["sealed_private"])
    aad = b"registry-gatekeeper token signing key\x00" + str(row["kid"]).encode()
    der = AESGCM(base64.b64decode(TEST_KEY_ENCRYPTION_KEY)).decrypt(sealed[:12], sealed[12:], aad)
    key = serialization.load_der_private_key(der, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def forms(data: bytes) -> list[bytes]:
    """``data`` as it could appear in a file or a dump: raw, hex, base64."""
    return [
        data,
        data.hex().encode(),
        data.hex().upper().encode(),
        base64.b64encode(data),
        base64.urlsafe_b64encode(data).rstrip(b"="),
    ]


def private_material(key: ec.EllipticCurvePrivateKey) -> list[bytes]:
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    body = b"".join(pem.splitlines()[1:-1])  # the PEM's base64, without line breaks
    return [b"PRIVATE KEY", *forms(scalar), *forms(der), body[16:80]]


def public_material(key: ec.EllipticCurvePrivateKey) -> bytes:
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.splitlines()[1]


def at_rest(database: Database) -> dict[str, bytes]:
    """What an attacker who reads the database's storage gets: the SQLite file and its WAL, or
    a ``pg_dump`` of the PostgreSQL database."""
    if database.path is not None:
        wal = Path(f"{database.path}-wal")
        found = {"database file": database.path.read_bytes()}
        if wal.exists():
            found["WAL"] = wal.read_bytes()
        return found
    bin_dir = postgres._bin_dir()
    assert bin_dir is not None
    url = urlsplit(database.url.replace("postgresql+asyncpg", "postgresql"))
    dump = subprocess.run(
        [
            str(bin_dir / "pg_dump"),
            *("-h", url.hostname or "127.0.0.1", "-p", str(url.port), "-U", url.username or ""),
            url.path.lstrip("/"),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return {"pg_dump": dump.stdout}


def assert_no_private_key(database: Database, keys: list[ec.EllipticCurvePrivateKey]) -> None:
    stores = at_rest(database)
    everything = b"".join(stores.values())
    for key in keys:
        assert public_material(key) in everything, "the search does not see the keys table"
        for where, data in stores.items():
            for needle in private_material(key):
                assert needle not in data, f"private key material in the {where}"


@pytest.fixture
def gk(registry: Registry, tmp_path: Path) -> Iterator[Gatekeeper]:
    gatekeeper = make_gatekeeper(tmp_path / "gk", registry.url, extra_env=AUTH_ON)
    yield gatekeeper
    gatekeeper.stop()


def test_the_stored_key_is_sealed_and_the_database_holds_no_private_key(gk: Gatekeeper) -> None:
    secret = create_user(gk, "kim")
    issued = token(gk, "kim", secret)
    (row,) = stored_keys(gk)
    assert row["active_slot"] == 1 and kid_of(issued) == row["kid"]
    key = opened(row)  # the sealed key is the one that signs
    jwt.decode(issued, key.public_key(), algorithms=["ES256"], audience=SERVICE)
    done = run_cli(gk, "token-key", "rotate")
    assert done.returncode == 0, done.stderr
    rows = stored_keys(gk)
    assert len(rows) == 2
    assert_no_private_key(gk.database, [opened(r) for r in rows])  # while running (WAL)
    gk.stop()
    assert_no_private_key(gk.database, [opened(r) for r in rows])


@pytest.mark.skipif(not postgres.available(), reason="PostgreSQL is not installed")
@pytest.mark.own_database(reason="its gatekeepers share postgres_db whatever --db says")
def test_a_pg_dump_holds_no_private_key(
    registry: Registry, tmp_path: Path, postgres_db: Database
) -> None:
    gatekeeper = make_gatekeeper(
        tmp_path / "gk", registry.url, extra_env=AUTH_ON, database=postgres_db
    )
    try:
        secret = create_user(gatekeeper, "kim")
        assert accepted(gatekeeper, token(gatekeeper, "kim", secret)) in (200, 404)
        assert run_cli(gatekeeper, "token-key", "rotate").returncode == 0
        rows = stored_keys(gatekeeper)
        assert len(rows) == 2
        assert_no_private_key(postgres_db, [opened(r) for r in rows])
    finally:
        gatekeeper.stop()


def test_replicas_share_the_key_and_a_rotation_overlaps(
    gk: Gatekeeper, registry: Registry, tmp_path: Path
) -> None:
    other = make_gatekeeper(
        tmp_path / "replica", registry.url, extra_env=AUTH_ON, database=gk.database
    )
    try:
        secret = create_user(gk, "kim")
        first = token(gk, "kim", secret)
        assert accepted(other, first) != 401  # signed on one replica, accepted on the other
        assert kid_of(token(other, "kim", secret)) == kid_of(first)
        rotated = run_cli(gk, "token-key", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        assert f"retired {kid_of(first)}" in rotated.stdout
        other.stop()
        other.start()  # a replica (re)started after the rotation signs with the new key
        second = token(other, "kim", secret)
        assert kid_of(second) != kid_of(first)
        assert f"signing with {kid_of(second)}" in rotated.stdout
        listed = run_cli(gk, "token-key", "list").stdout.splitlines()
        assert listed[0].startswith(f"{kid_of(second)}  active  ")
        assert listed[1].startswith(f"{kid_of(first)}  verifying until ")
        # The first replica has not read the keys again yet: the new kid makes it do so now.
        for replica in (gk, other):
            assert accepted(replica, second) != 401
            assert accepted(replica, first) != 401  # the overlap: old tokens stay valid
        assert kid_of(token(gk, "kim", secret)) == kid_of(second)
    finally:
        other.stop()


def _start_fails(gk: Gatekeeper) -> str:
    """Run ``gatekeeper serve`` as ``gk`` would, expecting it to refuse to start (a gatekeeper
    that serves instead runs into the timeout); its own words."""
    done = run_cli(gk, "serve")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "configuration error" in done.stderr and "Traceback" not in done.stderr
    return done.stderr


def test_no_plaintext_fallback_and_unsafe_key_files_are_refused(
    registry: Registry, tmp_path: Path
) -> None:
    bare = make_gatekeeper(tmp_path / "bare", registry.url, extra_env=AUTH_ON, start=False)
    bare.env.pop("GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY")
    assert "GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY" in _start_fails(bare)
    assert bare.database.fetch("SELECT * FROM token_signing_keys") == []

    key_file = tmp_path / "token.pem"
    key_file.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o644)
    loose = make_gatekeeper(tmp_path / "loose", registry.url, extra_env=AUTH_ON, start=False)
    loose.env.pop("GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY")
    loose.env["GATEKEEPER_AUTH__SIGNING_KEY_FILE"] = str(key_file)
    assert f"chmod 600 {key_file}" in _start_fails(loose)
    key_file.chmod(0o600)
    loose.start()
    loose.stop()

    kek_file = tmp_path / "kek"
    kek_file.write_text(base64.b64encode(os.urandom(32)).decode())
    kek_file.chmod(0o640)
    filed = make_gatekeeper(tmp_path / "filed", registry.url, extra_env=AUTH_ON, start=False)
    filed.env.pop("GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY")
    filed.env["GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY_FILE"] = str(kek_file)
    assert "key_encryption_key_file" in _start_fails(filed)
    kek_file.chmod(0o600)
    filed.start()
    filed.stop()
    # Another key-encryption key cannot open the stored key: said so, not papered over.
    filed.env["GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY_FILE"] = str(tmp_path / "other-kek")
    (tmp_path / "other-kek").write_text(base64.b64encode(os.urandom(32)).decode())
    (tmp_path / "other-kek").chmod(0o600)
    assert "give every replica the same key-encryption key" in _start_fails(filed)
