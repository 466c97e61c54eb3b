"""Waivers over the admin API, in process: made within the actor's scope, applied with the
settings file's waivers, re-deciding stored verdicts (and publishing the changes), withdrawn,
never lifting a hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from proxy.admin.routes import PREFIX
from services.events import VerdictChange
from storage import verdicts
from storage.verdicts import FindingRecord
from tests.fakes.upstream import FakeUpstream
from tests.support.admin_app import (
    Client,
    admin_client,
    as_user,
    effective_state,
    seed_users,
    seed_verdict,
    svc,
)
from verifiers.lifecycle import State

TOKEN = "unit-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DIGEST = "sha256:" + "a" * 64
POLICIES = [
    {
        "name": "all",
        "repositories": ["*"],
        "require": ["scan"],
        "waivers": [{"finding": "CVE-SET", "reason": "from the file", "author": "sec"}],
    }
]
CRITICAL = FindingRecord("scan", "CVE-1", "critical", "bad")


async def seed(client: Client, repository: str, *findings: FindingRecord) -> None:
    await seed_verdict(client, repository, DIGEST, *findings)


async def state(client: Client, repository: str) -> State:
    return await effective_state(client, repository, DIGEST)


@pytest.fixture
async def admin(
    fake_upstream: tuple[FakeUpstream, TestServer], gatekeeper_client: Callable[..., Any]
) -> Client:
    client = await admin_client(gatekeeper_client, fake_upstream[1], POLICIES, TOKEN)
    await seed_users(client, {"tina": ["team/*=admin"], "audrey": ["team/*=auditor"]})
    for repository in ("team/app", "team/lib", "other/app"):
        await seed(client, repository, CRITICAL)
    return client


def published(client: Client) -> list[VerdictChange]:
    seen: list[VerdictChange] = []

    async def listen(change: VerdictChange) -> None:
        seen.append(change)

    svc(client).bus.subscribe(listen)
    return seen


async def test_a_waiver_re_decides_its_scope_and_its_withdrawal_undoes_it(admin: Client) -> None:
    seen = published(admin)
    body = {"finding": "scan:CVE-1", "scope": "team/app", "reason": "not reachable"}
    resp = await admin.post(f"{PREFIX}/waivers", json=body, headers=as_user("tina"))
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    waiver = made["waiver"]
    assert (waiver["author"], waiver["status"], waiver["source"]) == ("tina", "active", "database")
    assert made["reevaluation"]["reevaluated"] == 1 and made["reevaluation"]["changed"] == 1
    assert await state(admin, "team/app") == State.PASSED
    assert await state(admin, "team/lib") == State.QUARANTINED  # outside the waiver's scope
    assert await state(admin, "other/app") == State.QUARANTINED
    assert [(c.repository, c.event, c.new_state) for c in seen] == [
        ("team/app", "passed", "passed")
    ]
    assert seen[0].reason.startswith(f"waiver {waiver['id']} of scan:CVE-1 made by tina")
    async with svc(admin).db() as session:
        stored = await verdicts.get(session, "team/app", DIGEST)
    assert stored is not None and stored.trigger is not None
    assert stored.trigger.startswith(f"waiver {waiver['id']} of scan:CVE-1 made by tina")

    resp = await admin.post(
        f"{PREFIX}/waivers/{waiver['id']}/withdraw",
        json={"reason": "it is reachable after all"},
        headers=as_user("tina"),
    )
    assert resp.status == 200, await resp.text()
    gone = await resp.json()
    assert gone["waiver"]["status"] == "withdrawn" and gone["waiver"]["withdrawn_by"] == "tina"
    assert gone["reevaluation"]["changed"] == 1
    assert await state(admin, "team/app") == State.QUARANTINED
    again = await admin.post(
        f"{PREFIX}/waivers/{waiver['id']}/withdraw", json={"reason": "x"}, headers=ADMIN
    )
    assert again.status == 409
    missing = await admin.post(
        f"{PREFIX}/waivers/99999/withdraw", json={"reason": "x"}, headers=ADMIN
    )
    assert missing.status == 404


@pytest.mark.parametrize("scope", ["*", "other/app", "team*", "t*/app"])
async def test_a_waiver_outside_the_actors_scope_is_refused(admin: Client, scope: str) -> None:
    body = {"finding": "CVE-1", "scope": scope, "reason": "r"}
    resp = await admin.post(f"{PREFIX}/waivers", json=body, headers=as_user("tina"))
    assert resp.status == 403, await resp.text()
    assert (await resp.json())["error"]["message"] == (
        f"{scope} is outside what you may administer: tina may administer team/*"
    )
    listed = await (await admin.get(f"{PREFIX}/waivers?all=true", headers=ADMIN)).json()
    assert [w["source"] for w in listed["waivers"]] == ["settings"]


async def test_readers_list_waivers_and_may_not_make_or_withdraw_them(admin: Client) -> None:
    body = {"finding": "CVE-1", "scope": "other/*", "reason": "the vendor's call"}
    made = await (await admin.post(f"{PREFIX}/waivers", json=body, headers=ADMIN)).json()
    body = {"finding": "CVE-1", "scope": "team/lib", "reason": "r"}
    assert (await admin.post(f"{PREFIX}/waivers", json=body, headers=as_user("tina"))).status == 201

    listed = await (await admin.get(f"{PREFIX}/waivers", headers=as_user("audrey"))).json()
    assert {(w["source"], w["scope"]) for w in listed["waivers"]} == {
        ("database", "team/lib"),
        ("settings", "*"),
    }
    one = await admin.get(f"{PREFIX}/waivers?repository=team/lib", headers=as_user("audrey"))
    assert [w["finding"] for w in (await one.json())["waivers"]] == ["CVE-1", "CVE-SET"]
    outside = await admin.get(f"{PREFIX}/waivers?repository=other/app", headers=as_user("audrey"))
    assert outside.status == 403
    resp = await admin.post(f"{PREFIX}/waivers", json=body, headers=as_user("audrey"))
    assert resp.status == 403
    waiver_id = made["waiver"]["id"]
    for who in ("audrey", "tina"):  # tina administers team/*, the waiver is on other/*
        resp = await admin.post(
            f"{PREFIX}/waivers/{waiver_id}/withdraw", json={"reason": "r"}, headers=as_user(who)
        )
        assert resp.status == 403, who


async def test_a_waiver_never_lifts_an_admins_hold(admin: Client) -> None:
    await seed(admin, "team/held", CRITICAL)
    base = f"{PREFIX}/images/team/held@{DIGEST}"
    for action, why in (("release", "hotfix"), ("requarantine", "signing key leaked")):
        resp = await admin.post(f"{base}/{action}", json={"reason": why}, headers=as_user("tina"))
        assert resp.status == 200, await resp.text()
    body = {"finding": "CVE-1", "scope": "team/*", "reason": "accepted"}
    resp = await admin.post(f"{PREFIX}/waivers", json=body, headers=as_user("tina"))
    assert resp.status == 201
    assert await state(admin, "team/app") == State.PASSED  # the waiver works
    assert await state(admin, "team/held") == State.QUARANTINED  # the hold beats it
    async with svc(admin).db() as session:
        held = await verdicts.get(session, "team/held", DIGEST)
    assert held is not None and held.held_by == "tina"
    assert "held in quarantine by tina" in held.reasons[0]


async def test_the_effective_policy_shows_stored_waivers(admin: Client) -> None:
    body = {"finding": "CVE-1", "scope": "team/app", "reason": "r", "expires_in_seconds": 3600}
    assert (await admin.post(f"{PREFIX}/waivers", json=body, headers=ADMIN)).status == 201
    resp = await admin.get(f"{PREFIX}/policies?repository=team/app", headers=as_user("audrey"))
    shown = await resp.json()
    assert [w["finding"] for w in shown["policy"]["waivers"]] == ["CVE-SET", "CVE-1"]
    assert shown["policy"]["waivers"][1]["expires"] is not None
    assert shown["version"] == svc(admin).policies.match("team/app").version
    everything = await admin.get(f"{PREFIX}/policies", headers=as_user("audrey"))
    assert everything.status == 403
    everything = await admin.get(f"{PREFIX}/policies", headers=ADMIN)
    assert [p["name"] for p in (await everything.json())["policies"]] == ["all"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "team/*", "reason": "r"}, "finding"),
        ({"finding": "CVE 1", "scope": "team/*", "reason": "r"}, "finding"),
        ({"finding": "CVE-1", "scope": "team/*", "reason": "all \u202edeliaf"}, "reason"),
        ({"finding": "CVE-1\x1b", "scope": "team/*", "reason": "r"}, "finding"),
        ({"finding": "CVE-1", "scope": "team/*", "reason": "r", "expires_in_seconds": 4e7}, "exp"),
        ({"finding": "CVE-1", "scope": "team/*", "reason": "r", "author": "me"}, "author"),
    ],
)
async def test_invalid_waivers_are_422(admin: Client, body: dict[str, Any], field: str) -> None:
    resp = await admin.post(f"{PREFIX}/waivers", json=body, headers=ADMIN)
    assert resp.status == 422, await resp.text()
    assert field in (await resp.json())["error"]["message"]
