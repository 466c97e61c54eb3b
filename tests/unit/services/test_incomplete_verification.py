"""A verification that cannot complete (every attempt failed, the job dead-lettered) leaves a
failure verdict that says why, never an image pending for ever; one that completes later
replaces it. Through the real verification service, its queue and a fake registry whose blobs
live in a fake object store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import update

from config.settings import load_settings
from services.events import EventBus, VerdictChange
from services.incomplete import RULE as INCOMPLETE_RULE
from services.policybook import load_book
from services.verification import VerificationService
from storage import jobs, verdicts
from storage.db import create_engine, sessionmaker, upgrade
from storage.layer_cache import DbLayerCache
from storage.models import Job
from storage.timeutil import now
from tests.fakes.objectstore import PASSWORD, USERNAME, FakeStore, RedirectingRegistry
from tests.support.database import Database
from tests.support.ocihttp import OCI_MANIFEST, digest_of, image_config, image_manifest, tar_layer
from tests.support.procs import free_port
from upstream.client import Upstream, make_client_session, make_token_client
from verifiers.lifecycle import State
from verifiers.registry import build_verifiers

CONFIG = image_config(layers=1)
LAYER, _ = tar_layer({"etc/motd": b"a layer the secrets check reads whole\n"})
MANIFEST = image_manifest(CONFIG, [LAYER])
DIGEST = digest_of(MANIFEST)
REPO = "team/app"


def policies(mode: str = "enforce", *also: str) -> str:
    """One policy for every repository, requiring config-sanity (and ``also``)."""
    require = ["config-sanity", *also]
    return json.dumps([{"name": "strict", "repositories": ["*"], "require": require, "mode": mode}])


@dataclass
class Rig:
    service: VerificationService
    registry: RedirectingRegistry
    store: FakeStore
    store_url: str
    db: Any
    changes: list[VerdictChange] = field(default_factory=list)
    incomplete: list[None] = field(default_factory=list)

    def store_comes_back(self) -> None:
        self.registry.store_url = self.store_url

    async def settle(self) -> State:
        """Run queued jobs (retries included) until the image leaves ``pending``."""
        for _ in range(100):
            await self.service.drain()
            found = await self.service.verdict(REPO, DIGEST)
            if found is not None and found.state != State.PENDING:
                return found.state
            await asyncio.sleep(0.05)
        raise AssertionError("still pending")


@pytest.fixture
async def rig(fresh_db: Database, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    store = FakeStore(blobs={digest_of(CONFIG): CONFIG, digest_of(LAYER): LAYER})
    store_server = TestServer(store.app())
    await store_server.start_server()
    # Nothing listens where the registry first redirects to: the store is unreachable.
    registry = RedirectingRegistry(f"http://127.0.0.1:{free_port()}")
    registry.manifests[DIGEST] = (OCI_MANIFEST, MANIFEST)
    registry_server = TestServer(registry.app())
    await registry_server.start_server()
    extra: dict[str, str] = getattr(request, "param", {})
    settings = load_settings(
        env={
            "GATEKEEPER_UPSTREAM_URL": str(registry_server.make_url("/")),
            "GATEKEEPER_DATABASE_URL": fresh_db.url,
            "GATEKEEPER_UPSTREAM_USERNAME": USERNAME,
            "GATEKEEPER_UPSTREAM_PASSWORD": PASSWORD,
            "GATEKEEPER_POLICIES": policies(),
            "GATEKEEPER_VERIFICATION__MAX_ATTEMPTS": "2",
            "GATEKEEPER_VERIFICATION__RETRY_BASE_SECONDS": "0.05",
            **extra,
        }
    )
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    db = sessionmaker(engine)
    session, tokens = make_client_session(settings), make_token_client(settings)
    bus = EventBus()
    verifiers = build_verifiers(settings.verifiers, DbLayerCache(db))
    incomplete: list[None] = []
    service = VerificationService(
        settings,
        db,
        Upstream(settings, session, tokens),
        verifiers,
        bus,
        await load_book(db, settings.policies),
        on_incomplete=lambda: incomplete.append(None),
    )
    built = Rig(
        service, registry, store, str(store_server.make_url("/")), db, incomplete=incomplete
    )

    async def listen(change: VerdictChange) -> None:
        built.changes.append(change)

    bus.subscribe(listen)
    yield built
    await tokens.aclose()
    await session.close()
    await engine.dispose()
    await registry_server.close()
    await store_server.close()


async def test_an_unreachable_store_ends_in_a_failure_that_says_why_and_a_rescan_passes(
    rig: Rig,
) -> None:
    await rig.service.submit(REPO, DIGEST, "pushed", identity="paul")
    assert await rig.settle() == State.QUARANTINED
    found = await rig.service.verdict(REPO, DIGEST)
    assert found is not None and not found.pullable()
    reason = found.reasons[0]
    assert reason.startswith("verification could not complete: ")
    assert "the registry's object storage is unreachable" in reason
    assert "after 2 attempts" in reason
    assert f"gatekeeper quarantine rescan {REPO}@{DIGEST}" in reason
    async with rig.db() as session:
        findings = await verdicts.findings(session, REPO, DIGEST)
        history = await verdicts.history(session, REPO, DIGEST)
        assert await jobs.counts(session) == {"dead": 1}
    assert [(f.verifier, f.rule_id, f.blob) for f in findings] == [
        ("gatekeeper", INCOMPLETE_RULE, None)
    ]
    assert [e.new_state for e in history] == [State.PENDING, State.QUARANTINED]
    assert [(c.event, c.new_state) for c in rig.changes] == [(State.QUARANTINED, State.QUARANTINED)]
    assert rig.changes[0].reason == reason
    assert len(rig.incomplete) == 1

    rig.store_comes_back()
    await rig.service.submit(REPO, DIGEST, "rescan", identity=jobs.admin("ops"))
    assert await rig.settle() == State.PASSED  # the job ran at the first drain
    found = await rig.service.verdict(REPO, DIGEST)
    assert found is not None and found.state == State.PASSED and found.reasons == ()
    async with rig.db() as session:
        assert await verdicts.findings(session, REPO, DIGEST) == []


@pytest.mark.parametrize("rig", [{"GATEKEEPER_POLICIES": policies("warn")}], indirect=True)
async def test_warn_mode_reports_it_and_does_not_block(rig: Rig) -> None:
    await rig.service.submit(REPO, DIGEST, "pushed", identity="paul")
    assert await rig.settle() == State.PASSED
    found = await rig.service.verdict(REPO, DIGEST)
    assert found is not None and found.reasons[0].startswith("verification could not complete")
    assert [c.event for c in rig.changes] == ["warned", State.PASSED]


@pytest.mark.parametrize(
    "rig",
    [
        {
            "GATEKEEPER_VERIFIERS": json.dumps({"config-sanity": {}, "secrets": {}}),
            # A verifier runs only where the policy requires it.
            "GATEKEEPER_POLICIES": policies("enforce", "secrets"),
        }
    ],
    indirect=True,
)
async def test_a_layer_the_store_cannot_serve_is_retried_not_decided(rig: Rig) -> None:
    """The config reads, the layer does not (the store answers 503): the secrets verifier could
    not read the image, which is no result about it. The job is retried, not decided on a
    partial reading; after the last attempt the failure says what could not be read."""
    rig.store_comes_back()
    rig.store.failing.add(digest_of(LAYER))
    await rig.service.submit(REPO, DIGEST, "pushed", identity="paul")
    assert await rig.settle() == State.QUARANTINED
    found = await rig.service.verdict(REPO, DIGEST)
    assert found is not None
    why = found.reasons[0]
    assert why.startswith("verification could not complete: secrets: could not read the image:")
    assert f"blob {digest_of(LAYER)}: object storage answered 503" in why
    assert "after 2 attempts" in why
    rig.store.failing.clear()
    await rig.service.submit(REPO, DIGEST, "rescan", identity=jobs.admin("ops"))
    assert await rig.settle() == State.PASSED


async def test_a_decided_image_keeps_its_verdict_when_a_rescan_cannot_complete(rig: Rig) -> None:
    rig.store_comes_back()
    await rig.service.submit(REPO, DIGEST, "pushed", identity="paul")
    assert await rig.settle() == State.PASSED
    rig.registry.store_url = f"http://127.0.0.1:{free_port()}"
    await rig.service.submit(REPO, DIGEST, "rescan", identity=jobs.RESCAN)
    for _ in range(100):
        await rig.service.drain()
        async with rig.db() as session:
            if (await jobs.counts(session)).get("dead"):
                break
        await asyncio.sleep(0.05)
    found = await rig.service.verdict(REPO, DIGEST)
    assert found is not None and found.state == State.PASSED
    assert not rig.incomplete


async def test_an_admins_release_of_a_pending_image_stands(rig: Rig) -> None:
    await rig.service.submit(REPO, DIGEST, "pushed", identity="paul")
    async with rig.db() as session, session.begin():
        await verdicts.release(session, REPO, DIGEST, "ops", "needed now", None)
    await rig.service.drain()
    await asyncio.sleep(0.1)
    await rig.service.drain()
    found = await rig.service.verdict(REPO, DIGEST)
    assert found is not None and found.state == State.RELEASED
    assert not rig.incomplete


async def test_the_sweep_settles_a_job_buried_by_its_dying_workers(rig: Rig) -> None:
    """A job whose workers kept dying is buried by the claim, where no failure is seen: the
    sweep finds the image pending with a dead job and decides it."""
    await rig.service.submit(REPO, DIGEST, "pushed", identity="paul")
    async with rig.db() as session, session.begin():
        await session.execute(
            update(Job)
            .execution_options(synchronize_session=False)
            .values(state="running", attempts=2, lease_until=now() - timedelta(seconds=1))
        )
    assert await rig.service.drain() == 0  # the claim buries it
    assert await rig.service.settle_all_abandoned() == 1
    found = await rig.service.verdict(REPO, DIGEST)
    assert found is not None and found.state == State.QUARANTINED
    assert found.reasons[0].startswith("verification could not complete: lease expired too often")
    assert await rig.service.settle_all_abandoned() == 0  # settled once
