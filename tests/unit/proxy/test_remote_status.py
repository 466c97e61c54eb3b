"""Asking a remote why the registry could not fetch from it (``proxy.remote_status``) and what
the client is told (``proxy.remote_failures.explain``), against a fake remote behind httpx's
``MockTransport``: down, rate limited (429, or Docker Hub's ``ratelimit-remaining: 0``),
failing, has it, has it not; answers shared and remembered so an outage costs the remote little."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable

import httpx
import pytest

from config.remotes import Remote
from oci.errors import Code
from proxy.remote_failures import explain, registry_said, what
from proxy.remote_status import TTL, Diagnosis, RemoteStatus, Status

HUB = Remote.model_validate({"name": "docker-hub", "url": "https://hub.example"})
REALM = "https://auth.example/token"
IMAGE = ("library/alpine", "manifests", "3.20")

Handler = Callable[[httpx.Request], httpx.Response]


class FakeRemote:
    """A registry with Docker Hub's token dance; ``image`` answers the HEAD of the image."""

    def __init__(self, image: Handler, *, bearer: bool = True) -> None:
        self.image = image
        self.bearer = bearer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v2/":
            if not self.bearer:
                return httpx.Response(200)
            challenge = f'Bearer realm="{REALM}",service="registry.example"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        if str(request.url).startswith(REALM):
            return httpx.Response(200, json={"token": "t0ken", "expires_in": 300})
        return self.image(request)


def status(remote: FakeRemote, clock: Callable[[], float] = lambda: 0.0) -> RemoteStatus:
    client = httpx.AsyncClient(transport=httpx.MockTransport(remote))
    return RemoteStatus([HUB], client, clock=clock)


async def test_an_unreachable_remote_is_down() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    found = await status(FakeRemote(refuse)).diagnose(HUB, *IMAGE)
    assert found.status == Status.DOWN and "connection refused" in found.detail
    error = explain(found, what(*IMAGE), 404)
    assert error is not None and error.code == Code.UPSTREAM_UNAVAILABLE
    assert error.message.startswith("remote docker-hub (hub.example) cannot be reached")
    assert "library/alpine:3.20 is not in the registry's cache" in error.message
    assert "images already fetched and verified are still served" in error.message


async def test_a_429_is_rate_limiting_with_the_remotes_retry_after() -> None:
    remote = FakeRemote(lambda r: httpx.Response(429, headers={"Retry-After": "60"}))
    found = await status(remote).diagnose(HUB, *IMAGE)
    assert (found.status, found.retry_after) == (Status.RATE_LIMITED, 60)
    error = explain(found, "library/alpine:3.20", 404)
    assert error is not None and error.code == Code.TOO_MANY_REQUESTS
    assert error.code.status == 429 and error.headers == {"Retry-After": "60"}
    assert "remote docker-hub (hub.example) is rate limiting pulls" in error.message
    assert "try again in about 60 s" in error.message


async def test_docker_hubs_used_up_pull_limit_is_rate_limiting_and_the_head_is_authorised() -> None:
    def used_up(request: httpx.Request) -> httpx.Response:
        assert request.method == "HEAD"
        assert request.headers["Authorization"] == "Bearer t0ken"
        headers = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "0;w=21600"}
        return httpx.Response(200, headers=headers)

    remote = FakeRemote(used_up)
    found = await status(remote).diagnose(HUB, *IMAGE)
    assert found.status == Status.RATE_LIMITED and "pull limit of 100 is used up" in found.detail
    token = next(r for r in remote.requests if str(r.url).startswith(REALM))
    assert token.url.params["scope"] == "repository:library/alpine:pull"
    assert token.url.params["service"] == "registry.example"
    assert "Authorization" not in token.headers  # anonymous: no credentials configured


async def test_a_remote_with_the_image_means_the_registry_failed() -> None:
    remote = FakeRemote(lambda r: httpx.Response(200, headers={"ratelimit-remaining": "99"}))
    found = await status(remote).diagnose(HUB, *IMAGE)
    assert found.status == Status.HAS_IT
    error = explain(found, "library/alpine:3.20", 404)
    assert error is not None and error.code == Code.UPSTREAM_BAD_GATEWAY
    assert "could not fetch library/alpine:3.20 from remote docker-hub" in error.message


