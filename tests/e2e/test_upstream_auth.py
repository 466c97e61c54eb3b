"""The gatekeeper authenticates to the real registry itself, with Basic (htpasswd) or Bearer
(token server) auth, while its own clients send no credentials and never see a challenge.

Every gatekeeper reaches its registry through a :class:`Tap`, so the tests read what actually
went upstream: whose credentials, how many tries, which answers.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import bcrypt
import httpx
import pytest

from tests.support.database import Database
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import OCI_MANIFEST, digest_of, push_image
from tests.support.registry import Registry, make_registry
from tests.support.tap import Tap
from tests.support.tokenserver import TokenServer

pytestmark = pytest.mark.e2e

USERNAME = "gatekeeper"
PASSWORD = "upstream-secret"
WRONG_PASSWORD = "not-the-password"
SERVICE = "test-registry"
ISSUER = "test-issuer"
# What a client might send on its own; none of it may ever reach the upstream.
CLIENT_BASIC = "Basic " + base64.b64encode(b"intruder:client-secret-4d1c").decode()
CLIENT_BEARER = "Bearer client-token-9b7e"


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass
class Wired:
    """A gatekeeper and the tap between it and its registry."""

    gatekeeper: Gatekeeper
    tap: Tap


@dataclass
class Gatekeepers:
    """Every gatekeeper this module needs, started together (each takes seconds to start)."""

    basic: Wired
    basic_wrong: Wired
    bearer: Wired
    bearer_wrong: Wired
    bearer_fresh: Wired
    """Used by one test only, so its first request is that test's first request."""


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(
        tmp_path_factory.mktemp("tokens"),
        username=USERNAME,
        password=PASSWORD,
        service=SERVICE,
        issuer=ISSUER,
    )
    yield server
    server.close()


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    workdir = tmp_path_factory.mktemp("basic-registry")
    htpasswd = workdir / "htpasswd"
    # Cost 4 (the minimum): the registry checks bcrypt on every single request.
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    htpasswd.write_text(f"{USERNAME}:{hashed}\n", encoding="utf-8")
    registry = make_registry(
        workdir, {"auth": {"htpasswd": {"realm": "test-realm", "path": str(htpasswd)}}}
    )
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def bearer_registry(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[Registry]:
    auth = {
        "token": {
            "realm": token_server.realm,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(token_server.rootcertbundle),
        }
    }
    registry = make_registry(tmp_path_factory.mktemp("bearer-registry"), {"auth": auth})
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def gatekeepers(
    tmp_path_factory: pytest.TempPathFactory, basic_registry: Registry, bearer_registry: Registry
) -> Iterator[Gatekeepers]:
    def wire(
        name: str, registry: Registry, password: str, database: Database | None = None
    ) -> Wired:
        tap = Tap(registry.port)
        env = {
            "GATEKEEPER_UPSTREAM_USERNAME": USERNAME,
            "GATEKEEPER_UPSTREAM_PASSWORD": password,
        }
        workdir = tmp_path_factory.mktemp(name)
        gk = make_gatekeeper(workdir, tap.url, extra_env=env, start=False, database=database)
        return Wired(gk, tap)

    basic = wire("gk-basic", basic_registry, PASSWORD)
    every = Gatekeepers(
        basic=basic,
        # A replica of basic (one database): an upload session belongs to whoever opened it,
        # as the gatekeepers' shared database says, so one opened on basic continues here.
        basic_wrong=wire(
            "gk-basic-wrong", basic_registry, WRONG_PASSWORD, basic.gatekeeper.database
        ),
        bearer=wire("gk-bearer", bearer_registry, PASSWORD),
        bearer_wrong=wire("gk-bearer-wrong", bearer_registry, WRONG_PASSWORD),
        bearer_fresh=wire("gk-bearer-fresh", bearer_registry, PASSWORD),
    )
    wired = list(vars(every).values())
    with ThreadPoolExecutor(len(wired)) as pool:
        try:
            # The replica second, once its database has its schema.
            list(
                pool.map(
                    lambda w: w.gatekeeper.start(), [w for w in wired if w is not every.basic_wrong]
                )
            )
            every.basic_wrong.gatekeeper.start()
            yield every
        finally:
            list(pool.map(lambda w: w.gatekeeper.stop(), wired))
            for w in wired:
                w.tap.close()


@contextmanager
def client_of(wired: Wired) -> Iterator[tuple[httpx.Client, list[httpx.Response]]]:
    """A credential-less client that keeps every response it got."""
    seen: list[httpx.Response] = []
    with httpx.Client(
        base_url=wired.gatekeeper.url, timeout=30, event_hooks={"response": [seen.append]}
    ) as client:
        yield client, seen


def assert_never_challenged(seen: list[httpx.Response]) -> None:
    assert seen
    for resp in seen:
        assert resp.status_code != 401, (resp.request.method, resp.request.url, resp.text)
        assert "WWW-Authenticate" not in resp.headers, (resp.request.method, resp.request.url)


def pull_image(
    client: httpx.Client, repo: str, tag: str, manifest: bytes, blobs: list[bytes]
) -> None:
    got = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    assert got.status_code == 200, got.text
    assert got.content == manifest
    for blob in blobs:
        path = f"/v2/{repo}/blobs/{digest_of(blob)}"
        assert client.head(path).status_code == 200
        pulled = client.get(path)
        assert pulled.status_code == 200, pulled.text
        assert pulled.content == blob


def assert_error(resp: httpx.Response, status: int, code: str) -> str:
    """The response is an OCI envelope with ``code``, and no challenge; returns its message."""
    assert resp.status_code == status, resp.text
    assert "WWW-Authenticate" not in resp.headers
    if resp.request.method == "HEAD":
        return ""
    (error,) = resp.json()["errors"]
    assert error["code"] == code
    return str(error["message"])


# 1. Basic: the gatekeeper answers the registry's htpasswd challenge itself.


def test_basic_push_and_pull_without_client_credentials(gatekeepers: Gatekeepers) -> None:
    wired = gatekeepers.basic
    config, layer = b'{"architecture":"amd64","os":"linux"}', os.urandom(40_000)
    with client_of(wired) as (client, seen):
        assert client.get("/v2/").status_code == 200
        _, manifest = push_image(client, "basic/app", "v1", [layer], config=config)
        pull_image(client, "basic/app", "v1", manifest, [config, layer])
        assert client.get("/v2/basic/app/tags/list").json()["tags"] == ["v1"]
        assert "basic/app" in client.get("/v2/_catalog").json()["repositories"]
    assert_never_challenged(seen)

    exchanges = wired.tap.exchanges()
    assert len(exchanges) >= len(seen)
    anonymous = [e for e in exchanges if e.authorization is None]
    # Only the probe that learns the challenge goes without credentials, and only it gets 401.
    assert [(e.method, e.target, e.status) for e in anonymous] in ([], [("GET", "/v2/", 401)])
    assert {e.authorization for e in exchanges if e not in anonymous} == {basic(USERNAME, PASSWORD)}
    assert [e for e in exchanges if e.status == 401] == anonymous


def test_basic_client_authorization_is_never_forwarded(gatekeepers: Gatekeepers) -> None:
    wired = gatekeepers.basic
    layer = os.urandom(20_000)
    with client_of(wired) as (client, seen):
        client.headers["Authorization"] = CLIENT_BASIC
        _, manifest = push_image(client, "basic/intruder", "v1", [layer])
        got = client.get("/v2/basic/intruder/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert got.status_code == 200
        assert got.content == manifest
        assert client.get(f"/v2/basic/intruder/blobs/{digest_of(layer)}").content == layer
    assert_never_challenged(seen)
    sent = wired.tap.sent()
    assert basic(USERNAME, PASSWORD).encode() in sent
    assert CLIENT_BASIC.split()[1].encode() not in sent


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v2/", None),
        ("GET", "/v2/wrong/app/manifests/v1", None),
        ("HEAD", "/v2/wrong/app/manifests/v1", None),
        ("GET", f"/v2/wrong/app/blobs/{digest_of(b'x')}", None),
        ("GET", "/v2/_catalog", None),
        ("POST", "/v2/wrong/app/blobs/uploads/", None),
        ("POST", f"/v2/wrong/app/blobs/uploads/?digest={digest_of(b'y' * 1024)}", b"y" * 1024),
    ],
)
def test_basic_wrong_upstream_password_is_a_502_not_a_401(
    gatekeepers: Gatekeepers, method: str, path: str, body: bytes | None
) -> None:
    wired = gatekeepers.basic_wrong
    wired.tap.clear()
    with client_of(wired) as (client, _):
        resp = client.request(method, path, content=body)
    message = assert_error(resp, 502, "UNAVAILABLE")
    if method != "HEAD":
        assert "refused" in message and "credentials" in message, message
    # The gatekeeper did answer the challenge, with the (wrong) password it was given.
    tried = [e for e in wired.tap.exchanges() if e.authorization is not None]
    assert tried
    assert {(e.authorization, e.status) for e in tried} == {(basic(USERNAME, WRONG_PASSWORD), 401)}


