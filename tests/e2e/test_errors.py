"""Failures a client must see as clear OCI error envelopes, never tracebacks or hangs."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.audited import assert_one_row_each, audited_client
from tests.support.fixtures import Tripwire, raw_request, tripwire_gatekeeper
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import OCI_MANIFEST, digest_of, push_blob
from tests.support.registry import Registry, make_registry

pytestmark = pytest.mark.e2e


def error_code(resp: httpx.Response) -> str:
    return str(resp.json()["errors"][0]["code"])


@pytest.fixture(scope="module")
def tripwire_gk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gatekeeper, Tripwire]]:
    with tripwire_gatekeeper(tmp_path_factory.mktemp("tripwire")) as started:
        yield started


BAD_REQUESTS = [
    ("GET", "/v2/UPPER/manifests/latest", 400, "NAME_INVALID"),
    ("GET", "/v2/a..b/manifests/latest", 400, "NAME_INVALID"),
    ("GET", "/v2/-lead/manifests/latest", 400, "NAME_INVALID"),
    ("GET", "/v2/a/../b/manifests/latest", 400, "NAME_INVALID"),
    ("GET", "/v2/a%2Fb/manifests/latest", 400, "NAME_INVALID"),
    ("GET", "/v2/a/%2e%2e/b/manifests/latest", 400, "NAME_INVALID"),
    ("GET", "/v2/" + "a" * 256 + "/manifests/latest", 400, "NAME_INVALID"),
    ("GET", "/v2/ok/manifests/.hidden", 400, "TAG_INVALID"),
    ("GET", "/v2/ok/manifests/sha256:abc", 400, "DIGEST_INVALID"),
    ("GET", "/v2/ok/manifests/md5:" + "a" * 32, 400, "DIGEST_INVALID"),
    ("GET", "/v2/ok/blobs/sha256:" + "A" * 64, 400, "DIGEST_INVALID"),
    ("GET", "/v2/ok/blobs/sha256:" + "a" * 63, 400, "DIGEST_INVALID"),
    ("POST", "/v2/ok/blobs/uploads/?mount=nope&from=src", 400, "DIGEST_INVALID"),
    ("POST", "/v2/ok/blobs/uploads/?mount=sha256:" + "a" * 64 + "&from=Bad", 400, "NAME_INVALID"),
    ("PATCH", "/v2/ok/blobs/uploads/bad%20id", 404, "BLOB_UPLOAD_UNKNOWN"),
    ("GET", "/v2/ok/tags/list?n=abc", 400, "PAGINATION_NUMBER_INVALID"),
    ("GET", "/v2/ok/tags/list?n=99999999", 400, "PAGINATION_NUMBER_INVALID"),
    ("GET", "/v2/ok/referrers/latest", 400, "DIGEST_INVALID"),
    ("GET", "/v2/ok/nothing-here", 404, "NOT_FOUND"),
    ("POST", "/v2/ok/manifests/latest", 405, "UNSUPPORTED"),
]


@pytest.mark.parametrize(("method", "path", "status", "code"), BAD_REQUESTS)
def test_bad_input_is_refused_before_the_upstream(
    tripwire_gk: tuple[Gatekeeper, Tripwire], method: str, path: str, status: int, code: str
) -> None:
    gk, wire = tripwire_gk
    resp = raw_request(gk.port, method, path)
    body = json.loads(resp.body)
    assert resp.status == status, body
    assert body["errors"][0]["code"] == code
    assert set(body["errors"][0]) == {"code", "message", "detail"}
    assert wire.connections == 0, "invalid input must never reach the upstream"
    rows = gk.wait_audit(1, "request_id = :id", {"id": resp.headers["x-request-id"]})
    assert len(rows) == 1 and rows[0]["status"] == status and rows[0]["error_code"] == code


def test_unknown_manifest_is_manifest_unknown(gatekeeper: Gatekeeper) -> None:
    http, recorder = audited_client(gatekeeper)
    with http:
        resp = http.get("/v2/nobody/manifests/latest")
        head = http.head("/v2/nobody/manifests/latest")
    assert resp.status_code == 404
    assert error_code(resp) == "MANIFEST_UNKNOWN"
    assert head.status_code == 404
    rows = assert_one_row_each(gatekeeper, recorder)
    assert [r["action"] for r in rows] == ["manifest.pull", "manifest.head"]


def test_oversized_manifest_is_refused(gatekeeper: Gatekeeper) -> None:
    http = httpx.Client(base_url=gatekeeper.url, timeout=30)
    filler = "x" * (5 * 1024 * 1024)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "pad": filler}).encode()
    with http:
        resp = http.put(
            "/v2/big/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert resp.status_code == 413
        assert error_code(resp) == "MANIFEST_INVALID"
        # The same without a Content-Length (chunked) is cut off at the limit too.
        chunked = http.put(
            "/v2/big/manifests/v1",
            content=iter([body[:1_000_000], body[1_000_000:]]),
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert chunked.status_code == 413
        assert http.get("/v2/big/manifests/v1").status_code == 404
    rows = gatekeeper.wait_audit(3, "repository = 'big'")
    assert [r["status"] for r in rows] == [413, 413, 404]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"schemaVersion": 1}',
        json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}}).encode(),
        json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.example+json", "layers": []}
        ).encode(),
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["not-json", "array", "schema1", "bad-config", "unknown-type", "deep-nesting"],
)
def test_malformed_manifests_are_refused(gatekeeper: Gatekeeper, body: bytes) -> None:
    with httpx.Client(base_url=gatekeeper.url) as http:
        resp = http.put(
            "/v2/malformed/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert resp.status_code == 400
        assert error_code(resp) == "MANIFEST_INVALID"
        assert http.get("/v2/malformed/manifests/v1").status_code == 404


def test_manifest_with_missing_blobs_is_the_upstreams_error(gatekeeper: Gatekeeper) -> None:
    config, layer = b"{}", os.urandom(10)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(config),
                "size": 2,
            },
            "layers": [],
        }
    ).encode()
    with httpx.Client(base_url=gatekeeper.url) as http:
        del layer
        resp = http.put(
            "/v2/missing/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
    assert resp.status_code == 400
    assert error_code(resp) == "MANIFEST_BLOB_UNKNOWN"


def test_upstream_down_is_a_clear_unavailable(tmp_path: Path) -> None:
    reg = make_registry(tmp_path / "reg")
    gk = make_gatekeeper(tmp_path / "gk", reg.url)
    try:
        with httpx.Client(base_url=gk.url, timeout=30) as http:
            assert http.get("/v2/").status_code == 200
            reg.stop()
            for method, path in (
                ("GET", "/v2/"),
                ("GET", "/v2/down/manifests/latest"),
                ("GET", "/v2/down/blobs/sha256:" + "b" * 64),
                ("POST", "/v2/down/blobs/uploads/"),
            ):
                resp = http.request(method, path)
                assert resp.status_code in (502, 503), (method, path, resp.text)
                assert error_code(resp) == "UNAVAILABLE"
                assert "upstream" in resp.json()["errors"][0]["message"]
            ready = http.get("/readyz")
            assert ready.status_code == 503
            reg.start()
            assert http.get("/v2/").status_code == 200
            assert http.get("/readyz").status_code == 200
    finally:
        gk.stop()
        reg.stop()


def test_client_abort_mid_patch_keeps_the_proxy_serving(gatekeeper: Gatekeeper) -> None:
    with httpx.Client(base_url=gatekeeper.url) as http:
        start = http.post("/v2/aborted/blobs/uploads/")
        location = httpx.URL(start.headers["Location"])
    sock = socket.create_connection(("127.0.0.1", gatekeeper.port))
    target = location.raw_path.decode()
    sock.sendall(
        (
            f"PATCH {target} HTTP/1.1\r\nHost: {gatekeeper.host}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n"
        ).encode()
        + os.urandom(1_000_000)
    )
    time.sleep(0.3)
    sock.close()
    with httpx.Client(base_url=gatekeeper.url) as http:
        assert http.get("/v2/").status_code == 200
        data = os.urandom(1000)
        digest = push_blob(http, "aborted", data)
        assert http.get(f"/v2/aborted/blobs/{digest}").content == data
    rows = gatekeeper.wait_audit(1, "repository = 'aborted' AND action = 'upload.chunk'")
    assert len(rows) == 1
    assert rows[0]["status"] == 499
    assert 0 < rows[0]["bytes_in"] <= 1_000_000


def test_registry_fixture_is_separate(registry: Registry) -> None:
    # Guards the suite's isolation: the module registry is not the one stopped above.
    assert httpx.get(f"{registry.url}/v2/").status_code == 200
