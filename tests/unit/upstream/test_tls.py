"""The httpx clients a gatekeeper process opens share one verifying TLS context
(``upstream/tls.py``): building one per client cost ~40 ms of CPU at every start."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from config.settings import Settings, load_settings
from proxy.app import create_app
from proxy.remote_status import make_remote_client
from proxy.webhooks import make_webhook_client
from services.mirror import make_mirror_client
from tests.support.database import Database
from tests.support.gatekeeper import TEST_KEY_ENCRYPTION_KEY, WARN_EVERYTHING
from upstream.client import make_token_client
from upstream.tls import verifying_context


def _settings(db: Database, tmp_path: Path) -> Settings:
    """A gatekeeper with every outbound client configured (an advisory mirror included)."""
    return load_settings(
        env={
            "GATEKEEPER_UPSTREAM_URL": "http://127.0.0.1:9",
            "GATEKEEPER_DATABASE_URL": db.url,
            "GATEKEEPER_AUDIT__SPOOL_DIR": str(tmp_path / "spool"),
            "GATEKEEPER_POLICIES": WARN_EVERYTHING,
            "GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY": TEST_KEY_ENCRYPTION_KEY,
            "GATEKEEPER_ADVISORIES__MIRROR_URL": "https://mirror.invalid/PyPI/all.zip",
        }
    )


def _context(client: httpx.AsyncClient) -> ssl.SSLContext:
    pool = client._transport._pool  # type: ignore[attr-defined]
    context: ssl.SSLContext = pool._ssl_context
    return context


def test_the_context_verifies_certificates_and_names() -> None:
    context = verifying_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0, "the CA bundle is loaded"


async def test_every_outbound_client_shares_it(fresh_db: Database, tmp_path: Path) -> None:
    settings = _settings(fresh_db, tmp_path)
    clients: list[Any] = [
        make_token_client(settings),
        make_remote_client(),
        make_webhook_client(),
        make_mirror_client(settings.advisories),
    ]
    try:
        assert {id(_context(c)) for c in clients} == {id(verifying_context())}
    finally:
        for client in clients:
            await client.aclose()


async def test_a_start_builds_one_context(
    fresh_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[ssl.SSLContext] = []
    original = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    verifying_context.cache_clear()
    settings = _settings(fresh_db, tmp_path)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await runner.cleanup()
    assert len(built) == 1, f"{len(built)} TLS contexts built at start"
