"""The admin side of re-evaluation in process: ``POST /policy/reevaluate`` (and the start-up hook
it shares its engine with), the SBOM endpoint, their OpenAPI entries, and ``gatekeeper policy
reevaluate`` against httpx's MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer

from cli.admin import run_command
from cli.main import build_parser
from config.policy import Policy
from proxy.admin import bodies
from proxy.admin.openapi import build
from proxy.admin.routes import PREFIX
from proxy.state import SERVICES, Services
from services.events import VerdictChange
from storage import verdicts
from storage.inventory import DbInventoryStore
from storage.verdicts import DecisionRecord, FindingRecord
from tests.fakes.upstream import FakeUpstream
from verifiers.lifecycle import State
from verifiers.scan.model import ImageInventory, OsRelease, Package

TOKEN = "unit-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DIGEST = "sha256:" + "a" * 64
POLICY = {"name": "team", "repositories": ["team/*"], "require": ["scan"]}
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
        policies=json.dumps([{**POLICY, "severity_threshold": "low"}]),
    )
    return client


def svc(client: Client) -> Services:
    server = client.server
    assert isinstance(server, TestServer)
    return server.app[SERVICES]


async def seed_passed_under_an_older_policy(client: Client) -> None:
    """Passed under the ``high`` threshold; the configured policy now blocks at ``low``."""
    older = Policy.model_validate(POLICY)
    record = DecisionRecord(
        state=State.PASSED,
        reasons=(),
        policy=older.name,
        policy_version=older.version,
        data_versions={"scan": "1"},
        outcomes=({"verifier": "scan", "version": "1", "status": "ok", "detail": ""},),
        findings=(FindingRecord("scan", "CVE-9", "medium", "meh"),),
    )
    async with svc(client).db() as session, session.begin():
        await verdicts.record_decision(session, "team/app", DIGEST, record)


async def test_reevaluate_applies_the_configured_policy_and_publishes(admin: Client) -> None:
    await seed_passed_under_an_older_policy(admin)
    seen: list[VerdictChange] = []

    async def listen(change: VerdictChange) -> None:
        seen.append(change)

    svc(admin).bus.subscribe(listen)
    resp = await admin.post(
        f"{PREFIX}/policy/reevaluate", json={"actor": "alice", "reason": "tightened"}, headers=AUTH
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["reevaluated"], body["changed"], body["quarantined"]) == (1, 1, 1)
    shown = await (await admin.get(f"{PREFIX}/images/team/app@{DIGEST}", headers=AUTH)).json()
    assert shown["state"] == "quarantined" and shown["trigger"].startswith("policy-change")
    assert [(c.event, c.new_state) for c in seen] == [("quarantined", "quarantined")]
    again = await (await admin.post(f"{PREFIX}/policy/reevaluate", headers=AUTH)).json()
    assert again["reevaluated"] == 0


async def test_reevaluate_validates_its_body(admin: Client) -> None:
    bad = await admin.post(
        f"{PREFIX}/policy/reevaluate", json={"repository": "UPPER/case"}, headers=AUTH
    )
    assert bad.status == 422
    unknown = await admin.post(f"{PREFIX}/policy/reevaluate", json={"force": True}, headers=AUTH)
    assert unknown.status == 422


async def test_start_up_redecides_verdicts_of_another_policy_version(
    fake_upstream: tuple[FakeUpstream, TestServer],
    gatekeeper_client: Callable[..., Any],
    admin: Client,
) -> None:
    await seed_passed_under_an_older_policy(admin)
    _, server = fake_upstream
    # a second gatekeeper on the same database starts with the stricter policy
    restarted: Client = await gatekeeper_client(
        str(server.make_url("")),
        admin_token=TOKEN,
        verification__workers="0",
        policies=json.dumps([{**POLICY, "severity_threshold": "medium"}]),
    )
    shown = await (await restarted.get(f"{PREFIX}/images/team/app@{DIGEST}", headers=AUTH)).json()
    assert shown["state"] == "quarantined", shown
    assert shown["trigger"].startswith("policy-change (policy team version ")


async def test_sbom_of_a_stored_inventory(admin: Client) -> None:
    path = f"{PREFIX}/repositories/team/app/manifests/{DIGEST}/sbom"
    missing = await admin.get(path, headers=AUTH)
    assert missing.status == 404 and "no inventory" in (await missing.json())["error"]["message"]
    inventory = ImageInventory(
        os_release=OsRelease("debian", "12"),
        packages=(Package("pypi", "demo", "1.0", "x/METADATA", purl="pkg:pypi/demo@1.0"),),
    )
    await DbInventoryStore(svc(admin).db).store("team/app", DIGEST, inventory)
    resp = await admin.get(path, headers=AUTH)
    assert resp.status == 200 and resp.content_type == "application/vnd.cyclonedx+json"
    bom = json.loads(await resp.read())
    assert any(c["name"] == "demo" and c["version"] == "1.0" for c in bom["components"])
    assert (await admin.get(path)).status == 401
    bad = await admin.get(
        f"{PREFIX}/repositories/team/app/manifests/sha256:nope/sbom", headers=AUTH
    )
    assert (await bad.json())["error"]["code"] == "DIGEST_INVALID"
    bad = await admin.get(f"{PREFIX}/repositories/Bad..Name/manifests/{DIGEST}/sbom", headers=AUTH)
    assert (await bad.json())["error"]["code"] == "NAME_INVALID"


def test_openapi_documents_the_reevaluate_body() -> None:
    documented = build()["components"]["schemas"]["PolicyReevaluateRequest"]
    assert set(documented["properties"]) == set(bodies.PolicyReevaluateBody.model_fields)


def test_policy_reevaluate_command(capsys: pytest.CaptureFixture[str]) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        result = {
            "repository": "team/app",
            "reevaluated": 3,
            "changed": 1,
            "quarantined": 1,
            "notified": 0,
            "skipped_unreadable": 0,
            "seconds": 0.01,
        }
        return httpx.Response(200, json=result)

    args = build_parser().parse_args(
        ["policy", "reevaluate", "-r", "team/app", "--reason", "new rules", "--actor", "bob"]
    )
    status = run_command(
        args.admin_command, args, {"GATEKEEPER_ADMIN_TOKEN": "t"}, httpx.MockTransport(handler)
    )
    assert status == 0
    (request,) = sent
    assert request.url.path == "/admin/api/v1/policy/reevaluate"
    assert json.loads(request.content) == {
        "repository": "team/app",
        "reason": "new rules",
        "actor": "bob",
    }
    assert capsys.readouterr().out.startswith("3 verdicts decided under another policy version")
