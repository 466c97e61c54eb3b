"""A registry on object storage: its redirects followed for verification reads and, with
``blob_redirects = "proxy"``, for clients; never with the upstream's credentials."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from config.settings import load_settings
from tests.fakes.objectstore import (
    BASIC,
    PASSWORD,
    SIGNATURE,
    USERNAME,
    FakeStore,
    RedirectingRegistry,
)
from tests.support.database import Database
from tests.support.ocihttp import digest_of
from tests.support.procs import free_port
from upstream.client import Upstream, make_client_session, make_token_client
from upstream.reads import UpstreamBlobs
from verifiers.base import SourceUnavailable, VerifierError

DATA = bytes(range(256)) * 64
DIGEST = digest_of(DATA)
CREDENTIALS = {"upstream_username": USERNAME, "upstream_password": PASSWORD}


@dataclass
class Rig:
    store: FakeStore
    registry: RedirectingRegistry
    registry_url: str
    blobs: UpstreamBlobs


async def _start(app: Any) -> TestServer:
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.fixture
async def rig(fresh_db: Database) -> AsyncIterator[Rig]:
    store = FakeStore(blobs={DIGEST: DATA})
    store_server = await _start(store.app())
    registry = RedirectingRegistry(str(store_server.make_url("/")))
    registry_server = await _start(registry.app())
    settings = load_settings(
        env={
            "GATEKEEPER_UPSTREAM_URL": str(registry_server.make_url("/")),
            "GATEKEEPER_DATABASE_URL": fresh_db.url,
            "GATEKEEPER_UPSTREAM_USERNAME": USERNAME,
            "GATEKEEPER_UPSTREAM_PASSWORD": PASSWORD,
        }
    )
    session, tokens = make_client_session(settings), make_token_client(settings)
    upstream = Upstream(settings, session, tokens)
    yield Rig(store, registry, str(registry_server.make_url("/")), UpstreamBlobs(upstream, "r/x"))
    await tokens.aclose()
    await session.close()
    await registry_server.close()
    await store_server.close()


def assert_no_credentials_reached_the_store(rig: Rig) -> None:
    assert rig.store.seen, "the store was never asked"
    for _method, _path, headers in rig.store.seen:
        assert "Authorization" not in headers
        assert "Cookie" not in headers
    # The credentials were in play: the registry got them.
    assert any(h.get("Authorization") == BASIC for _, _, h in rig.registry.seen)


async def read_all(blobs: UpstreamBlobs, digest: str) -> bytes:
    async with blobs.open(digest) as chunks:
        return b"".join([chunk async for chunk in chunks])


async def test_a_blob_is_streamed_from_the_store_without_the_upstreams_credentials(
    rig: Rig,
) -> None:
    assert await read_all(rig.blobs, DIGEST) == DATA
    assert await rig.blobs.read(DIGEST, len(DATA)) == DATA
    assert await rig.blobs.read(DIGEST, len(DATA) - 1) is None  # bounded like any read
    assert_no_credentials_reached_the_store(rig)
    # The presigned query reaches the store exactly as the registry wrote it.
    assert all(path.endswith("?" + SIGNATURE) for _, path, _ in rig.store.seen)


async def test_the_sniffing_head_sends_its_range_to_the_store(rig: Rig) -> None:
    assert await rig.blobs.head(DIGEST, 10) == DATA[:10]
    (method, _path, headers) = rig.store.seen[-1]
    assert method == "GET" and headers["Range"] == "bytes=0-9"
    assert_no_credentials_reached_the_store(rig)


async def test_user_info_in_the_redirect_never_becomes_credentials(rig: Rig) -> None:
    rig.registry.userinfo = "someone:something"
    assert await read_all(rig.blobs, DIGEST) == DATA
    assert_no_credentials_reached_the_store(rig)


async def test_a_store_refusal_fails_the_read_and_names_the_store(rig: Rig) -> None:
    rig.store.status = 403
    with pytest.raises(VerifierError, match="object storage answered 403"):
        await read_all(rig.blobs, DIGEST)
    with pytest.raises(VerifierError, match="object storage answered 403"):
        await rig.blobs.head(DIGEST, 10)


async def test_a_store_in_trouble_is_unavailable_and_a_missing_blob_is_not(rig: Rig) -> None:
    """A server error, a broken-off transfer or no answer says nothing of the blob: the
    verification is retried (``SourceUnavailable``); a missing blob is an answer about it."""
    rig.store.failing.add(DIGEST)
    with pytest.raises(SourceUnavailable, match="object storage answered 503"):
        await read_all(rig.blobs, DIGEST)
    rig.store.failing.clear()
    rig.store.dying.add(DIGEST)
    with pytest.raises(SourceUnavailable, match="reading it failed"):
        await read_all(rig.blobs, DIGEST)
    with pytest.raises(VerifierError, match="object storage answered 404") as missing:
        await read_all(rig.blobs, digest_of(b"never pushed"))
    assert not isinstance(missing.value, SourceUnavailable)


async def test_a_redirect_loop_is_cut_short(rig: Rig) -> None:
    rig.store.loop = True
    with pytest.raises(SourceUnavailable, match="redirected more than 5 times"):
        await read_all(rig.blobs, DIGEST)
    assert len(rig.store.seen) == 5


async def test_an_unreachable_store_is_named_as_such(fresh_db: Database) -> None:
    registry = RedirectingRegistry(f"http://127.0.0.1:{free_port()}")
    server = await _start(registry.app())
    settings = load_settings(
        env={
            "GATEKEEPER_UPSTREAM_URL": str(server.make_url("/")),
            "GATEKEEPER_DATABASE_URL": fresh_db.url,
            "GATEKEEPER_UPSTREAM_USERNAME": USERNAME,
            "GATEKEEPER_UPSTREAM_PASSWORD": PASSWORD,
        }
    )
    session, tokens = make_client_session(settings), make_token_client(settings)
    try:
        blobs = UpstreamBlobs(Upstream(settings, session, tokens), "r/x")
        with pytest.raises(SourceUnavailable, match="the registry's object storage is unreachable"):
            await read_all(blobs, DIGEST)
    finally:
        await tokens.aclose()
        await session.close()
        await server.close()


# -- clients' blob GETs ------------------------------------------------------------------------


async def test_by_default_the_client_gets_the_redirect(rig: Rig, gatekeeper_client: Any) -> None:
    client = await gatekeeper_client(rig.registry_url, **CREDENTIALS)
    resp = await client.get(f"/v2/r/x/blobs/{DIGEST}", allow_redirects=False)
    assert resp.status == 307
    assert resp.headers["Location"].endswith(f"/bucket/{DIGEST}?{SIGNATURE}")
    assert not rig.store.seen  # the bytes are the client's to fetch


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_proxy_mode_streams_from_the_store(
    rig: Rig, gatekeeper_client: Any, method: str
) -> None:
    client = await gatekeeper_client(rig.registry_url, blob_redirects="proxy", **CREDENTIALS)
    resp = await client.request(
        method,
        f"/v2/r/x/blobs/{DIGEST}",
        headers={"Authorization": "Basic Y2xpZW50OnNlY3JldA==", "Cookie": "session=1"},
        allow_redirects=False,
    )
    assert resp.status == 200
    assert resp.headers["Docker-Content-Digest"] == DIGEST
    assert resp.headers["Content-Length"] == str(len(DATA))
    assert await resp.read() == (DATA if method == "GET" else b"")
    assert rig.store.seen[-1][0] == method
    assert_no_credentials_reached_the_store(rig)


async def test_proxy_mode_passes_the_range_on(rig: Rig, gatekeeper_client: Any) -> None:
    client = await gatekeeper_client(rig.registry_url, blob_redirects="proxy", **CREDENTIALS)
    resp = await client.get(f"/v2/r/x/blobs/{DIGEST}", headers={"Range": "bytes=100-199"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 100-199/{len(DATA)}"
    assert await resp.read() == DATA[100:200]


async def test_proxy_mode_turns_a_store_error_into_a_bad_gateway(
    rig: Rig, gatekeeper_client: Any
) -> None:
    rig.store.status = 403
    client = await gatekeeper_client(rig.registry_url, blob_redirects="proxy", **CREDENTIALS)
    resp = await client.get(f"/v2/r/x/blobs/{DIGEST}")
    assert resp.status == 502
    body = await resp.json()
    assert "object storage answered 403" in body["errors"][0]["message"]
    assert "AccessDenied" not in json.dumps(body)


@pytest.mark.parametrize("mode", ["client", "proxy"])
async def test_a_denied_blob_is_never_redirected(
    rig: Rig, gatekeeper_client: Any, mode: str
) -> None:
    """The gate decides before the registry is asked for the blob: no redirect, no byte from
    the store. Once it has refused, only a HEAD asks whether the repository holds the digest
    at all (404 ``BLOB_UNKNOWN`` rather than 403 when it does not). (A HEAD is answered to
    identities that may push, which without authentication is anyone:
    tests/e2e/test_object_storage.py denies a pull-only identity both.)"""
    enforce = json.dumps([{"name": "strict", "repositories": ["*"], "require": ["config-sanity"]}])
    client = await gatekeeper_client(
        rig.registry_url, blob_redirects=mode, policies=enforce, **CREDENTIALS
    )
    resp = await client.get(f"/v2/r/x/blobs/{DIGEST}", allow_redirects=False)
    assert resp.status == 403
    assert "Location" not in resp.headers
    assert (await resp.json())["errors"][0]["code"] == "DENIED"
    asked = [seen[0] for seen in rig.registry.seen if "/blobs/" in seen[1]]
    assert asked in ([], ["HEAD"])
    assert not rig.store.seen
