"""In-process fixtures: the gatekeeper app and a fake upstream on loopback test servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from config.settings import load_settings
from proxy.app import create_app
from storage.db import create_engine, sessionmaker, upgrade
from tests.fakes.upstream import FakeUpstream
from tests.support.database import Database
from tests.support.gatekeeper import TEST_KEY_ENCRYPTION_KEY, WARN_EVERYTHING

GatekeeperFactory = Callable[..., Any]


@pytest.fixture
async def db(fresh_db: Database) -> AsyncIterator[Any]:
    """Sessions on a fresh, migrated database of the session's backend (storage-level tests)."""
    engine = create_engine(fresh_db.url)
    await upgrade(engine)
    yield sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def fake_upstream() -> AsyncIterator[tuple[FakeUpstream, TestServer]]:
    fake = FakeUpstream()
    server = TestServer(fake.app())
    await server.start_server()
    yield fake, server
    await server.close()


@pytest.fixture
async def gatekeeper_client(
    fresh_db: Database, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Build an in-process gatekeeper with settings given as environment-style strings."""
    clients: list[TestClient[Any, Any]] = []

    async def build(upstream_url: str, **env: str) -> TestClient[Any, Any]:
        values = {
            "GATEKEEPER_UPSTREAM_URL": upstream_url,
            "GATEKEEPER_DATABASE_URL": fresh_db.url,
            "GATEKEEPER_AUDIT__FLUSH_INTERVAL_SECONDS": "0.05",
            "GATEKEEPER_AUDIT__SPOOL_DIR": str(tmp_path / "audit-spool"),
            "GATEKEEPER_POLICIES": WARN_EVERYTHING,
            "GATEKEEPER_AUTH__ENABLED": "false",
            # Where the token signing key is sealed, as every deployment with auth on needs.
            "GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY": TEST_KEY_ENCRYPTION_KEY,
            **{f"GATEKEEPER_{k.upper()}": v for k, v in env.items()},
        }
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(load_settings(env=values))))
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()
