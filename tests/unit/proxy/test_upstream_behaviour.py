"""Upstream behaviour the real registry does not show: redirects and mid-body failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.fakes.upstream import REDIRECT_TARGET, FakeUpstream

DIGEST = "sha256:" + "c" * 64


@pytest.mark.parametrize("mode", ["stream", "sendfile"])
async def test_object_storage_redirect_goes_to_the_client_unchanged(
    fake_upstream: tuple[FakeUpstream, TestServer],
    gatekeeper_client: Any,
    tmp_path: Path,
    mode: str,
) -> None:
    _fake, server = fake_upstream
    env = {"upstream_storage_root": str(tmp_path)} if mode == "sendfile" else {}
    client = await gatekeeper_client(str(server.make_url("/")), **env)
    resp = await client.get(f"/v2/redirected/blobs/{DIGEST}", allow_redirects=False)
    assert resp.status == 307
    assert resp.headers["Location"] == REDIRECT_TARGET


async def test_upstream_dying_mid_blob_is_an_error_not_a_short_success(
    fake_upstream: tuple[FakeUpstream, TestServer], gatekeeper_client: Any
) -> None:
    _, server = fake_upstream
    client = await gatekeeper_client(str(server.make_url("/")))
    resp = await client.get(f"/v2/dies/blobs/{DIGEST}")
    assert resp.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    # The gatekeeper itself keeps serving.
    assert (await client.get("/v2/")).status == 200


async def test_client_credentials_never_reach_the_upstream(
    fake_upstream: tuple[FakeUpstream, TestServer], gatekeeper_client: Any
) -> None:
    fake, server = fake_upstream
    client = await gatekeeper_client(str(server.make_url("/")))
    await client.get(
        f"/v2/redirected/blobs/{DIGEST}",
        headers={"Authorization": "Basic c2VjcmV0OnNlY3JldA==", "Cookie": "session=1"},
        allow_redirects=False,
    )
    forwarded = [headers for _, path, headers in fake.seen if "/blobs/" in path]
    assert forwarded
    for headers in forwarded:
        assert "Authorization" not in headers
        assert "Cookie" not in headers
