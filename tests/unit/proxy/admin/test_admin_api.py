"""The admin API in process: authentication, input validation, conflicts, overrides and the
events they publish, the policy dry-run, and the OpenAPI document against the route table."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.admin import bodies
from proxy.admin.openapi import build
from proxy.admin.routes import PREFIX, ROUTES
from proxy.state import SERVICES, Services
from services.events import VerdictChange
from storage import verdicts
from storage.verdicts import DecisionRecord, FindingRecord
from tests.fakes.upstream import FakeUpstream
from verifiers.lifecycle import State

TOKEN = "unit-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
POLICIES = [{"name": "team", "repositories": ["team/*"], "require": ["scan"]}]

Client = TestClient[Any, Any]


@pytest.fixture
async def admin(
    fake_upstream: tuple[FakeUpstream, TestServer], gatekeeper_client: Callable[..., Any]
) -> Client:
    _, server = fake_upstream
    client: Client = await gatekeeper_client(
        str(server.make_url("")),
        admin_token=TOKEN,
        verification__workers="0",
        policies=json.dumps(POLICIES),
    )
    return client


def app_of(client: Client) -> web.Application:
    server = client.server
    assert isinstance(server, TestServer)
    return server.app


def svc(client: Client) -> Services:
    return app_of(client)[SERVICES]


def events(client: Client) -> list[VerdictChange]:
    seen: list[VerdictChange] = []

    async def listen(change: VerdictChange) -> None:
        seen.append(change)

    svc(client).bus.subscribe(listen)
    return seen


async def seed(
    client: Client, repository: str, digest: str, state: str, *findings: FindingRecord
) -> None:
    record = DecisionRecord(
        state=State(state),
        reasons=("1 critical (CVE-1)",) if state == "quarantined" else (),
        policy="team",
        policy_version="v",
        data_versions={"scan": "1"},
        outcomes=({"verifier": "scan", "version": "1", "status": "ok", "detail": ""},),
        findings=findings,
    )
    async with svc(client).db() as session, session.begin():
        await verdicts.record_decision(session, repository, digest, record)


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"}
    return dict(body["error"])


# -- authentication ------------------------------------------------------------------------


async def test_requests_without_the_right_token_are_401(admin: Client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        resp = await admin.get(f"{PREFIX}/images", headers=headers)
        error = await error_of(resp, 401)
        assert error["code"] == "UNAUTHORIZED"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await admin.get(f"{PREFIX}/images", headers=AUTH)).status == 200


async def test_unknown_paths_need_the_token_before_they_are_404(admin: Client) -> None:
    await error_of(await admin.get(f"{PREFIX}/nothing-here"), 401)
    error = await error_of(await admin.get(f"{PREFIX}/nothing-here", headers=AUTH), 404)
    assert error["code"] == "NOT_FOUND"
    error = await error_of(await admin.delete(f"{PREFIX}/images", headers=AUTH), 405)
    assert error["code"] == "METHOD_NOT_ALLOWED"


async def test_unset_token_disables_the_admin_api(
    fake_upstream: tuple[FakeUpstream, TestServer], gatekeeper_client: Callable[..., Any]
) -> None:
    _, server = fake_upstream
    client = await gatekeeper_client(str(server.make_url("")), verification__workers="0")
    for headers in ({}, {"Authorization": "Bearer "}, AUTH):
        error = await error_of(await client.get(f"{PREFIX}/openapi.json", headers=headers), 401)
        assert error["code"] == "ADMIN_API_DISABLED" and "disabled" in error["message"]


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "code"),
    [
        ("team/app@sha256:abc", "DIGEST_INVALID"),
        ("team/app@md5:" + "a" * 32, "DIGEST_INVALID"),
        ("Team/App@" + DIGEST, "NAME_INVALID"),
        ("team/app", "BAD_REQUEST"),
    ],
)
async def test_bad_references_are_400(admin: Client, ref: str, code: str) -> None:
    error = await error_of(await admin.get(f"{PREFIX}/images/{ref}", headers=AUTH), 400)
    assert error["code"] == code
    resp = await admin.post(f"{PREFIX}/images/{ref}/release", json={"reason": "x"}, headers=AUTH)
    assert (await error_of(resp, 400))["code"] == code


@pytest.mark.parametrize("ref", ["team/../app", "team/%2e%2e/app", "team%2Fapp"])
async def test_dot_segments_and_encoded_slashes_are_refused(admin: Client, ref: str) -> None:
    """Routing would normalise ``team/../app`` to ``app``; the action must not land there."""
    await seed(admin, "app", DIGEST, "quarantined")
    assert admin.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", admin.port)
    writer.write(
        f"GET {PREFIX}/images/{ref}@{DIGEST} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n".encode()
    )
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), raw
    assert json.loads(body)["error"]["code"] == "NAME_INVALID"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "ok", "expires_in_seconds": 0}, "expires_in_seconds"),
        ({"reason": "ok", "expires_in_seconds": 60, "expires_at": "2999-01-01T00:00:00Z"}, "both"),
        ({"reason": "ok", "expires_at": "2999-01-01T00:00:00"}, "zone offset"),
        ({"reason": "ok", "expires_at": "2000-01-01T00:00:00Z"}, "in the past"),
        ({"reason": "ok", "expires_at": "9999-12-31T00:00:00Z"}, "at most 366 days"),
        ({"reason": "ok", "expires_at": "9999-12-31T23:00:00-10:00"}, "out of range"),
        ({"reason": "ok", "expires_in_seconds": 366 * 86400 + 1}, "expires_in_seconds"),
        ({"reason": "ok", "expires_in": 60}, "expires_in"),
        ({"reason": "ok", "actor": "bad\nactor"}, "actor"),
        ({"reason": "all checks \u202edeliaf"}, "reason: Value error, must not contain control"),
        ({"reason": "ok\x1b[2J"}, "reason: Value error, must not contain control"),
        ({"reason": "ok", "actor": "alice\u2066"}, "actor: Value error, must not contain control"),
    ],
)
async def test_invalid_release_bodies_are_422(
    admin: Client, body: dict[str, Any], field: str
) -> None:
    await seed(admin, "team/app", DIGEST, "quarantined")
    resp = await admin.post(f"{PREFIX}/images/team/app@{DIGEST}/release", json=body, headers=AUTH)
    error = await error_of(resp, 422)
    assert error["code"] == "INVALID_FIELD" and field in error["message"]
    assert error["details"]


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'"reason"', b'{"reason": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"],
)
async def test_malformed_bodies_are_400(admin: Client, raw: bytes) -> None:
    resp = await admin.post(f"{PREFIX}/images/team/app@{DIGEST}/release", data=raw, headers=AUTH)
    assert (await error_of(resp, 400))["code"] == "BAD_REQUEST"


@pytest.mark.parametrize(
    "query",
    ["state=bogus", "limit=0", "limit=100000", "limit=ten", "repository=Bad Name"],
)
async def test_bad_list_queries_are_400(admin: Client, query: str) -> None:
    await error_of(await admin.get(f"{PREFIX}/images?{query}", headers=AUTH), 400)


@pytest.mark.parametrize("query", ["since=yesterday", "until=2030-01-01T00:00:00", "status=99"])
async def test_bad_audit_queries_are_400(admin: Client, query: str) -> None:
    await error_of(await admin.get(f"{PREFIX}/audit?{query}", headers=AUTH), 400)


@pytest.mark.parametrize("key", ["identity", "repository", "action", "digest"])
@pytest.mark.parametrize("character", ["%00", "%0A", "%1B", "%E2%80%AE"])
async def test_control_characters_in_filters_are_400(
    admin: Client, key: str, character: str
) -> None:
    """No name, action or digest holds one; PostgreSQL cannot even compare text with a NUL
    (it answered 503 before)."""
    resp = await admin.get(f"{PREFIX}/audit?{key}=a{character}b", headers=AUTH)
    error = await error_of(resp, 400)
    assert error["message"].startswith(f"{key}: must not contain control"), error


async def test_invalid_dry_run_policy_names_the_field(admin: Client) -> None:
    body = {"policies": [{"name": "p", "repositories": ["*"], "mode": "sometimes"}]}
    resp = await admin.post(f"{PREFIX}/policy/test", json=body, headers=AUTH)
    error = await error_of(resp, 422)
    assert error["message"].startswith("policies.0.mode:")


# -- conflicts and overrides ---------------------------------------------------------------


async def test_actions_on_an_unknown_image_are_409_and_show_is_404(admin: Client) -> None:
    ref = f"team/app@{OTHER}"
    for action, body in (("release", {"reason": "r"}), ("requarantine", {"reason": "r"})):
        resp = await admin.post(f"{PREFIX}/images/{ref}/{action}", json=body, headers=AUTH)
        assert (await error_of(resp, 409))["code"] == "CONFLICT"
    await error_of(await admin.post(f"{PREFIX}/images/{ref}/rescan", headers=AUTH), 409)
    await error_of(await admin.get(f"{PREFIX}/images/{ref}", headers=AUTH), 404)


async def test_release_of_a_passed_image_is_409(admin: Client) -> None:
    """A release with an expiry would quarantine a good image when it ran out."""
    await seed(admin, "team/good", DIGEST, "passed")
    resp = await admin.post(
        f"{PREFIX}/images/team/good@{DIGEST}/release", json={"reason": "r"}, headers=AUTH
    )
    assert "nothing to release" in (await error_of(resp, 409))["message"]


async def test_release_in_an_unmatched_repository_is_409(admin: Client) -> None:
    await seed(admin, "elsewhere/app", DIGEST, "quarantined")
    resp = await admin.post(
        f"{PREFIX}/images/elsewhere/app@{DIGEST}/release", json={"reason": "r"}, headers=AUTH
    )
    assert "no policy matches" in (await error_of(resp, 409))["message"]


async def test_release_then_requarantine_publish_events_with_actor(admin: Client) -> None:
    seen = events(admin)
    await seed(admin, "team/app", DIGEST, "quarantined")
    base = f"{PREFIX}/images/team/app@{DIGEST}"
    resp = await admin.post(
        f"{base}/release",
        json={"reason": "false positive", "actor": "alice", "expires_in_seconds": 3600},
        headers=AUTH,
    )
    assert resp.status == 200, await resp.text()
    released = await resp.json()
    assert released["state"] == "released" and released["released_by"] == "admin-token:alice"
    assert released["release_expires"] and released["pullable"]
    resp = await admin.post(f"{base}/requarantine", json={"reason": "not so false"}, headers=AUTH)
    assert (await resp.json())["state"] == "quarantined"
    assert [(e.event, e.old_state, e.new_state, e.actor) for e in seen] == [
        ("released", "quarantined", "released", "admin-token:alice"),
        ("requarantined", "released", "quarantined", "admin-token"),
    ]
    assert seen[0].reason.startswith("false positive (until ")
    resp = await admin.post(f"{base}/requarantine", json={"reason": "again"}, headers=AUTH)
    assert "nothing to re-quarantine" in (await error_of(resp, 409))["message"]
    history = (await (await admin.get(base, headers=AUTH)).json())["history"]
    assert [h["event"] for h in history] == ["quarantined", "released", "requarantined"]


async def test_a_release_end_with_an_offset_is_stored_as_that_instant(admin: Client) -> None:
    """Ten minutes from now written with -10:00 is ten minutes from now, on either backend,
    and the image stays pullable meanwhile."""
    await seed(admin, "team/app", DIGEST, "quarantined")
    end = datetime.now(UTC) + timedelta(minutes=10)
    written = end.astimezone(timezone(timedelta(hours=-10))).isoformat()
    resp = await admin.post(
        f"{PREFIX}/images/team/app@{DIGEST}/release",
        json={"reason": "hotfix", "expires_at": written},
        headers=AUTH,
    )
    assert resp.status == 200, await resp.text()
    released = await resp.json()
    assert datetime.fromisoformat(released["release_expires"]) == end
    assert released["release_expires"].endswith("+00:00") and released["pullable"]
    async with svc(admin).db() as session:
        stored = await verdicts.get(session, "team/app", DIGEST)
    assert stored is not None and stored.release_expires == end and stored.pullable()


async def test_rescan_keeps_the_verdict_and_queues_a_job(admin: Client) -> None:
    seen = events(admin)
    await seed(admin, "team/app", DIGEST, "passed")
    await seed(admin, "team/app", OTHER, "quarantined")
    await seed(admin, "team/lib", DIGEST, "passed")
    resp = await admin.post(f"{PREFIX}/images/team/app@{DIGEST}/rescan", headers=AUTH)
    assert resp.status == 202 and (await resp.json())["queued"] == 1
    listed = await (await admin.get(f"{PREFIX}/images?state=passed", headers=AUTH)).json()
    assert {(v["repository"], v["digest"]) for v in listed["images"]} == {
        ("team/app", DIGEST),
        ("team/lib", DIGEST),
    }
    resp = await admin.post(f"{PREFIX}/rescan", json={"repository": "team/app"}, headers=AUTH)
    assert (await resp.json())["queued"] == 2
    resp = await admin.post(f"{PREFIX}/rescan", headers=AUTH)
    assert (await resp.json())["queued"] == 3
    assert {e.event for e in seen} == {"rescan-requested"}
    assert all(e.old_state == e.new_state for e in seen)


# -- policy dry-run ------------------------------------------------------------------------


async def test_dry_run_reports_changes_and_writes_nothing(admin: Client) -> None:
    crit = FindingRecord("scan", "CVE-1", "critical", "bad")
    high = FindingRecord("scan", "CVE-2", "high", "meh")
    await seed(admin, "team/app", DIGEST, "quarantined", crit)
    await seed(admin, "team/lib", DIGEST, "quarantined", high)
    waived = {
        "name": "team",
        "repositories": ["team/*"],
        "require": ["scan"],
        "severity_threshold": "critical",
        "waivers": [{"finding": "CVE-1", "reason": "not reachable", "author": "sec"}],
    }
    resp = await admin.post(f"{PREFIX}/policy/test", json={"policies": [waived]}, headers=AUTH)
    result = await resp.json()
    assert result["source"] == "request" and result["examined"] == 2
    assert {(c["repository"], c["current"], c["would_be"]) for c in result["changes"]} == {
        ("team/app", "quarantined", "passed"),
        ("team/lib", "quarantined", "passed"),
    }
    unchanged = await (await admin.post(f"{PREFIX}/policy/test", headers=AUTH)).json()
    assert unchanged["source"] == "settings" and unchanged["changes"] == []
    nothing = await (
        await admin.post(f"{PREFIX}/policy/test", json={"policies": []}, headers=AUTH)
    ).json()
    assert nothing["changes"] == []  # quarantined stays quarantined under "deny everything"
    listed = await (await admin.get(f"{PREFIX}/images", headers=AUTH)).json()
    assert {v["state"] for v in listed["images"]} == {"quarantined"}


# -- the OpenAPI document ------------------------------------------------------------------


def test_openapi_paths_are_exactly_the_routes() -> None:
    doc = build()
    documented = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert documented == {(r.method, r.template) for r in ROUTES}


async def test_openapi_paths_are_exactly_the_registered_routes(admin: Client) -> None:
    (mounted,) = [r for r in app_of(admin).router.resources() if r.canonical == PREFIX]
    assert isinstance(mounted, web.PrefixedSubAppResource)
    registered = {
        (route.method, route.resource.canonical.replace(":.+", ""))
        for route in mounted._app.router.routes()
        if route.resource is not None
    }
    assert registered == {(r.method, r.template) for r in ROUTES}


def test_openapi_document_is_valid() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(build())


@pytest.mark.parametrize(
    ("schema", "model"),
    [
        ("ReleaseRequest", bodies.ReleaseBody),
        ("ReasonRequest", bodies.ReasonBody),
        ("RescanRequest", bodies.RescanBody),
        ("RescanAllRequest", bodies.RescanAllBody),
        ("PolicyTestRequest", bodies.PolicyTestBody),
        ("WaiverRequest", bodies.WaiverBody),
        ("PrefetchRequest", bodies.PrefetchBody),
    ],
)
def test_openapi_request_bodies_match_the_models(schema: str, model: type[Any]) -> None:
    documented = build()["components"]["schemas"][schema]
    assert set(documented["properties"]) == set(model.model_fields)
    required = {name for name, f in model.model_fields.items() if f.is_required()}
    assert set(documented.get("required", [])) == required


async def test_openapi_is_served(admin: Client) -> None:
    resp = await admin.get(f"{PREFIX}/openapi.json", headers=AUTH)
    assert resp.status == 200 and (await resp.json()) == json.loads(json.dumps(build()))
