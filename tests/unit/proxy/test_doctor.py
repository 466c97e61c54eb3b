"""``gatekeeper doctor``'s checks one by one, each against what it inspects (a database, a
directory, a key file, a clock reading); the whole command against a real registry is in
``tests/e2e/test_first_hour.py``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.settings import load_settings
from proxy.doctor import (
    Check,
    Facts,
    Status,
    check_advisories,
    check_clock,
    check_database,
    check_migrations,
    check_storage,
    check_token_key,
    diagnose,
)
from storage.advisories import DbAdvisoryStore
from storage.db import create_engine, head_revision, sessionmaker, upgrade
from tests.support.database import Database
from tests.support.gatekeeper import TEST_KEY_ENCRYPTION_KEY
from tests.support.testdata import OSV_PYPI
from verifiers.vulns.osv import Advisory

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def facts(**env: str) -> Facts:
    return Facts(load_settings(env={f"GATEKEEPER_{k.upper()}": v for k, v in env.items()}))


@pytest.mark.parametrize(
    ("skew", "status"), [(timedelta(seconds=1), Status.OK), (timedelta(seconds=-20), Status.WARN)]
)
async def test_the_clock_against_the_registry(skew: timedelta, status: Status) -> None:
    found = facts()
    found.now, found.upstream_clock = (lambda: NOW), NOW - skew
    assert (await check_clock(found)).status is status


async def test_a_clock_minutes_off_fails_with_a_fix() -> None:
    found = facts()
    found.now, found.upstream_clock, found.database_clock = (
        lambda: NOW,
        NOW,
        NOW - timedelta(minutes=3),
    )
    check = await check_clock(found)
    assert check.status is Status.FAIL and "180s from PostgreSQL's" in check.detail
    assert "NTP" in check.fix


async def test_the_storage_must_be_the_registrys_layout(tmp_path: Path) -> None:
    assert (await check_storage(facts())).status is Status.OK  # unset: streamed, fine
    wrong = await check_storage(facts(upstream_storage_root=str(tmp_path)))
    assert wrong.status is Status.FAIL and "docker/registry/v2/blobs" in wrong.detail
    assert "rootdirectory" in wrong.fix
    blob = tmp_path / "docker/registry/v2/blobs/sha256/ab/ab12/data"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"x")
    right = await check_storage(facts(upstream_storage_root=str(tmp_path)))
    assert right.status is Status.OK and "a blob read" in right.detail


async def test_a_token_key_file_that_is_no_key_fails(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    check = await check_token_key(facts(auth__signing_key_file=str(key)))
    assert check.status is Status.FAIL and "openssl genpkey" in check.fix
    missing = await check_token_key(facts(auth__signing_key_file=str(tmp_path / "none")))
    assert missing.status is Status.FAIL and "none" in missing.detail
    homeless = await check_token_key(facts())  # neither a key file nor a key-encryption key
    assert homeless.status is Status.FAIL and "KEY_ENCRYPTION_KEY" in homeless.fix
    off = await check_token_key(facts(auth__enabled="false"))
    assert off.status is Status.WARN and "anyone" in off.detail


async def test_no_database_file_is_a_warning_not_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "var" / "gk.db"
    found = facts(database_url=f"sqlite+aiosqlite:///{path}")
    check = await check_database(found)
    assert check.status is Status.WARN and "gatekeeper serve" in check.fix
    assert not path.parent.exists()  # doctor creates nothing
    assert (await check_migrations(found)).status is Status.WARN


@pytest.mark.testdata
async def test_migrations_token_key_and_advisory_age(fresh_db: Database) -> None:
    engine = create_engine(fresh_db.url)
    try:
        await upgrade(engine, "0009")
        found = facts(
            database_url=fresh_db.url,
            verifiers='{"vulnerabilities": {}}',
            auth__key_encryption_key=TEST_KEY_ENCRYPTION_KEY,
        )
        assert (await check_database(found)).status is Status.OK
        behind = await check_migrations(found)
        assert behind.status is Status.WARN and "db upgrade" in behind.fix
        await upgrade(engine)
        assert (await check_migrations(found)).detail.startswith(f"at {head_revision()}")
        assert (await check_token_key(found)).detail.startswith("none yet")
        empty = await check_advisories(found)
        assert empty.status is Status.WARN and "advisories import" in empty.fix
        record = Advisory.from_bytes((OSV_PYPI / "PYSEC-2023-192.json").read_bytes())
        await DbAdvisoryStore(sessionmaker(engine)).import_advisories([record], "t")
        assert (await check_advisories(found)).status is Status.OK
        found.now = lambda: datetime.now(UTC) + timedelta(days=30)
        stale = await check_advisories(found)
        assert stale.status is Status.WARN and "30.0 days ago (stale)" in stale.detail
    finally:
        await engine.dispose()
        if found.engine is not None:
            await found.engine.dispose()


async def test_a_crashing_check_is_a_failed_check() -> None:
    async def broken(_: Facts) -> Check:
        raise RuntimeError("boom")

    (check,) = await diagnose(facts().settings, (broken,))
    assert (check.name, check.status, check.detail) == ("broken", Status.FAIL, "RuntimeError: boom")
