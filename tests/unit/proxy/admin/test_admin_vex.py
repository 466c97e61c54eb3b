"""VEX over the admin API and as stored referrers, in process: a document accepted within the
actor's scope re-decides the verdicts it names from stored findings (publishing the changes),
its withdrawal takes that back, a malformed one changes nothing, and a stored referrer counts
only in its own repository while the policy trusts the key that signed it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from config.policy import Policy
from oci.manifests import parse_manifest
from proxy.admin.routes import PREFIX
from services import vex_intake
from services.events import VerdictChange
from services.examine import Fetched
from services.policybook import PolicyBook
from storage import manifests, vex
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
from tests.support.cosign import new_key, public_pem
from tests.support.ocihttp import OCI_MANIFEST, digest_of
from tests.support.vex import bundle, document, in_toto, referrer_manifest, statement
from verifiers.lifecycle import State
from verifiers.signatures.keys import PublicKey

TOKEN = "unit-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "e" * 64
POLICIES = [{"name": "all", "repositories": ["*"], "require": ["scan"]}]
CRITICAL = FindingRecord("scan", "CVE-1", "critical", "bad")


async def seed(client: Client, repository: str, digest: str = DIGEST) -> None:
    await seed_verdict(client, repository, digest, CRITICAL)


async def state(client: Client, repository: str, digest: str = DIGEST) -> State:
    return await effective_state(client, repository, digest)


@pytest.fixture
async def admin(
    fake_upstream: tuple[FakeUpstream, TestServer], gatekeeper_client: Callable[..., Any]
) -> Client:
    client = await admin_client(gatekeeper_client, fake_upstream[1], POLICIES, TOKEN)
    await seed_users(client, {"tina": ["team/*=admin"]})
    for repository in ("team/app", "team/lib"):
        await seed(client, repository)
    await seed(client, "team/app", OTHER)
    return client


def published(client: Client) -> list[VerdictChange]:
    seen: list[VerdictChange] = []

    async def listen(change: VerdictChange) -> None:
        seen.append(change)

    svc(client).bus.subscribe(listen)
    return seen


async def test_a_vex_document_releases_what_it_names_and_its_withdrawal_undoes_it(
    admin: Client,
) -> None:
    seen = published(admin)
    doc = document(statement("CVE-1", [DIGEST]), author="Vendor PSIRT")
    body = {"document": doc, "scope": "team/*", "reason": "vendor analysis"}
    resp = await admin.post(f"{PREFIX}/vex", json=body, headers=as_user("tina"))
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    assert (made["vex"]["author"], made["vex"]["added_by"]) == ("Vendor PSIRT", "tina")
    assert made["reevaluation"]["changed"] == 2
    assert await state(admin, "team/app") == State.PASSED
    assert await state(admin, "team/lib") == State.PASSED
    assert await state(admin, "team/app", OTHER) == State.QUARANTINED  # another image
    assert {(c.repository, c.digest, c.event) for c in seen} == {
        ("team/app", DIGEST, "passed"),
        ("team/lib", DIGEST, "passed"),
    }
    vex_id = made["vex"]["id"]
    assert seen[0].reason.startswith(f"VEX {vex_id} by Vendor PSIRT added by tina")
    policy = svc(admin).policies.match("team/app")
    (waiver,) = policy.waivers
    assert waiver.reason.startswith(f"VEX {vex_id} by Vendor PSIRT, 2026-01-01T00:00:00Z")
    assert waiver.digests == [DIGEST]

    resp = await admin.post(
        f"{PREFIX}/vex/{vex_id}/withdraw", json={"reason": "wrong analysis"}, headers=ADMIN
    )
    assert resp.status == 200, await resp.text()
    gone = await resp.json()
    assert gone["vex"]["status"] == "withdrawn" and gone["reevaluation"]["changed"] == 2
    assert await state(admin, "team/app") == State.QUARANTINED
    assert await state(admin, "team/lib") == State.QUARANTINED
    assert [c.event for c in seen[2:]] == ["quarantined", "quarantined"]
    again = await admin.post(f"{PREFIX}/vex/{vex_id}/withdraw", json={"reason": "x"}, headers=ADMIN)
    assert again.status == 409
    listed = await (await admin.get(f"{PREFIX}/vex?all=true", headers=ADMIN)).json()
    assert [(d["id"], d["status"]) for d in listed["vex"]] == [(vex_id, "withdrawn")]


async def test_a_malformed_or_out_of_scope_document_changes_nothing(admin: Client) -> None:
    bad = document(statement("CVE-1", [DIGEST]))
    bad["statements"][0].pop("justification")
    body = {"document": bad, "scope": "team/*", "reason": "r"}
    resp = await admin.post(f"{PREFIX}/vex", json=body, headers=ADMIN)
    assert resp.status == 422
    assert "justification" in (await resp.json())["error"]["message"]
    good = {"document": document(statement("CVE-1", [DIGEST])), "scope": "*", "reason": "r"}
    resp = await admin.post(f"{PREFIX}/vex", json=good, headers=as_user("tina"))
    assert resp.status == 403
    async with svc(admin).db() as session:
        assert await vex.listed(session, include_withdrawn=True) == []
    assert await state(admin, "team/app") == State.QUARANTINED


async def test_a_stored_referrer_counts_only_where_and_while_its_key_is_trusted(
    admin: Client,
) -> None:
    pem = public_pem(new_key()).decode()
    key = PublicKey.from_pem(pem.encode())
    trusting = Policy.model_validate(
        {
            "name": "p",
            "repositories": ["*"],
            "require": ["scan"],
            "vex": {"keys": [public_pem(new_key()).decode(), pem]},
        }
    )
    doc = json.dumps(document(statement("CVE-1", [DIGEST])))
    async with svc(admin).db() as session, session.begin():
        stored = await vex.add(
            session,
            source=vex.REFERRER,
            scope="team/app",
            subject=DIGEST,
            referrer="sha256:" + "f" * 64,
            signer=key.key_id,
            document=doc,
            author="a",
            added_by="gatekeeper",
        )
    book = PolicyBook([trusting], (), [stored])
    assert [w.digests for w in book.match("team/app").waivers] == [[DIGEST]]
    assert book.match("team/lib").waivers == []  # a referrer speaks for its own repository
    untrusting = trusting.model_copy(update={"vex": None})
    assert PolicyBook([untrusting], (), [stored]).match("team/app").waivers == []


async def test_deleting_a_referrer_withdraws_only_a_document_that_only_waives(
    admin: Client,
) -> None:
    """Withdrawing an ``affected`` statement could bring back an older ``not_affected`` it
    overrode: a referrer's deletion never does that (only an admin withdraws such a one)."""
    waives = document(statement("CVE-1", [DIGEST]))
    retracts = document(statement("CVE-1", [DIGEST], "affected"), timestamp="2026-02-01T00:00:00Z")
    made = {}
    async with svc(admin).db() as session, session.begin():
        for name, doc in (("waives", waives), ("retracts", retracts)):
            made[name] = await vex.add(
                session,
                source=vex.REFERRER,
                scope="team/app",
                subject=DIGEST,
                referrer="sha256:" + ("1" if name == "waives" else "2") * 64,
                signer="sha256:" + "0" * 64,
                document=json.dumps(doc),
                author="a",
                added_by="gatekeeper",
            )
    db = svc(admin).db
    kept = await vex_intake.referrer_deleted(db, "team/app", made["retracts"].referrer or "", "x")
    assert kept is None
    gone = await vex_intake.referrer_deleted(db, "team/app", made["waives"].referrer or "", "ci")
    assert gone is not None and (gone.id, gone.withdrawn_by) == (made["waives"].id, "ci")
    assert gone.withdraw_reason == vex_intake.DELETED
    async with db() as session:
        assert [d.id for d in await vex.active(session)] == [made["retracts"].id]
    assert await vex_intake.referrer_deleted(db, "team/app", "sha256:" + "3" * 64, "x") is None


