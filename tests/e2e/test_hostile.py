"""Hostile input through a real gatekeeper and a real registry: each case gets a specific 4xx
envelope, and afterwards the registry holds exactly what it held before.

The baseline is one image tagged ``hostile/base:v1``; every manifest case tries to overwrite
that tag, and :func:`snapshot` (tag target, tag list, catalog) must not move. Hostile Host
headers, slow clients, upload hijacking, hidden names in listings, the token key at rest and
the spec corners (issue 13) are catalogued in ``test_hostile_edges.py``.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.fixtures import raw_request
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    digest_of,
    image_config,
    push_blob,
    push_image,
)
from tests.support.rawhttp import read_error_answer, send_raw
from tests.support.registry import make_registry

pytestmark = pytest.mark.e2e

REPO = "hostile/base"
BODY_TIMEOUT = 1.0
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Snapshot:
    """What a refused request must leave untouched."""

    tag_digest: str
    tags: tuple[str, ...]
    catalog: tuple[str, ...]


@dataclass
class Site:
    gk: Gatekeeper
    before: Snapshot
    config: bytes
    layer: bytes


def snapshot(http: httpx.Client) -> Snapshot:
    head = http.head(f"/v2/{REPO}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    tags = http.get(f"/v2/{REPO}/tags/list").json()["tags"]
    catalog = http.get("/v2/_catalog").json()["repositories"]
    return Snapshot(head.headers["Docker-Content-Digest"], tuple(tags), tuple(catalog))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    reg = make_registry(tmp_path_factory.mktemp("registry"))
    gk = make_gatekeeper(
        tmp_path_factory.mktemp("gatekeeper"),
        reg.url,
        extra_env={"GATEKEEPER_CLIENT_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT)},
    )
    layer = b"layer-bytes"
    config = image_config(layers=1)
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        push_image(http, REPO, "v1", [layer], config)
        before = snapshot(http)
    yield Site(gk, before, config, layer)
    gk.stop()
    reg.stop()


def assert_envelope(resp: httpx.Response, status: int, *codes: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"errors"} and len(body["errors"]) == 1
    error: dict[str, Any] = body["errors"][0]
    # The registry's own envelopes (relayed untouched) may leave out "detail".
    assert {"code", "message"} <= set(error) <= {"code", "message", "detail"}
    assert error["code"] in codes, error
    return error


# Repositories the upload tests create on purpose; no other may appear in the catalog.
LEGITIMATE = frozenset({"hostile/a", "hostile/chunks", "hostile/slow", "hostile/steady"})


def assert_unchanged(site: Site) -> None:
    """The baseline tag is intact and no repository but the legitimate ones appeared."""
    with httpx.Client(base_url=site.gk.url, timeout=30) as http:
        now = snapshot(http)
        assert (now.tag_digest, now.tags) == (site.before.tag_digest, site.before.tags)
        assert set(now.catalog) - set(site.before.catalog) <= LEGITIMATE
        assert http.get("/healthz").status_code == 200


def _manifest(config: bytes, layers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": layers,
        **extra,
    }


def _layer(**override: Any) -> dict[str, Any]:
    return {**descriptor(OCI_LAYER, b"layer-bytes"), **override}


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth):
        doc = {"a": doc}
    return doc


# (id, body builder given the config bytes, Content-Type, status, code)
MANIFEST_CASES: list[tuple[str, Any, str, int, str]] = [
    ("not-json", lambda c: b"\xff\xfe{", OCI_MANIFEST, 400, "MANIFEST_INVALID"),
    ("empty", lambda c: b"", OCI_MANIFEST, 400, "MANIFEST_INVALID"),
    ("deep-array", lambda c: b"[" * 50_000 + b"]" * 50_000, OCI_MANIFEST, 400, "MANIFEST_INVALID"),
    (
        "deep-annotations",
        lambda c: (
            json.dumps(_manifest(c, [_layer()]), default=str)[:-1].encode()
            + b', "annotations": '
            + b'{"a":' * 50_000
            + b"1"
            + b"}" * 50_001
        ),
        OCI_MANIFEST,
        400,
        "MANIFEST_INVALID",
    ),
    (
        "nested-annotation-value",
        lambda c: json.dumps(_manifest(c, [_layer()], annotations=_nested(50))).encode(),
        OCI_MANIFEST,
        400,
        "MANIFEST_INVALID",
    ),
    (
        # Below Python's recursion limit, so it used to parse, be accepted and forwarded.
        "deep-unknown-field",
        lambda c: json.dumps(_manifest(c, [_layer()], extra=_nested(100))).encode(),
        OCI_MANIFEST,
        400,
        "MANIFEST_INVALID",
    ),
    (
        "oversized",
        lambda c: json.dumps(_manifest(c, [_layer()], pad="x" * (5 * 1024 * 1024))).encode(),
        OCI_MANIFEST,
        413,
        "MANIFEST_INVALID",
    ),
    (
        "too-many-layers",
        lambda c: json.dumps(_manifest(c, [_layer()] * 10_001)).encode(),
        OCI_MANIFEST,
        400,
        "MANIFEST_INVALID",
    ),
    (
        "content-type-json",
        lambda c: json.dumps(_manifest(c, [_layer()])).encode(),
        "application/json",
        400,
        "MANIFEST_INVALID",
    ),
    (
        "content-type-mismatch",
        lambda c: json.dumps(_manifest(c, [_layer()])).encode(),
        DOCKER_MANIFEST,
        400,
        "MANIFEST_INVALID",
    ),
    (
        "unknown-media-type",
        lambda c: json.dumps(_manifest(c, [_layer()], mediaType="text/plain")).encode(),
        "text/plain",
        400,
        "MANIFEST_INVALID",
    ),
    (
        "layer-md5",
        lambda c: json.dumps(_manifest(c, [_layer(digest="md5:" + "a" * 32)])).encode(),
        OCI_MANIFEST,
        400,
        "MANIFEST_INVALID",
    ),
    (
        "layer-short-sha256",
        lambda c: json.dumps(_manifest(c, [_layer(digest="sha256:" + "a" * 63)])).encode(),
        OCI_MANIFEST,
        400,
        "MANIFEST_INVALID",
    ),
    (
        "layer-sha512-with-sha256-length",
        lambda c: json.dumps(_manifest(c, [_layer(digest="sha512:" + "a" * 64)])).encode(),
        OCI_MANIFEST,
        400,
        "MANIFEST_INVALID",
    ),
    (
        "layer-negative-size",
        lambda c: json.dumps(_manifest(c, [_layer(size=-1)])).encode(),
        OCI_MANIFEST,
        400,
        "MANIFEST_INVALID",
    ),
    (
        "layer-huge-size",
        lambda c: json.dumps(_manifest(c, [_layer(size=10**400)])).encode(),
        OCI_MANIFEST,
        400,
        "MANIFEST_INVALID",
    ),
    (
        "layer-unknown",
        lambda c: json.dumps(_manifest(c, [descriptor(OCI_LAYER, b"never pushed")])).encode(),
        OCI_MANIFEST,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [case[1:] for case in MANIFEST_CASES],
    ids=[case[0] for case in MANIFEST_CASES],
)
def test_hostile_manifest_leaves_the_tag_alone(
    site: Site, body: Any, content_type: str, status: int, code: str
) -> None:
    with httpx.Client(base_url=site.gk.url, timeout=30) as http:
        resp = http.put(
            f"/v2/{REPO}/manifests/v1",
            content=body(site.config),
            headers={"Content-Type": content_type},
        )
    assert_envelope(resp, status, code)
    assert_unchanged(site)


RAW_CASES = [
    # Digests of the wrong algorithm or length, by path and by query.
    ("GET", f"/v2/{REPO}/blobs/sha512:" + "a" * 64, 400, "DIGEST_INVALID"),
    ("GET", f"/v2/{REPO}/blobs/sha256:" + "a" * 128, 400, "DIGEST_INVALID"),
    ("GET", f"/v2/{REPO}/blobs/sha1:" + "a" * 40, 400, "DIGEST_INVALID"),
    ("DELETE", f"/v2/{REPO}/manifests/sha256:" + "g" * 64, 400, "DIGEST_INVALID"),
    ("POST", f"/v2/{REPO}/blobs/uploads/?digest=sha256:abc", 400, "DIGEST_INVALID"),
    # Pagination: negative, huge, non-ASCII digits (str.isdigit() says yes, int() says no).
    ("GET", f"/v2/{REPO}/tags/list?n=-1", 400, "PAGINATION_NUMBER_INVALID"),
    ("GET", f"/v2/{REPO}/tags/list?n=" + "9" * 40, 400, "PAGINATION_NUMBER_INVALID"),
    ("GET", f"/v2/{REPO}/tags/list?n=%C2%B2", 400, "PAGINATION_NUMBER_INVALID"),
    ("GET", f"/v2/{REPO}/tags/list?n=%EF%BC%95", 400, "PAGINATION_NUMBER_INVALID"),
    ("GET", "/v2/_catalog?n=-5", 400, "PAGINATION_NUMBER_INVALID"),
    ("GET", "/v2/_catalog?n=1e3", 400, "PAGINATION_NUMBER_INVALID"),
    ("GET", "/v2/_catalog?n=%C2%B2", 400, "PAGINATION_NUMBER_INVALID"),
    ("GET", f"/v2/{REPO}/tags/list?last=v1%0d%0aX-Injected:%201", 400, "PAGINATION_NUMBER_INVALID"),
    # Header injection in references.
    # (a reference with ':' is read as a digest, so the header-like one is DIGEST_INVALID)
    ("GET", f"/v2/{REPO}/manifests/v1%0d%0aX-Injected:%201", 400, "DIGEST_INVALID"),
    ("GET", f"/v2/{REPO}/manifests/v1%0d%0a%0d%0a<html>", 400, "TAG_INVALID"),
    ("PUT", f"/v2/{REPO}/manifests/v1%0aX-Injected:%201", 400, "DIGEST_INVALID"),
    ("PUT", f"/v2/{REPO}/manifests/v1%0aX-Injected", 400, "TAG_INVALID"),
    ("GET", f"/v2/{REPO}/manifests/v1%00", 400, "TAG_INVALID"),
    ("GET", f"/v2/{REPO}/blobs/sha256:{'a' * 64}%0d%0aX-Injected:%201", 400, "DIGEST_INVALID"),
    (
        "POST",
        f"/v2/{REPO}/blobs/uploads/?mount=sha256:{'a' * 64}&from=x%0d%0aY:1",
        400,
        "NAME_INVALID",
    ),
    ("PATCH", f"/v2/{REPO}/blobs/uploads/abc%0d%0aX-Injected:%201", 404, "BLOB_UPLOAD_UNKNOWN"),
    # Path tricks in names.
    ("GET", "/v2/hostile/./base/manifests/v1", 400, "NAME_INVALID"),
    ("GET", "/v2/hostile/%2E%2E/base/manifests/v1", 400, "NAME_INVALID"),
    ("GET", "/v2/hostile%5cbase/manifests/v1", 400, "NAME_INVALID"),
    ("GET", "/v2/hostile//base/manifests/v1", 400, "NAME_INVALID"),
    ("GET", "/v2/hostile/base%00/manifests/v1", 400, "NAME_INVALID"),
    ("GET", "/v2/hostile/b%C3%A4se/manifests/v1", 400, "NAME_INVALID"),
    ("GET", "/v2/hostile/base%252e/manifests/v1", 400, "NAME_INVALID"),
    ("PUT", "/v2/hostile/../../x/manifests/v1", 400, "NAME_INVALID"),
]


@pytest.mark.parametrize(("method", "path", "status", "code"), RAW_CASES)
def test_hostile_request_line(site: Site, method: str, path: str, status: int, code: str) -> None:
    resp = raw_request(site.gk.port, method, path, b"{}" if method in ("PUT", "PATCH") else None)
    assert "x-injected" not in resp.headers and "y" not in resp.headers
    assert resp.status == status, resp.body
    error = json.loads(resp.body)["errors"][0]
    assert error["code"] == code and set(error) == {"code", "message", "detail"}
    assert_unchanged(site)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", 431),
        (b"GET /v2/" + b"a" * 100_000 + b"/manifests/v1 HTTP/1.1\r\nHost: x\r\n\r\n", 431),
        (b"GET /v2/ HTTP/1.1\r\nHost: x\r\n" + b"X-Many: 1\r\n" * 20_000 + b"\r\n", 431),
        # aiohttp reads this as an HTTP/0.9-style GET with a header "X: 1 HTTP/1.1"; the
        # gatekeeper refuses HTTP/0.9 (proxy/app.py) rather than serve it.
        (b"GET /v2/hostile/base/manifests/v1\r\nX: 1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /v2/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
    ],
    ids=["huge-header", "huge-request-line", "many-headers", "crlf-in-request-line", "garbage"],
)
def test_hostile_headers_get_an_envelope_not_a_crash(
    site: Site, request_bytes: bytes, status: int
) -> None:
    """aiohttp's parser refuses most of these before any handler runs; proxy/server.py answers
    with the envelope (tests/e2e/test_hostile_more.py checks their access-log rows)."""
    answer = send_raw(site.gk.port, request_bytes)
    assert answer.status == status, answer.raw[:300]
    assert b"\r\nX: 1" not in answer.head
    error = json.loads(answer.body)["errors"][0]
    assert error["code"] == "UNSUPPORTED" and set(error) == {"code", "message", "detail"}
    assert b"aaaaaaaaaa" not in answer.body
    assert_unchanged(site)


def _start_upload(http: httpx.Client, repo: str) -> str:
    start = http.post(f"/v2/{repo}/blobs/uploads/")
    assert start.status_code == 202, start.text
    return str(start.headers["Location"])


def test_upload_session_from_another_repository_is_refused(site: Site) -> None:
    data = b"cross-repository"
    with httpx.Client(base_url=site.gk.url, timeout=30) as http:
        location = _start_upload(http, "hostile/a")
        stolen = location.replace("/v2/hostile/a/", "/v2/hostile/b/")
        assert stolen != location
        sep = "&" if "?" in stolen else "?"
        patch = http.patch(
            stolen, content=data, headers={"Content-Type": "application/octet-stream"}
        )
        assert_envelope(patch, patch.status_code, "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN")
        assert 400 <= patch.status_code < 500
        put = http.put(f"{stolen}{sep}digest={digest_of(data)}", content=data)
        assert_envelope(put, put.status_code, "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN")
        assert 400 <= put.status_code < 500
        assert http.head(f"/v2/hostile/b/blobs/{digest_of(data)}").status_code == 404
        # The session still belongs to repository a and still works there.
        sep = "&" if "?" in location else "?"
        done = http.put(f"{location}{sep}digest={digest_of(data)}", content=data)
        assert done.status_code == 201, done.text
        assert http.head(f"/v2/hostile/a/blobs/{digest_of(data)}").status_code == 200
    assert_unchanged(site)


def _patch(http: httpx.Client, location: str, data: bytes, start: int) -> httpx.Response:
    return http.patch(
        location,
        content=data,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(data) - 1}",
        },
    )


def test_overlapping_and_out_of_order_chunks(site: Site) -> None:
    data = bytes(range(30))
    with httpx.Client(base_url=site.gk.url, timeout=30) as http:
        location = _start_upload(http, "hostile/chunks")
        first = _patch(http, location, data[:10], 0)
        assert first.status_code == 202, first.text
        location = first.headers["Location"]
        for start, chunk in ((5, data[5:15]), (20, data[20:30]), (0, data[:10])):
            bad = _patch(http, location, chunk, start)
            error = assert_envelope(bad, 416, "RANGE_INVALID")
            assert error["detail"]["upload_range"] == "0-9", error
        # Malformed ranges (the registry would ignore them and append) and the HTTP form.
        for content_range in ("bytes 5-14/30", "19-10", "10-", "-1-5", "10-19, 20-29"):
            odd = http.patch(
                location, content=data[10:20], headers={"Content-Range": content_range}
            )
            assert_envelope(odd, 416, "RANGE_INVALID")
        # The session is still consistent: it holds exactly the first chunk.
        status = http.get(location)
        assert status.status_code == 204 and status.headers["Range"] == "0-9"
        rest = _patch(http, location, data[10:], 10)
        assert rest.status_code == 202, rest.text
        location = rest.headers["Location"]
        sep = "&" if "?" in location else "?"
        done = http.put(f"{location}{sep}digest={digest_of(data)}")
        assert done.status_code == 201, done.text
        assert http.get(f"/v2/hostile/chunks/blobs/{digest_of(data)}").content == data
    assert_unchanged(site)


def test_slowloris_upload_times_out_with_408(site: Site) -> None:
    with httpx.Client(base_url=site.gk.url, timeout=30) as http:
        location = httpx.URL(_start_upload(http, "hostile/slow"))
    target = location.raw_path.decode()
    head = (
        f"PATCH {target} HTTP/1.1\r\nHost: {site.gk.host}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", site.gk.port), timeout=15) as sock:
        sock.sendall(head + b"x" * 10)
        answer = read_error_answer(sock)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 8
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["errors"][0]
    assert error["code"] == "BLOB_UPLOAD_INVALID"
    assert "stalled" in error["message"]
    rows = site.gk.wait_audit(1, "repository = 'hostile/slow' AND action = 'upload.chunk'")
    assert [r["status"] for r in rows] == [408]
    with httpx.Client(base_url=site.gk.url, timeout=30) as http:
        push_blob(http, "hostile/slow", b"after the stall")
    assert_unchanged(site)


def test_a_slow_but_steady_upload_is_not_cut_off(site: Site) -> None:
    data = b"y" * 40

    def trickle() -> Iterator[bytes]:
        for i in range(0, len(data), 10):
            time.sleep(BODY_TIMEOUT / 2)
            yield data[i : i + 10]

    with httpx.Client(base_url=site.gk.url, timeout=30) as http:
        location = _start_upload(http, "hostile/steady")
        sep = "&" if "?" in location else "?"
        done = http.put(f"{location}{sep}digest={digest_of(data)}", content=trickle())
        assert done.status_code == 201, done.text