def test_basic_wrong_upstream_password_on_a_streamed_body_is_a_502(
    gatekeepers: Gatekeepers,
) -> None:
    """A refused body cannot be retried; the client still gets the clear 502, not a 401."""
    with client_of(gatekeepers.basic) as (good, _):
        started = good.post("/v2/wrong/streamed/blobs/uploads/")
    assert started.status_code == 202
    session = httpx.URL(started.headers["Location"]).raw_path.decode()
    chunk = os.urandom(64 * 1024)
    with client_of(gatekeepers.basic_wrong) as (client, _):
        resp = client.patch(session, content=iter([chunk] * 64))
    message = assert_error(resp, 502, "UNAVAILABLE")
    assert "refused" in message and "credentials" in message, message


# 2. Bearer: the gatekeeper gets tokens from the registry's token server and caches them.


def test_bearer_push_pull_and_catalog(gatekeepers: Gatekeepers, token_server: TokenServer) -> None:
    wired = gatekeepers.bearer
    token_server.clear()
    wired.tap.clear()
    config, layers = b'{"architecture":"arm64","os":"linux"}', [os.urandom(30_000), b"small"]
    with client_of(wired) as (client, seen):
        client.headers["Authorization"] = CLIENT_BEARER
        assert client.get("/v2/").status_code == 200
        _, manifest = push_image(client, "bearer/app", "v1", layers, config=config)
        pull_image(client, "bearer/app", "v1", manifest, [config, *layers])
        assert client.get("/v2/bearer/app/tags/list").json()["tags"] == ["v1"]
        catalog = client.get("/v2/_catalog")
        assert catalog.status_code == 200, catalog.text
        assert "bearer/app" in catalog.json()["repositories"]
    assert_never_challenged(seen)

    # The token server was asked for exactly what each operation needs, once per scope.
    asked = [request.scopes for request in token_server.requests]
    assert sorted(asked) == sorted(
        [
            (),
            ("registry:catalog:*",),
            ("repository:bearer/app:pull",),
            ("repository:bearer/app:pull,push",),
        ]
    )
    assert all(r.authenticated and r.service == SERVICE for r in token_server.requests)

    # Every authenticated request upstream carried one of those tokens, never the client's.
    exchanges = wired.tap.exchanges()
    issued = {f"Bearer {token}" for token in token_server.issued}
    sent_with = {e.authorization for e in exchanges if e.authorization is not None}
    assert sent_with == issued
    assert all(e.status != 401 for e in exchanges if e.authorization is not None)
    assert len(exchanges) > 4 * len(token_server.requests)
    assert CLIENT_BEARER.split()[1].encode() not in wired.tap.sent()


