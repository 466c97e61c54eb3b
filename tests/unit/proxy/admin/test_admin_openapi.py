"""The admin API's OpenAPI document is generated from the route table and the models: it is a
valid OpenAPI 3.1 document, it describes exactly the routes the admin app registers, and every
answer the handlers really give (successes and errors, for every route) has a status the
document lists and a body its schema accepts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from openapi_spec_validator import validate

from proxy.admin.models import Verdict
from proxy.admin.openapi import build
from proxy.admin.openapi_operations import OPERATIONS
from proxy.admin.routes import PREFIX, ROUTES, admin_app
from storage.inventory import DbInventoryStore
from storage.verdicts import FindingRecord
from tests.fakes.upstream import FakeUpstream
from tests.support.admin_app import admin_client, as_user, seed_users, seed_verdict, svc
from tests.support.documented import Documented
from tests.support.vex import document, statement
from verifiers.scan.model import ImageInventory, OsRelease, Package

TOKEN = "unit-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "e" * 64
WAIVER = {"finding": "CVE-9", "repositories": ["team/*"], "reason": "known", "author": "sam"}
POLICIES = [{"name": "all", "repositories": ["*"], "require": ["scan"], "waivers": [WAIVER]}]
CRITICAL = FindingRecord("scan", "CVE-1", "critical", "bad", fix="1.2", blob=DIGEST)


def test_the_document_is_valid_openapi() -> None:
    validate(build())
    assert build()["openapi"] == "3.1.0"


def test_the_document_describes_exactly_the_registered_routes() -> None:
    registered = {
        (route.method, PREFIX + route.resource.canonical.replace(":.+", "").replace(r":\d+", ""))
        for route in admin_app().router.routes()
        if route.resource is not None
    }
    documented = {
        (method.upper(), path)
        for path, item in build()["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert documented == registered and len(registered) == len(ROUTES)
    assert set(OPERATIONS) == {route.name for route in ROUTES}


def test_every_path_parameter_is_declared() -> None:
    for path, item in build()["paths"].items():
        declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        assert declared == {part[1:-1] for part in path.split("/") if part.startswith("{")}


def test_the_schemas_are_the_models() -> None:
    schemas = build()["components"]["schemas"]
    verdict = schemas["Verdict"]
    assert set(verdict["properties"]) == set(Verdict.model_fields) == set(verdict["required"])
    assert verdict["additionalProperties"] is False
    # The answers' waiver is the stored one, not the settings file's model of the same name.
    listed = schemas["Waivers"]["properties"]["waivers"]["items"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in listed["oneOf"]} == {
        "StoredWaiver",
        "SettingsWaiver",
    }


async def test_the_document_is_served_as_built(documented: Documented) -> None:
    assert await documented.call("GET", "/openapi.json", 200) == build()


@pytest.fixture
async def documented(
    fake_upstream: tuple[FakeUpstream, TestServer], gatekeeper_client: Callable[..., Any]
) -> Documented:
    client = await admin_client(gatekeeper_client, fake_upstream[1], POLICIES, TOKEN)
    await seed_users(client, {"tina": ["team/*=admin"]})
    await seed_verdict(client, "team/app", DIGEST, CRITICAL)
    await seed_verdict(client, "team/lib", OTHER)
    return Documented(client, ADMIN)


def succeeded(documented: Documented) -> set[str]:
    return {name for name, status in documented.seen if status < 300}


async def test_image_answers_match_the_document(documented: Documented) -> None:
    call, image = documented.call, f"/images/team/app@{DIGEST}"
    listed = await call("GET", "/images?limit=10", 200)
    assert {v["repository"] for v in listed["images"]} == {"team/app", "team/lib"}
    shown = await call("GET", image, 200)
    assert shown["findings"][0]["fix"] == "1.2" and shown["outcomes"][0]["verifier"] == "scan"
    await call("POST", image + "/requarantine", 409, json={"reason": "r"})
    await call("POST", image + "/release", 422, json={"reason": "r", "expires_in": 5})
    released = await call("POST", image + "/release", 200, json={"reason": "r", "actor": "al"})
    assert released["state"] == "released" and released["released_by"] == "admin-token:al"
    await call("POST", image + "/requarantine", 200, json={"reason": "again"})
    await call("POST", image + "/rescan", 202)
    await call("POST", "/rescan", 202, json={"repository": "team/lib"})
    fetched = await call("POST", "/prefetch", 202, json={"images": ["team/app:1.0"]})
    assert fetched["images"][0]["error"]
    await call("GET", f"/images/team/app@{OTHER}", 404)
    await call("GET", "/images/team/app", 400)
    await call("GET", "/images?state=bogus", 400)
    await call("GET", "/images", 401, headers={"Authorization": "Bearer wrong"})
    await call("POST", "/rescan", 403, headers=as_user("tina"))
    wanted = {"admin.images", "admin.image", "admin.release", "admin.requarantine"}
    wanted |= {"admin.rescan", "admin.rescan-all", "admin.prefetch"}
    assert wanted <= succeeded(documented)


async def test_policy_answers_match_the_document(documented: Documented) -> None:
    call = documented.call
    tested = await call("POST", "/policy/test", 200, json={"policies": []})
    assert tested["source"] == "request"
    await call("POST", "/policy/test", 422, json={"policies": [{"name": 1}]})
    await call("POST", "/policy/reevaluate", 200, json={"repository": "team/app"})
    listed = await call("GET", "/policies", 200)
    assert [p["name"] for p in listed["policies"]] == ["all"]
    effective = await call("GET", "/policies?repository=team/app", 200)
    assert effective["origin"] == "local"
    await call("GET", "/policies?repository=team/app&origin=nowhere", 400)
    wanted = {"admin.policy-test", "admin.policy-reevaluate", "admin.policies"}
    assert wanted <= succeeded(documented)


async def test_waiver_and_vex_answers_match_the_document(documented: Documented) -> None:
    call = documented.call
    body = {"finding": "CVE-1", "scope": "team/*", "reason": "accepted", "expires_in_seconds": 60}
    made = await call("POST", "/waivers", 201, json=body)
    waiver = made["waiver"]["id"]
    listed = await call("GET", "/waivers?all=true", 200)
    assert {w["source"] for w in listed["waivers"]} == {"database", "settings"}
    await call("POST", f"/waivers/{waiver}/withdraw", 200, json={"reason": "no longer"})
    await call("POST", f"/waivers/{waiver}/withdraw", 409, json={"reason": "twice"})
    await call("POST", "/waivers/999/withdraw", 404, json={"reason": "none"})
    vex = document(statement("CVE-1", [f"pkg:oci/app@{DIGEST}"]))
    added = await call(
        "POST", "/vex", 201, json={"document": vex, "scope": "team/*", "reason": "r"}
    )
    assert added["reevaluation"]["reevaluated"] >= 0
    await call("GET", "/vex?all=true", 200)
    await call("POST", f"/vex/{added['vex']['id']}/withdraw", 200, json={"reason": "r"})
    await call("POST", "/vex", 422, json={"document": {}, "scope": "team/*", "reason": "r"})
    wanted = {"admin.waive", "admin.waivers", "admin.waiver-withdraw"}
    wanted |= {"admin.vex", "admin.vex-add", "admin.vex-withdraw"}
    assert wanted <= succeeded(documented)


async def test_audit_and_sbom_answers_match_the_document(documented: Documented) -> None:
    call, sbom = documented.call, f"/repositories/team/app/manifests/{DIGEST}/sbom"
    await call("GET", sbom, 404)
    inventory = ImageInventory(
        os_release=OsRelease("debian", "12"),
        packages=(Package("pypi", "demo", "1.0", "x/METADATA", purl="pkg:pypi/demo@1.0"),),
    )
    await DbInventoryStore(svc(documented.client).db).store("team/app", DIGEST, inventory)
    assert (await call("GET", sbom, 200))["bomFormat"] == "CycloneDX"
    for _ in range(100):  # the access log is written in batches
        records = (await call("GET", "/audit?action=admin.sbom", 200))["records"]
        if records:
            break
        await asyncio.sleep(0.05)
    assert records and records[0]["status"] == 404
    await call("GET", "/audit?since=yesterday", 400)
    assert {"admin.audit", "admin.sbom"} <= succeeded(documented)
