"""Blob GETs that pass the gate are answered by the kernel (sendfile) from the registry's own
storage when it is mounted, with streaming as the fallback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.audited import assert_one_row_each, audited_client
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import push_blob
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sendfile_gk(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gatekeeper]:
    gk = make_gatekeeper(
        tmp_path_factory.mktemp("sendfile"), registry.url, storage_root=registry.storage_root
    )
    yield gk
    gk.stop()


def test_blob_get_is_served_by_sendfile(sendfile_gk: Gatekeeper) -> None:
    http, recorder = audited_client(sendfile_gk)
    data = os.urandom(3 * 1024 * 1024 + 7)
    with http:
        digest = push_blob(http, "sf/app", data)
        full = http.get(f"/v2/sf/app/blobs/{digest}")
        part = http.get(f"/v2/sf/app/blobs/{digest}", headers={"Range": "bytes=10-19"})
        tail = http.get(f"/v2/sf/app/blobs/{digest}", headers={"Range": "bytes=-5"})
    assert full.status_code == 200 and full.content == data
    assert full.headers["Docker-Content-Digest"] == digest
    assert full.headers["Content-Type"] == "application/octet-stream"
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert tail.content == data[-5:]
    rows = assert_one_row_each(sendfile_gk, recorder)
    pulls = [r for r in rows if r["action"] == "blob.pull"]
    assert all(r["decision"].endswith(":sendfile") for r in pulls)
    assert [r["bytes_out"] for r in pulls] == [len(data), 10, 5]


def test_blob_of_another_repository_is_not_served(sendfile_gk: Gatekeeper) -> None:
    """The file exists on disk, but the blob is not linked into this repository: the
    registry's answer (404) holds, the kernel path does not bypass it."""
    with httpx.Client(base_url=sendfile_gk.url) as http:
        digest = push_blob(http, "sf/owner", os.urandom(1000))
        resp = http.get(f"/v2/sf/stranger/blobs/{digest}")
    assert resp.status_code == 404
    assert resp.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_missing_storage_falls_back_to_streaming(registry: Registry, tmp_path: Path) -> None:
    empty_root = tmp_path / "not-the-registry"
    empty_root.mkdir()
    gk = make_gatekeeper(tmp_path / "gk", registry.url, storage_root=empty_root)
    try:
        with httpx.Client(base_url=gk.url) as http:
            data = os.urandom(200_000)
            digest = push_blob(http, "sf/fallback", data)
            resp = http.get(f"/v2/sf/fallback/blobs/{digest}")
        assert resp.status_code == 200 and resp.content == data
        (row,) = gk.wait_audit(1, "action = 'blob.pull'")
        assert not row["decision"].endswith(":sendfile") and row["bytes_out"] == len(data)
    finally:
        gk.stop()