def test_bearer_wrong_upstream_password_is_a_502_not_a_401(
    gatekeepers: Gatekeepers, token_server: TokenServer
) -> None:
    wired = gatekeepers.bearer_wrong
    token_server.clear()
    with client_of(wired) as (client, _):
        for resp in (
            client.get("/v2/"),
            client.get("/v2/bearer/denied/manifests/v1", headers={"Accept": OCI_MANIFEST}),
            client.post("/v2/bearer/denied/blobs/uploads/"),
        ):
            message = assert_error(resp, 502, "UNAVAILABLE")
            assert "token server" in message and "refused" in message, message
    assert token_server.requests
    assert not any(request.authenticated for request in token_server.requests)
    # Without a token nothing but the unauthenticated probe ever reached the registry.
    assert all(e.authorization is None for e in wired.tap.exchanges())


# 3. A streamed body cannot be replayed after a 401: the challenge must be known beforehand.


def test_bearer_streaming_upload_succeeds_on_the_first_try(
    gatekeepers: Gatekeepers, token_server: TokenServer
) -> None:
    wired = gatekeepers.bearer_fresh
    token_server.clear()
    chunk = os.urandom(64 * 1024)
    first, last = chunk * 32, b"the end"
    digest = digest_of(first + last)

    def streamed() -> Iterator[bytes]:
        for _ in range(32):
            yield chunk

    with client_of(wired) as (client, seen):
        # This gatekeeper has never talked to its upstream before this request.
        start = client.post("/v2/stream/first/blobs/uploads/")
        assert start.status_code == 202, start.text
        patch = client.patch(
            start.headers["Location"],
            content=streamed(),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert patch.status_code == 202, patch.text
        assert patch.headers["Range"] == f"0-{len(first) - 1}"
        location = patch.headers["Location"]
        done = client.put(
            f"{location}{'&' if '?' in location else '?'}digest={digest}",
            content=iter([last]),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
        assert client.get(f"/v2/stream/first/blobs/{digest}").content == first + last
    assert_never_challenged(seen)

    exchanges = wired.tap.exchanges()
    # First the bodiless probe learns the challenge; no request with a body ever got a 401.
    assert (exchanges[0].method, exchanges[0].target, exchanges[0].status) == ("GET", "/v2/", 401)
    assert exchanges[0].authorization is None
    assert [e.status for e in exchanges[1:]] == [202, 202, 201, 200]
    assert [e.method for e in exchanges[1:]] == ["POST", "PATCH", "PUT", "GET"]
    assert all(e.authorization and e.authorization.startswith("Bearer ") for e in exchanges[1:])
    assert [r.scopes for r in token_server.requests] == [
        ("repository:stream/first:pull,push",),
        ("repository:stream/first:pull",),
    ]


def test_readiness_probe_keeps_cached_tokens(
    gatekeepers: Gatekeepers, token_server: TokenServer
) -> None:
    wired = gatekeepers.bearer
    with client_of(wired) as (client, _):
        assert client.get("/v2/ready/app/tags/list").status_code == 404  # caches a pull token
        token_server.clear()
        assert client.get("/readyz").status_code == 200
        assert client.get("/v2/ready/app/tags/list").status_code == 404
    assert [r.scopes for r in token_server.requests] == []
