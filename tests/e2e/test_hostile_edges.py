"""The edges of issue 13, tried as an attacker through a real gatekeeper and registry.

:data:`CATALOGUE` lists every case of the issue with what the attacker (or a conformance test)
tries and the test that shows the answer: most are below, the spec corners are in
``test_spec_corners.py``, the ways out of the gate in ``test_bypass.py`` (with the quarantine
bypass catalogue), the token key at rest in ``test_token_keys.py``.
:func:`test_the_catalogue_names_a_test_for_every_case` keeps the list and the tests in step.
Every refusal is an OCI error envelope and has its access-log row.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import importlib
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.clients import Skopeo
from tests.support.fixtures import RawResponse
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.images import OciLayout, build_image
from tests.support.ocihttp import digest_of, push_blob, push_image
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

CATALOGUE: list[tuple[str, str]] = [
    (
        "another identity appends to, closes, reads or cancels an upload session it did not "
        "open, given its Location",
        "test_an_upload_session_belongs_to_the_identity_that_opened_it",
    ),
    (
        "another anonymous client address uses an anonymous upload session",
        "test_an_anonymous_upload_session_belongs_to_its_address",
    ),
    (
        'Host: evil.example"/,x="y (and other hosts that are not host[:port]) is copied into '
        "the WWW-Authenticate realm and into Location headers",
        "test_a_host_that_is_not_host_port_is_refused",
    ),
    (
        "a valid Host is what the challenge realm and Location use, escaped; with public_url "
        "set the Host is not used at all",
        "test_a_valid_host_or_public_url_names_the_urls_handed_out",
    ),
    (
        "the gatekeeper listens beyond loopback without public_url: start-up says so",
        "test_start_up_warns_when_public_url_is_unset_off_loopback",
    ),
    (
        "the 401 challenge for a cross-repository mount names only the target's scope, so a "
        "client that follows challenges never gets a token that may pull the source",
        "test_a_mount_challenge_names_both_scopes_and_a_challenge_follower_mounts",
    ),
    (
        "a token lacking pull on the source: 401 insufficient_scope naming both scopes when "
        "the identity may pull it, else a plain upload that tells nothing about the source",
        "test_a_mount_with_a_token_lacking_the_source_scope",
    ),
    (
        "skopeo copy between two repositories of the gatekeeper under token auth uploads "
        "every layer again instead of mounting it",
        "test_skopeo_copy_between_repositories_mounts_under_token_auth",
    ),
    (
        "connections that send half a request line (or nothing, or half of a kept-alive "
        "connection's next request) and stop stay open indefinitely",
        "test_slow_request_headers_time_out_while_others_are_served",
    ),
    (
        "one address opens more connections than its share",
        "test_connections_beyond_the_per_address_cap_are_refused",
    ),
    (
        "addresses together open more connections than the gatekeeper holds",
        "test_connections_beyond_the_total_cap_are_refused_until_some_close",
    ),
    (
        "the catalog's Link header names a repository the caller may not see "
        "(_catalog?n=1 as a user who may see nothing); tag pages likewise",
        "test_catalog_pages_and_links_name_only_visible_repositories",
    ),
    (
        "an upload session used in another repository than the one it was opened in",
        "test_hostile.py::test_upload_session_from_another_repository_is_refused",
    ),
    (
        "a chunk streaming longer than the idle timeout loses the session it belongs to",
        "test_hostile_more.py::test_a_chunk_streaming_past_the_idle_timeout_keeps_its_session",
    ),
    (
        "the token signing key read from the database file, its WAL or a pg_dump "
        "(and rotated: both keys searched)",
        "test_token_keys.py::test_the_stored_key_is_sealed_and_the_database_holds_no_private_key",
    ),
    ("the same, from a pg_dump", "test_token_keys.py::test_a_pg_dump_holds_no_private_key"),
    (
        "replicas share the key; a rotation keeps earlier tokens valid until they expire",
        "test_token_keys.py::test_replicas_share_the_key_and_a_rotation_overlaps",
    ),
    (
        "the key kept unsafely: no key-encryption key (no plaintext fallback), a key file or a "
        "key-encryption-key file others may read, another replica's key-encryption key",
        "test_token_keys.py::test_no_plaintext_fallback_and_unsafe_key_files_are_refused",
    ),
    (
        "forged tokens: no kid, an unknown kid, another key under the gatekeeper's kid",
        "test_auth.py::test_forged_tokens_are_rejected",
    ),
    (
        "the referrers list's Content-Type carries '; charset=utf-8'",
        "test_spec_corners.py::test_referrers_answer_with_the_bare_index_media_type",
    ),
    (
        "an out-of-order final chunk on the closing PUT reaches the registry (400, not 416)",
        "test_spec_corners.py::test_an_out_of_order_final_chunk_on_the_closing_put_is_a_416",
    ),
    (
        "the 416 of an empty upload says the next byte is 1",
        "test_spec_corners.py::test_the_416_of_an_empty_upload_names_byte_zero",
    ),
    (
        "an unsatisfiable Range on the streamed blob path (500-0, 5000-10000 of 2048 bytes) "
        "becomes the registry's broken 416 and a 502",
        "test_spec_corners.py::test_an_unsatisfiable_range_is_a_clean_416_on_both_paths",
    ),
    (
        "a blob GET of a digest the repository does not hold is 403 (and, for a digest held "
        "elsewhere, tells that it is quarantined) instead of 404 BLOB_UNKNOWN",
        "test_bypass.py::test_a_digest_the_repository_does_not_hold_is_blob_unknown",
    ),
    (
        "a pusher reads back a blob it just uploaded (before its manifest): 403; a pull-only "
        "identity reads it",
        "test_bypass.py::test_a_fresh_upload_is_read_back_by_a_pusher_only",
    ),
    (
        "read-back as a way out: a quarantined layer uploaded again into a fresh repository, "
        "a held layer copied",
        "test_bypass.py::test_read_back_never_returns_a_quarantined_or_held_layer",
    ),
]


def test_the_catalogue_names_a_test_for_every_case() -> None:
    here = {name for name in globals() if name.startswith("test_")}
    named = [test for _, test in CATALOGUE]
    assert len(named) == len(set(named))
    for entry in named:
        module, _, test = entry.rpartition("::")
        found = importlib.import_module(f"tests.e2e.{module[:-3]}") if module else None
        assert test.startswith("test_") and (
            test in here if found is None else hasattr(found, test)
        ), entry
    assert here - set(named) == {"test_the_catalogue_names_a_test_for_every_case"}


def basic(name: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


def create_user(
    gk: Gatekeeper, name: str, *grants: str, secrets: dict[str, str] | None = None
) -> dict[str, str]:
    args = [arg for grant in grants for arg in ("--grant", grant)]
    done = run_cli(gk, "users", "create", name, *args)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1]
    if secrets is not None:
        secrets[name] = secret
    return basic(name, secret)


# Everything is verified; edges/mount/* is enforced (its pulls and mounts are gated), the rest
# only warns, so the protocol cases are about the protocol.
POLICIES = json.dumps(
    [
        {"name": "warn", "repositories": ["*"], "mode": "warn", "require": ["config-sanity"]},
        {"name": "mount", "repositories": ["edges/mount/*"], "require": ["config-sanity"]},
    ]
)


@dataclass(frozen=True)
class Site:
    gk: Gatekeeper
    alice: dict[str, str]
    """May pull and push ``edges/*``."""
    bob: dict[str, str]
    """May pull and push ``edges/*`` too: push rights do not make another's session his."""
    rita: dict[str, str]
    """May only pull ``edges/*``."""
    secrets: dict[str, str]
    """Each user's secret, for clients that log in themselves."""

    def client(self, who: dict[str, str], **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.gk.url, headers=who, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def site(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    gk = make_gatekeeper(
        tmp_path_factory.mktemp("edges"),
        registry.url,
        extra_env={"GATEKEEPER_AUTH__ENABLED": "true", "GATEKEEPER_POLICIES": POLICIES},
    )
    secrets: dict[str, str] = {}
    try:
        alice = create_user(gk, "alice", "edges/*=pull,push", secrets=secrets)
        bob = create_user(gk, "bob", "edges/*=pull,push", secrets=secrets)
        rita = create_user(gk, "rita", "edges/*=pull", secrets=secrets)
        yield Site(gk, alice, bob, rita, secrets)
    finally:
        gk.stop()


def envelope(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    (error,) = resp.json()["errors"]
    assert error["code"] == code, error
    return dict(error)


def row_of(gk: Gatekeeper, resp: httpx.Response) -> dict[str, Any]:
    (row,) = gk.wait_audit(1, "request_id = :id", {"id": resp.headers["X-Request-Id"]})
    return row


def _sep(location: str) -> str:
    return "&" if "?" in location else "?"


# -- upload sessions ---------------------------------------------------------------------------


def _hijack_attempts(http: httpx.Client, location: str, data: bytes) -> list[httpx.Response]:
    """Everything one can do with someone else's upload URL."""
    closing = f"{location}{_sep(location)}digest={digest_of(data)}"
    octets = {"Content-Type": "application/octet-stream"}
    return [
        http.patch(location, content=data, headers=octets),
        http.patch(location, content=data, headers={**octets, "Content-Range": "0-5"}),
        http.put(closing, content=data, headers=octets),
        http.get(location),
        http.delete(location),
    ]


def test_an_upload_session_belongs_to_the_identity_that_opened_it(site: Site) -> None:
    mine, theirs = b"alice's layer", b"bob's layer!"
    with site.client(site.alice) as alice:
        start = alice.post("/v2/edges/hijack/blobs/uploads/")
        assert start.status_code == 202, start.text
        location = start.headers["Location"]
        first = alice.patch(location, content=mine[:5], headers={"Content-Range": "0-4"})
        assert first.status_code == 202, first.text
        location = first.headers["Location"]
    session = location.split("?")[0].rsplit("/", 1)[1]
    for who in (site.bob, site.rita):
        with site.client(who) as other:
            for resp in _hijack_attempts(other, location, theirs):
                if resp.status_code == 403:  # rita may not push: refused before the session
                    envelope(resp, 403, "DENIED")
                    continue
                error = envelope(resp, 404, "BLOB_UPLOAD_UNKNOWN")
                assert error["detail"] == {"session": session}
                assert "alice" not in resp.text
                row = row_of(site.gk, resp)
                assert (row["identity"], row["status"], row["decision"]) == ("bob", 404, "deny")
                assert "alice's" in row["reason"] and row["upstream_status"] is None
    # Nothing of bob's reached the session: alice finishes it with exactly her bytes.
    with site.client(site.alice) as alice:
        status = alice.get(location)
        assert status.status_code == 204 and status.headers["Range"] == "0-4"
        done = alice.put(
            f"{location}{_sep(location)}digest={digest_of(mine)}",
            content=mine[5:],
            headers={"Content-Range": f"5-{len(mine) - 1}"},
        )
        assert done.status_code == 201, done.text
        assert alice.get(f"/v2/edges/hijack/blobs/{digest_of(mine)}").content == mine


def test_an_anonymous_upload_session_belongs_to_its_address(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    gk = make_gatekeeper(tmp_path_factory.mktemp("anonymous"), registry.url)
    data = b"anonymous layer"
    try:
        with httpx.Client(base_url=gk.url, timeout=30) as here:
            location = here.post("/v2/edges/anon/blobs/uploads/").headers["Location"]
        there = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=gk.url, timeout=30, transport=there) as other:
            for resp in _hijack_attempts(other, location, b"not yours"):
                envelope(resp, 404, "BLOB_UPLOAD_UNKNOWN")
                row = row_of(gk, resp)
                assert (row["client_addr"], row["decision"]) == ("127.0.0.2", "deny")
                assert "anonymous@127.0.0.1's" in row["reason"]
        with httpx.Client(base_url=gk.url, timeout=30) as here:
            # Nor in another repository, from the right address.
            moved = location.replace("/edges/anon/", "/edges/elsewhere/")
            envelope(here.get(moved), 404, "BLOB_UPLOAD_UNKNOWN")
            done = here.put(f"{location}{_sep(location)}digest={digest_of(data)}", content=data)
            assert done.status_code == 201, done.text
    finally:
        gk.stop()


# -- listings ----------------------------------------------------------------------------------


def _pages(http: httpx.Client, first: str) -> Iterator[httpx.Response]:
    url: str | None = first
    while url:
        resp = http.get(url)
        assert resp.status_code == 200, resp.text
        yield resp
        link = resp.headers.get("Link")
        url = link[1 : link.index(">")] if link else None


def test_catalog_pages_and_links_name_only_visible_repositories(
    site: Site, registry: Registry
) -> None:
    hidden = ["aaa/secret", "edgez/secret", "zzz/secret"]
    with httpx.Client(base_url=registry.url, timeout=30) as direct:  # around the gatekeeper
        for name in hidden:
            push_image(direct, name, "v1", [name.encode()])
    with site.client(site.alice) as alice:
        for name in ("edges/cat-a", "edges/cat-b", "edges/cat-c"):
            push_image(alice, name, "v1", [name.encode()])
            push_image(alice, name, "v2", [name.encode() + b"2"])
    nobody = create_user(site.gk, "nobody")
    with site.client(nobody) as http:
        resp = http.get("/v2/_catalog?n=1")
        assert resp.json() == {"repositories": []}
        assert "Link" not in resp.headers
        assert not any(name in str(resp.headers) + resp.text for name in hidden)
        assert http.get("/v2/_catalog").json() == {"repositories": []}
    with site.client(site.rita) as http:
        seen: list[str] = []
        for resp in _pages(http, "/v2/_catalog?n=1"):
            names = resp.json()["repositories"]
            assert len(names) == 1
            seen += names
            assert not any(name in str(resp.headers) + resp.text for name in hidden)
            link = resp.headers.get("Link")
            if link:
                assert link.startswith(f"<{site.gk.url}/v2/_catalog?")
                assert f"last={names[-1].replace('/', '%2F')}" in link
        visible = [name for name in seen if name.startswith("edges/")]
        assert seen == visible and {"edges/cat-a", "edges/cat-b", "edges/cat-c"} <= set(seen)
        everything = http.get("/v2/_catalog")
        assert everything.json()["repositories"] == seen and "Link" not in everything.headers
        # Tags: the Link names the last tag of the page, from the gatekeeper's own list.
        tags = list(_pages(http, "/v2/edges/cat-a/tags/list?n=1"))
        assert [r.json()["tags"] for r in tags] == [["v1"], ["v2"]]
        assert "last=v1" in tags[0].headers["Link"] and "Link" not in tags[1].headers
    rows = site.gk.audit_rows("action = 'catalog.list' AND identity = 'rita'")
    assert rows and {row["status"] for row in rows} == {200}


# -- Host --------------------------------------------------------------------------------------

BAD_HOSTS: list[bytes] = [
    b'evil.example"/,x="y',
    b"evil.example/path",
    b"evil.example?x=1",
    b"evil.example#frag",
    b"user@evil.example",
    b"evil example",
    b"evil.example:99999",
    b"evil.example:0",
    b"evil.example:80:80",
    b"evil.example:",
    b"[::1",
    b"[not-an-ip]:80",
    b"-evil.example",
    b"evil..example",
    "bäd.example".encode(),
    b"",
]


def with_host(port: int, method: str, path: str, host: bytes, auth: str = "") -> RawResponse:
    """One request whose ``Host`` is ``host``, byte for byte."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        if auth:
            conn.putheader("Authorization", auth)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        resp = conn.getresponse()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_host_that_is_not_host_port_is_refused(site: Site, host: bytes) -> None:
    raw = host
    for method, path in (("GET", "/v2/"), ("POST", "/v2/edges/host/blobs/uploads/")):
        resp = with_host(site.gk.port, method, path, raw)
        assert resp.status == 400, resp.body
        (error,) = json.loads(resp.body)["errors"]
        assert (error["code"], error["detail"]) == ("UNSUPPORTED", {"reason": "Host"})
        assert "www-authenticate" not in resp.headers and "location" not in resp.headers
        assert raw not in resp.body or not raw
        (row,) = site.gk.wait_audit(1, "request_id = :id", {"id": resp.headers["x-request-id"]})
        assert (row["status"], row["error_code"], row["method"]) == (400, "UNSUPPORTED", method)


def test_a_valid_host_or_public_url_names_the_urls_handed_out(
    site: Site, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    alice = site.alice["Authorization"]
    challenged = with_host(site.gk.port, "GET", "/v2/", b"Registry.Example:5000")
    assert challenged.status == 401
    assert challenged.headers["www-authenticate"].startswith(
        'Bearer realm="http://registry.example:5000/auth/token",service="registry-gatekeeper"'
    )
    started = with_host(site.gk.port, "POST", "/v2/edges/host/blobs/uploads/", b"[::1]:8443", alice)
    assert started.status == 202, started.body
    assert started.headers["location"].startswith("http://[::1]:8443/v2/edges/host/blobs/uploads/")
    public = make_gatekeeper(
        tmp_path_factory.mktemp("public"),
        registry.url,
        extra_env={"GATEKEEPER_PUBLIC_URL": "https://registry.example.com"},
    )
    try:
        bad = b'evil.example"/,x="y'
        served = with_host(public.port, "POST", "/v2/edges/host/blobs/uploads/", bad)
        assert served.status == 202, served.body
        assert served.headers["location"].startswith("https://registry.example.com/v2/edges/")
    finally:
        public.stop()


def test_start_up_warns_when_public_url_is_unset_off_loopback(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    warning = "public_url is not set and the gatekeeper listens on"
    loopback = make_gatekeeper(tmp_path_factory.mktemp("loopback"), registry.url)
    loopback.stop()
    assert warning not in loopback.log_path.read_text()
    wide = make_gatekeeper(tmp_path_factory.mktemp("wide"), registry.url, start=False)
    wide.env["GATEKEEPER_LISTEN"] = f"0.0.0.0:{wide.port}"
    wide.start()
    try:
        deadline = time.monotonic() + 10
        while warning not in wide.log_path.read_text():
            assert time.monotonic() < deadline, wide.log_path.read_text()[-2000:]
            time.sleep(0.1)
        with httpx.Client(base_url=wide.url, timeout=30) as http:
            assert http.get("/v2/").status_code == 200
    finally:
        wide.stop()


# -- cross-repository mounts -------------------------------------------------------------------

SERVICE = "registry-gatekeeper"


def challenge_scopes(resp: httpx.Response) -> list[str]:
    """The scopes a Bearer challenge names, as a client splits them."""
    header = resp.headers["WWW-Authenticate"]
    assert header.startswith("Bearer ")
    params = dict(part.split("=", 1) for part in header[len("Bearer ") :].split('",'))
    return params["scope"].strip('"').split(" ")


def token_for(site: Site, user: str, scopes: list[str]) -> dict[str, str]:
    resp = httpx.get(
        f"{site.gk.url}/auth/token",
        params=[("service", SERVICE), *(("scope", scope) for scope in scopes)],
        auth=(user, site.secrets[user]),
    )
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def test_a_mount_challenge_names_both_scopes_and_a_challenge_follower_mounts(
    site: Site,
) -> None:
    layer = b"mounted by a client that only follows challenges"
    with site.client(site.alice) as alice:
        digest = push_blob(alice, "edges/mount-src", layer)
    path = f"/v2/edges/mount-dst/blobs/uploads/?mount={digest}&from=edges/mount-src"
    with httpx.Client(base_url=site.gk.url, timeout=30) as http:
        challenged = http.post(path)
        assert challenged.status_code == 401
        envelope(challenged, 401, "UNAUTHORIZED")
        scopes = challenge_scopes(challenged)
        assert scopes == [
            "repository:edges/mount-dst:pull,push",
            "repository:edges/mount-src:pull",
        ]
        mounted = http.post(path, headers=token_for(site, "alice", scopes))
        assert mounted.status_code == 201, mounted.text
        assert mounted.headers["Location"].startswith(f"{site.gk.url}/v2/edges/mount-dst/blobs/")
    row = row_of(site.gk, mounted)
    assert (row["action"], row["status"], row["identity"]) == ("upload.mount", 201, "alice")
    refused = row_of(site.gk, challenged)  # refused before the handler: the route's action
    assert (refused["status"], refused["path"]) == (401, "/v2/edges/mount-dst/blobs/uploads/")


def test_a_mount_with_a_token_lacking_the_source_scope(site: Site) -> None:
    layer = b"the source scope is asked for"
    with site.client(site.alice) as alice:
        digest = push_blob(alice, "edges/mount-src", layer)
    path = f"/v2/edges/mount-dst2/blobs/uploads/?mount={digest}&from=edges/mount-src"
    narrow = token_for(site, "alice", ["repository:edges/mount-dst2:pull,push"])
    with httpx.Client(base_url=site.gk.url, timeout=30) as http:
        asked = http.post(path, headers=narrow)
        error = envelope(asked, 401, "DENIED")
        assert error["detail"] == {"repository": "edges/mount-src", "needed": ["pull"]}
        assert 'error="insufficient_scope"' in asked.headers["WWW-Authenticate"]
        assert challenge_scopes(asked) == [
            "repository:edges/mount-dst2:pull,push",
            "repository:edges/mount-src:pull",
        ]
        # The same with a source the identity may not pull: a plain upload, nothing said.
        hidden = f"/v2/edges/mount-dst2/blobs/uploads/?mount={digest}&from=other/secret"
        plain = http.post(hidden, headers=narrow)
        assert plain.status_code == 202, plain.text
        assert "other/secret" not in plain.text + str(plain.headers)
    row = row_of(site.gk, asked)
    assert (row["action"], row["status"], row["identity"]) == ("upload.mount", 401, "alice")
    plain_row = row_of(site.gk, plain)
    assert plain_row["action"] == "upload.start" and "not permitted" in plain_row["reason"]


def test_skopeo_copy_between_repositories_mounts_under_token_auth(
    site: Site, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("skopeo")
    layout = OciLayout(workdir / "layout")
    image = build_image(layout, "v1", [40_000, 60_000])
    skopeo = Skopeo(workdir / "client", [site.gk.host])
    skopeo.login(site.gk.host, "alice", site.secrets["alice"])
    source = f"docker://{site.gk.host}/edges/mount/src:v1"
    skopeo.copy(f"oci:{layout.root}:v1", source)
    deadline = time.monotonic() + 60
    while (
        site.gk.database.fetch(
            "SELECT 1 FROM verdicts WHERE digest = :d AND state = 'passed'",
            {"d": image.manifest.digest},
        )
        == []
    ):
        assert time.monotonic() < deadline, "the source image was not verified"
        time.sleep(0.2)
    copied = skopeo.copy(source, f"docker://{site.gk.host}/edges/mount/dst:v1")
    assert "mount OK" in copied.stderr
    layers = {layer.descriptor.digest for layer in image.layers}
    rows = site.gk.audit_rows(
        "repository = 'edges/mount/dst' AND action = 'upload.mount' AND status = 201"
    )
    assert {row["digest"] for row in rows} == layers
    assert all(row["identity"] == "alice" for row in rows)
    uploaded = site.gk.audit_rows("repository = 'edges/mount/dst' AND action = 'blob.push'")
    assert layers.isdisjoint(row["digest"] for row in uploaded)


# -- slow clients and connection caps ----------------------------------------------------------

HEADER_TIMEOUT = 2.0
PER_ADDRESS = 4
TOTAL = 12


@pytest.fixture(scope="module")
def guarded(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    gk = make_gatekeeper(
        tmp_path_factory.mktemp("slow"),
        registry.url,
        extra_env={
            "GATEKEEPER_CONNECTIONS__REQUEST_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
            "GATEKEEPER_CONNECTIONS__MAX_PER_ADDRESS": str(PER_ADDRESS),
            "GATEKEEPER_CONNECTIONS__MAX_TOTAL": str(TOTAL),
        },
    )
    yield gk
    gk.stop()


def connect(gk: Gatekeeper, source: str, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gk.port), timeout=15, source_address=(source, 0))
    if first:
        sock.sendall(first)
    return sock


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the gatekeeper sends until it closes the connection."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


def answer_of(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    (error,) = json.loads(body)["errors"]
    return int(lines[0].split()[1]), headers, error


def metric(gk: Gatekeeper, name: str) -> float:
    text = httpx.get(f"{gk.url}/metrics", timeout=30).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def served(gk: Gatekeeper) -> int:
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        return http.get("/v2/").status_code


def test_slow_request_headers_time_out_while_others_are_served(guarded: Gatekeeper) -> None:
    before = metric(guarded, "gatekeeper_request_header_timeouts_total")
    started = time.monotonic()
    slow = [
        connect(guarded, "127.0.0.2", b"GET /v2/ HT"),  # half a request line
        connect(guarded, "127.0.0.2", b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: "),  # headers
        connect(guarded, "127.0.0.2"),  # nothing at all
    ]
    kept = connect(guarded, "127.0.0.2", b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
    first = kept.recv(65536)
    assert first.startswith(b"HTTP/1.1 200"), first[:200]
    time.sleep(HEADER_TIMEOUT / 2)  # idle on keep-alive: not the header clock yet
    kept.sendall(b"GET /v2/ HTTP/1.1\r\nHo")
    slow.append(kept)
    # Meanwhile everyone else is served, again and again.
    while time.monotonic() - started < HEADER_TIMEOUT * 0.8:
        assert served(guarded) == 200
    for sock in slow:
        status, headers, error = answer_of(read_to_close(sock))
        assert status == 408 and error["code"] == "UNSUPPORTED", error
        assert error["detail"] == {"reason": "RequestHeaderTimeout"}
        (row,) = guarded.wait_audit(1, "request_id = :id", {"id": headers["x-request-id"]})
        assert (row["action"], row["status"], row["client_addr"]) == (
            "request.timeout",
            408,
            "127.0.0.2",
        )
    elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT <= elapsed < HEADER_TIMEOUT * 1.5 + 5, elapsed
    assert metric(guarded, "gatekeeper_request_header_timeouts_total") == before + len(slow)
    assert served(guarded) == 200


def test_connections_beyond_the_per_address_cap_are_refused(guarded: Gatekeeper) -> None:
    before = metric(guarded, 'gatekeeper_connections_refused_total{limit="per-address"}')
    held = [connect(guarded, "127.0.0.3") for _ in range(PER_ADDRESS)]
    try:
        time.sleep(0.2)  # all of them accepted
        refused = connect(guarded, "127.0.0.3", b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, error = answer_of(read_to_close(refused))
        assert (status, error["code"]) == (429, "TOOMANYREQUESTS")
        assert error["detail"] == {"limit": PER_ADDRESS} and headers["retry-after"] == "1"
        (row,) = guarded.wait_audit(1, "request_id = :id", {"id": headers["x-request-id"]})
        assert (row["action"], row["status"], row["client_addr"]) == (
            "connection.refused",
            429,
            "127.0.0.3",
        )
        assert served(guarded) == 200  # another address is served meanwhile
        assert (
            metric(guarded, 'gatekeeper_connections_refused_total{limit="per-address"}')
            == before + 1
        )
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    again = connect(guarded, "127.0.0.3", b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert again.recv(65536).startswith(b"HTTP/1.1 200")
    again.close()


def test_connections_beyond_the_total_cap_are_refused_until_some_close(
    guarded: Gatekeeper,
) -> None:
    time.sleep(0.3)  # the previous tests' connections are closed
    held = [connect(guarded, f"127.0.1.{n % 4 + 1}") for n in range(TOTAL)]
    time.sleep(0.2)
    assert metric(guarded, "gatekeeper_open_connections") <= TOTAL  # the scrape itself waits
    refused = connect(guarded, "127.0.0.1", b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, error = answer_of(read_to_close(refused))
    assert (status, error["code"], error["detail"]) == (503, "UNAVAILABLE", {"limit": TOTAL})
    (row,) = guarded.wait_audit(1, "request_id = :id", {"id": headers["x-request-id"]})
    assert (row["action"], row["status"]) == ("connection.refused", 503)
    # The idle ones time out after the header timeout; then the gatekeeper serves again.
    for sock in held:
        assert answer_of(read_to_close(sock))[0] == 408
    assert served(guarded) == 200
    assert metric(guarded, 'gatekeeper_connections_refused_total{limit="total"}') >= 1
