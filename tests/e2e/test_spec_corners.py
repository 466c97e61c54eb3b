"""Corners of the Distribution spec through a real gatekeeper and registry (issue 13): each
answers as the spec says, with an OCI envelope for a refusal and an access-log row for every
request.

- the referrers list has the bare index media type as its ``Content-Type``;
- an out-of-order final chunk on the closing ``PUT`` is a 416, like on ``PATCH``;
- the 416 of an empty upload names byte 0 as the next one;
- an unsatisfiable ``Range`` on a blob GET is a clean 416 with ``Content-Range: bytes */<size>``,
  on the streamed path and the sendfile path alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import (
    OCI_EMPTY,
    OCI_MANIFEST,
    descriptor,
    digest_of,
    push_blob,
    push_image,
)
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def sendfile_gk(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gatekeeper]:
    """A second gatekeeper in front of the same registry, serving blobs with sendfile."""
    gk = make_gatekeeper(
        tmp_path_factory.mktemp("sendfile"), registry.url, storage_root=registry.storage_root
    )
    yield gk
    gk.stop()


def envelope(resp: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    (error,) = resp.json()["errors"]
    assert error["code"] == code, error
    return dict(error)


def row_of(gk: Gatekeeper, resp: httpx.Response) -> dict[str, object]:
    (row,) = gk.wait_audit(1, "request_id = :id", {"id": resp.headers["X-Request-Id"]})
    return row


def test_referrers_answer_with_the_bare_index_media_type(gatekeeper: Gatekeeper) -> None:
    with httpx.Client(base_url=gatekeeper.url, timeout=30) as http:
        subject, manifest = push_image(http, "corners/refs", "v1", [os.urandom(100)])
        push_blob(http, "corners/refs", b"{}")
        note = b"a note"
        push_blob(http, "corners/refs", note)
        artifact = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.note",
            "config": descriptor(OCI_EMPTY, b"{}"),
            "layers": [descriptor("text/plain", note)],
            "subject": descriptor(OCI_MANIFEST, manifest),
        }
        put = http.put(
            "/v2/corners/refs/manifests/note",
            content=json.dumps(artifact).encode(),
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert put.status_code == 201, put.text
        listed = http.get(f"/v2/corners/refs/referrers/{subject}")
    assert listed.status_code == 200
    assert listed.headers["Content-Type"] == OCI_INDEX
    assert [m["digest"] for m in listed.json()["manifests"]] == [
        put.headers["Docker-Content-Digest"]
    ]
    assert row_of(gatekeeper, listed)["action"] == "referrers.list"


def _location(resp: httpx.Response) -> str:
    assert resp.status_code in (201, 202), resp.text
    return str(resp.headers["Location"])


def _sep(location: str) -> str:
    return "&" if "?" in location else "?"


def test_an_out_of_order_final_chunk_on_the_closing_put_is_a_416(gatekeeper: Gatekeeper) -> None:
    data = os.urandom(30)
    with httpx.Client(base_url=gatekeeper.url, timeout=30) as http:
        location = _location(http.post("/v2/corners/close/blobs/uploads/"))
        first = http.patch(
            location,
            content=data[:10],
            headers={"Content-Type": "application/octet-stream", "Content-Range": "0-9"},
        )
        location = _location(first)
        closing = f"{location}{_sep(location)}digest={digest_of(data)}"
        for start in (5, 20, 0):
            chunk = data[start : start + 10]
            bad = http.put(
                closing,
                content=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{start + len(chunk) - 1}",
                },
            )
            error = envelope(bad, 416, "RANGE_INVALID")
            assert "the next byte of the upload is 10" in str(error["message"])
            row = row_of(gatekeeper, bad)
            assert (row["action"], row["status"], row["error_code"]) == (
                "blob.push",
                416,
                "RANGE_INVALID",
            )
            assert row["upstream_status"] is None or row["upstream_status"] == 204
        # The session holds the first chunk only, and closes with the right one.
        assert http.get(location).headers["Range"] == "0-9"
        done = http.put(
            closing,
            content=data[10:],
            headers={"Content-Type": "application/octet-stream", "Content-Range": "10-29"},
        )
        assert done.status_code == 201, done.text
        assert http.get(f"/v2/corners/close/blobs/{digest_of(data)}").content == data


def test_the_416_of_an_empty_upload_names_byte_zero(gatekeeper: Gatekeeper) -> None:
    with httpx.Client(base_url=gatekeeper.url, timeout=30) as http:
        location = _location(http.post("/v2/corners/empty/blobs/uploads/"))
        bad = http.patch(
            location,
            content=b"x",
            headers={"Content-Type": "application/octet-stream", "Content-Range": "1-1"},
        )
        error = envelope(bad, 416, "RANGE_INVALID")
        assert str(error["message"]).endswith("the next byte of the upload is 0")
        assert isinstance(error["detail"], dict) and error["detail"]["next_byte"] == 0
        assert row_of(gatekeeper, bad)["status"] == 416
        # One byte in, the next is 1: a chunk starting at 0 again is refused, at 1 accepted.
        one = http.patch(
            location,
            content=b"x",
            headers={"Content-Type": "application/octet-stream", "Content-Range": "0-0"},
        )
        location = _location(one)
        again = http.patch(location, content=b"y", headers={"Content-Range": "0-0"})
        assert str(envelope(again, 416, "RANGE_INVALID")["message"]).endswith("is 1")
        more = http.patch(location, content=b"y", headers={"Content-Range": "1-1"})
        location = _location(more)
        done = http.put(f"{location}{_sep(location)}digest={digest_of(b'xy')}")
        assert done.status_code == 201, done.text


UNSATISFIABLE = ["bytes=500-0", "bytes=5000-10000", "bytes=2048-", "bytes=-0", "bytes=abc"]


@pytest.mark.parametrize("wanted", UNSATISFIABLE)
@pytest.mark.parametrize("path", ["streamed", "sendfile"])
def test_an_unsatisfiable_range_is_a_clean_416_on_both_paths(
    gatekeeper: Gatekeeper, sendfile_gk: Gatekeeper, path: str, wanted: str
) -> None:
    gk = gatekeeper if path == "streamed" else sendfile_gk
    data = os.urandom(2048)
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        digest = push_blob(http, "corners/ranges", data)
        resp = http.get(f"/v2/corners/ranges/blobs/{digest}", headers={"Range": wanted})
        error = envelope(resp, 416, "RANGE_INVALID")
        assert resp.headers["Content-Range"] == "bytes */2048"
        assert int(resp.headers["Content-Length"]) == len(resp.content)
        assert error["detail"] == {"range": wanted, "size": 2048}
        row = row_of(gk, resp)
        assert (row["action"], row["status"], row["error_code"]) == (
            "blob.pull",
            416,
            "RANGE_INVALID",
        )
        # A satisfiable range still works on the same path.
        part = http.get(f"/v2/corners/ranges/blobs/{digest}", headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == data[100:200]
        assert part.headers["Content-Range"] == "bytes 100-199/2048"
