"""The httpx clients a gatekeeper process opens share one verifying TLS context
(``upstream/tls.py``): building one per client cost ~40 ms of CPU at every start."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from config.settings import load_settings
from proxy.remote_status import make_remote_client
from proxy.webhooks import make_webhook_client
from services.mirror import make_mirror_client
from upstream.client import make_token_client
from upstream.tls import verifying_context


def _context(client: httpx.AsyncClient) -> ssl.SSLContext:
    pool = client._transport._pool  # type: ignore[attr-defined]
    context: ssl.SSLContext = pool._ssl_context
    return context


def test_the_context_verifies_certificates_and_names() -> None:
    context = verifying_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0, "the CA bundle is loaded"


async def test_every_outbound_client_shares_it() -> None:
    settings = load_settings(env={"GATEKEEPER_UPSTREAM_URL": "http://127.0.0.1:9"})
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