@pytest.mark.parametrize("code", [404, 401, 403])
async def test_what_the_remote_does_not_have_keeps_the_registrys_404(code: int) -> None:
    found = await status(FakeRemote(lambda r: httpx.Response(code))).diagnose(HUB, *IMAGE)
    assert found.status == Status.NOT_FOUND
    assert explain(found, "library/alpine:3.20", 404) is None
    error = explain(found, "blob sha256:x of library/alpine", 500)
    assert error is not None and "failed (HTTP 500)" in error.message


async def test_a_server_error_anywhere_is_failing() -> None:
    remote = FakeRemote(lambda r: httpx.Response(503))
    found = await status(remote).diagnose(HUB, *IMAGE)
    assert found.status == Status.FAILING and "HTTP 503" in found.detail
    error = explain(found, "library/alpine:3.20", 404)
    assert error is not None and "is failing (it answered HTTP 503)" in error.message


async def test_credentials_go_to_the_token_server_as_basic() -> None:
    remote = FakeRemote(lambda r: httpx.Response(200))
    secured = Remote.model_validate(
        {"name": "docker-hub", "url": "https://hub.example", "username": "bot", "password": "pw"}
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(remote))
    await RemoteStatus([secured], client).diagnose(secured, *IMAGE)
    token = next(r for r in remote.requests if str(r.url).startswith(REALM))
    assert token.headers["Authorization"] == "Basic " + base64.b64encode(b"bot:pw").decode()


async def test_answers_are_shared_and_remembered_for_a_while() -> None:
    now = [0.0]
    remote = FakeRemote(lambda r: httpx.Response(404))
    asking = status(remote, clock=lambda: now[0])
    await asyncio.gather(*(asking.diagnose(HUB, *IMAGE) for _ in range(20)))
    assert len(remote.requests) == 3  # one probe: /v2/, token, HEAD
    await asking.diagnose(HUB, *IMAGE)
    assert len(remote.requests) == 3
    now[0] = TTL + 1
    await asking.diagnose(HUB, *IMAGE)
    assert len(remote.requests) == 6


async def test_a_remote_found_down_is_not_asked_about_other_images_meanwhile() -> None:
    remote = FakeRemote(lambda r: httpx.Response(503), bearer=False)
    asking = status(remote)
    await asking.diagnose(HUB, *IMAGE)
    asked = len(remote.requests)
    other = await asking.diagnose(HUB, "library/busybox", "manifests", "1")
    assert other.status == Status.FAILING and len(remote.requests) == asked


async def test_a_remote_without_url_is_never_asked() -> None:
    silent = Remote(name="mirror")
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    found = await RemoteStatus([silent], client).diagnose(silent, *IMAGE)
    assert found.status == Status.UNKNOWN
    assert explain(found, "library/alpine:3.20", 404) is None
    error = explain(found, "library/alpine:3.20", 502)
    assert error is not None and "remote mirror" in error.message


def test_what_the_registry_said_is_quoted_from_inside_its_envelopes() -> None:
    inner = "OCI manifest found, but accept header does not support OCI manifests"
    body = {
        "errors": [
            {
                "code": "UNKNOWN",
                "message": "unknown error",
                "detail": {"errors": [{"code": "MANIFEST_UNKNOWN", "message": inner}]},
            }
        ]
    }
    assert registry_said(json.dumps(body).encode()) == inner
    assert registry_said(b"not json") is None and registry_said(b"") is None
    hostile = {"errors": [{"message": "\x1b[2Jgone"}]}
    assert registry_said(json.dumps(hostile).encode()) == "\\x1b[2Jgone"
    found = Diagnosis(HUB, Status.HAS_IT, "it has the image")
    error = explain(found, "library/alpine:3.20", 500, inner)
    assert error is not None and f"(the registry said: {inner})" in error.message


async def test_a_question_that_goes_wrong_is_unknown_not_an_error() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise ValueError("a bug somewhere")

    found = await status(FakeRemote(broken, bearer=False)).diagnose(HUB, *IMAGE)
    assert found.status == Status.UNKNOWN
    assert explain(found, "library/alpine:3.20", 404) is None  # the registry's 404 stands
