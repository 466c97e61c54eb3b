"""Scoped administration in process: what a team admin, an auditor, a quarantine-reader and a
plain user may do through the admin API, and what each refusal says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from proxy.admin.routes import PREFIX
from storage import verdicts
from storage.verdicts import DecisionRecord
from tests.fakes.upstream import FakeUpstream
from tests.support.admin_app import Client, admin_client, as_user, seed_users, svc
from verifiers.lifecycle import State

TOKEN = "unit-admin-token"
TOKEN_AUTH = {"Authorization": f"Bearer {TOKEN}"}
DIGEST = "sha256:" + "a" * 64
POLICIES = [{"name": "all", "repositories": ["*"], "require": ["scan"]}]
USERS = {
    "tina": ["team/*=admin", "team/*=pull"],
    "gale": ["*=admin"],
    "audrey": ["team/*=auditor"],
    "quinn": ["team/*=quarantine-reader,pull"],
    "paul": ["*=pull,push"],
}


async def seed(client: Client, repository: str, state: str) -> None:
    record = DecisionRecord(
        state=State(state),
        reasons=("1 critical (CVE-1)",) if state == "quarantined" else (),
        policy="all",
        policy_version="v",
        data_versions={"scan": "1"},
        outcomes=({"verifier": "scan", "version": "1", "status": "ok", "detail": ""},),
    )
    async with svc(client).db() as session, session.begin():
        await verdicts.record_decision(session, repository, DIGEST, record)


@pytest.fixture
async def admin(
    fake_upstream: tuple[FakeUpstream, TestServer], gatekeeper_client: Callable[..., Any]
) -> Client:
    client = await admin_client(gatekeeper_client, fake_upstream[1], POLICIES, TOKEN)
    await seed_users(client, USERS)
    for repository in ("team/app", "other/app"):
        await seed(client, repository, "quarantined")
    return client


async def error(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    return str((await resp.json())["error"]["message"])


async def listed(client: Client, headers: dict[str, str]) -> set[str]:
    resp = await client.get(f"{PREFIX}/images", headers=headers)
    assert resp.status == 200, await resp.text()
    return {v["repository"] for v in (await resp.json())["images"]}


async def test_a_team_admin_sees_and_acts_only_in_its_scope(admin: Client) -> None:
    tina = as_user("tina")
    assert await listed(admin, tina) == {"team/app"}
    assert await listed(admin, TOKEN_AUTH) == {"team/app", "other/app"}
    assert (await admin.get(f"{PREFIX}/images/team/app@{DIGEST}", headers=tina)).status == 200
    message = await error(await admin.get(f"{PREFIX}/images/other/app@{DIGEST}", headers=tina), 403)
    assert message == "other/app is outside what you may read: tina may administer team/*"
    resp = await admin.get(f"{PREFIX}/images?repository=other/app", headers=tina)
    await error(resp, 403)

    body = {"reason": "accepted by the team"}
    resp = await admin.post(f"{PREFIX}/images/team/app@{DIGEST}/release", json=body, headers=tina)
    assert resp.status == 200 and (await resp.json())["released_by"] == "tina"
    for action in ("release", "requarantine", "rescan"):
        resp = await admin.post(
            f"{PREFIX}/images/other/app@{DIGEST}/{action}", json=body, headers=tina
        )
        message = await error(resp, 403)
        assert message == "other/app is outside what you may administer: tina may administer team/*"
    async with svc(admin).db() as session:
        other = await verdicts.get(session, "other/app", DIGEST)
    assert other is not None and other.state == State.QUARANTINED


async def test_unknown_images_outside_the_scope_are_refused_before_lookup(admin: Client) -> None:
    """403, not 404: a refusal must not tell a team admin what exists elsewhere."""
    missing = "sha256:" + "f" * 64
    resp = await admin.get(f"{PREFIX}/images/other/app@{missing}", headers=as_user("tina"))
    await error(resp, 403)
    resp = await admin.get(f"{PREFIX}/images/team/app@{missing}", headers=as_user("tina"))
    await error(resp, 404)


async def test_settings_wide_actions_need_the_global_admin(admin: Client) -> None:
    tina, gale = as_user("tina"), as_user("gale")
    for method, path, body in (
        ("POST", "/policy/test", {}),
        ("POST", "/policy/reevaluate", {}),
        ("POST", "/rescan", {}),
        ("GET", "/openapi.json", None),
    ):
        resp = await admin.request(method, PREFIX + path, json=body, headers=tina)
        message = await error(resp, 403)
        assert "tina may administer team/*" in message, message
        resp = await admin.request(method, PREFIX + path, json=body, headers=gale)
        assert resp.status in (200, 202), await resp.text()
    resp = await admin.post(f"{PREFIX}/rescan", json={"repository": "team/app"}, headers=tina)
    assert resp.status == 202 and (await resp.json())["queued"] == 1
    resp = await admin.post(f"{PREFIX}/rescan", json={"repository": "other/app"}, headers=tina)
    await error(resp, 403)


@pytest.mark.parametrize("reader", ["audrey", "quinn"])
async def test_readers_read_in_their_scope_and_never_act(admin: Client, reader: str) -> None:
    headers = as_user(reader)
    assert await listed(admin, headers) == {"team/app"}
    resp = await admin.get(f"{PREFIX}/images/team/app@{DIGEST}", headers=headers)
    detail = await resp.json()
    assert resp.status == 200 and detail["history"] and "findings" in detail
    await error(await admin.get(f"{PREFIX}/images/other/app@{DIGEST}", headers=headers), 403)
    resp = await admin.post(
        f"{PREFIX}/images/team/app@{DIGEST}/release", json={"reason": "r"}, headers=headers
    )
    message = await error(resp, 403)
    assert message == (
        f"admin.release needs the admin role; {reader} administers nothing (it may read team/*)"
    )
    sbom = await admin.get(
        f"{PREFIX}/repositories/team/app/manifests/{DIGEST}/sbom", headers=headers
    )
    assert sbom.status == 404  # read, found nothing inventoried
    other = f"{PREFIX}/repositories/other/app/manifests/{DIGEST}/sbom"
    await error(await admin.get(other, headers=headers), 403)


async def test_identities_without_an_admin_api_role_are_refused(admin: Client) -> None:
    message = await error(await admin.get(f"{PREFIX}/images", headers=as_user("paul")), 403)
    assert "paul holds no admin, auditor or quarantine-reader grant" in message


async def test_the_access_log_is_filtered_to_the_readers_scope(admin: Client) -> None:
    for repository in ("team/app", "other/app"):
        await admin.get(f"{PREFIX}/images/{repository}@{DIGEST}", headers=TOKEN_AUTH)
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        resp = await admin.get(f"{PREFIX}/audit?action=admin.image", headers=TOKEN_AUTH)
        rows = (await resp.json())["records"]
        if len(rows) >= 2:
            break
        await asyncio.sleep(0.05)
    assert {r["repository"] for r in rows} == {"team/app", "other/app"}
    resp = await admin.get(f"{PREFIX}/audit?action=admin.image", headers=as_user("audrey"))
    assert {r["repository"] for r in (await resp.json())["records"]} == {"team/app"}
    resp = await admin.get(f"{PREFIX}/audit?repository=other/app", headers=as_user("audrey"))
    await error(resp, 403)


async def test_prefetch_needs_the_admin_role_on_every_repository_named(
    admin: Client, fake_upstream: tuple[FakeUpstream, TestServer]
) -> None:
    """Prefetching spends the remote's pull limit and the workers: an admin action, refused
    before anything is asked of the registry."""
    fake, _ = fake_upstream
    tina = as_user("tina")
    body = {"images": ["team/app:1.0", "other/app:1.0"]}
    message = await error(await admin.post(f"{PREFIX}/prefetch", json=body, headers=tina), 403)
    assert message == "other/app is outside what you may administer: tina may administer team/*"
    resp = await admin.post(f"{PREFIX}/prefetch", json=body, headers=as_user("audrey"))
    await error(resp, 403)
    assert not [seen for seen in fake.seen if "/manifests/" in seen[1]]
    resp = await admin.post(f"{PREFIX}/prefetch", json={"images": ["team/app:1.0"]}, headers=tina)
    assert resp.status == 202, await resp.text()
    (item,) = (await resp.json())["images"]
    assert item["error"] == "team/app:1.0: the registry has no such image" and not item["queued"]
    bad = {"images": ["docker.io/library/alpine:3.20"]}
    message = await error(await admin.post(f"{PREFIX}/prefetch", json=bad, headers=tina), 422)
    assert message.startswith("images.0: ") and "reads as a registry host" in message