class Blobs:
    """The referrer's layers, as ``UpstreamBlobs.read`` gives them."""

    def __init__(self, *blobs: bytes) -> None:
        self.blobs = {digest_of(b): b for b in blobs}

    async def read(self, digest: str, limit: int) -> bytes | None:
        return self.blobs.get(digest)


async def test_a_referrer_deleted_while_it_was_verified_brings_no_vex(admin: Client) -> None:
    """A second verification of a referrer (queued while its subject was decided) that read it
    before it was deleted must not store again the document its deletion withdrew."""
    key = new_key()
    trusting = Policy.model_validate(
        {"name": "p", "repositories": ["*"], "vex": {"keys": [public_pem(key).decode()]}}
    )
    predicate = document(statement("CVE-1", [DIGEST]))
    signed = bundle(key, in_toto(predicate, DIGEST, "registry.example/team/app"))
    body = referrer_manifest(signed, DIGEST)
    record = parse_manifest("team/app", body, OCI_MANIFEST, digest_of(body))
    fetched = Fetched(record, json.loads(body), DIGEST)
    blobs = Blobs(signed)
    db = svc(admin).db

    async def active() -> list[vex.StoredVex]:
        async with db() as session:
            return await vex.active(session)

    async with db() as session, session.begin():
        await manifests.record_manifest(session, record, None)
    first = await vex_intake.intake(db, blobs, fetched, trusting)  # type: ignore[arg-type]
    assert first is not None and first.stored is not None
    assert [d.id for d in await active()] == [first.stored.id]

    async with db() as session, session.begin():
        await manifests.forget_manifest(session, "team/app", record.digest)
    assert await vex_intake.referrer_deleted(db, "team/app", record.digest, "ci") is not None
    late = await vex_intake.intake(db, blobs, fetched, trusting)  # type: ignore[arg-type]
    assert late is not None and late.stored is None
    assert late.outcome.detail == vex_intake.GONE
    assert await active() == []

    # Pushed again, the same referrer is indexed again and its document is believed again.
    async with db() as session, session.begin():
        await manifests.record_manifest(session, record, None)
    again = await vex_intake.intake(db, blobs, fetched, trusting)  # type: ignore[arg-type]
    assert again is not None and again.stored is not None
    assert [d.id for d in await active()] == [again.stored.id]
