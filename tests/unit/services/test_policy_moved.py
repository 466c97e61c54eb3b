"""A verification that began under one version of the image's policy and ends after a waiver
(or a VEX) re-decided the image under a newer one never stores its stale decision over that:
a release by waiver undone, even for a moment, is a pull refused and a webhook that lies.
Through the real verification service, its queue and a fake registry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from config.settings import load_settings
from services.events import EventBus, VerdictChange
from services.policybook import load_book
from services.reevaluate import after_policy_change
from services.verification import VerificationService
from storage import verdicts, waivers
from storage.db import create_engine, sessionmaker, upgrade
from storage.layer_cache import DbLayerCache
from tests.fakes.objectstore import PASSWORD, USERNAME, FakeStore, RedirectingRegistry
from tests.support.database import Database
from tests.support.ocihttp import OCI_MANIFEST, digest_of, image_config, image_manifest, tar_layer
from upstream.client import Upstream, make_client_session, make_token_client
from verifiers.lifecycle import State
from verifiers.registry import build_verifiers

# The config lists two layers, the manifest one: config-sanity's finding, which blocks.
CONFIG = image_config(layers=2)
LAYER, _ = tar_layer({"etc/motd": b"hello\n"})
MANIFEST = image_manifest(CONFIG, [LAYER])
DIGEST = digest_of(MANIFEST)
REPO = "team/app"
RULE = "config-sanity:config.layer-count-mismatch"
POLICIES = json.dumps([{"name": "strict", "repositories": ["*"], "require": ["config-sanity"]}])


@dataclass
class Rig:
    service: VerificationService
    db: Any
    policies: Any
    changes: list[VerdictChange] = field(default_factory=list)

    async def state(self) -> State:
        async with self.db() as session:
            found = await verdicts.get(session, REPO, DIGEST)
        assert found is not None
        return found.state


@pytest.fixture
async def rig(fresh_db: Database) -> AsyncIterator[Rig]:
    store = FakeStore(blobs={digest_of(CONFIG): CONFIG, digest_of(LAYER): LAYER})
    store_server = TestServer(store.app())
    await store_server.start_server()
    registry = RedirectingRegistry(str(store_server.make_url("/")))
    registry.manifests[DIGEST] = (OCI_MANIFEST, MANIFEST)
    registry_server = TestServer(registry.app())
    await registry_server.start_server()
    settings = load_settings(
        env={
            "GATEKEEPER_UPSTREAM_URL": str(registry_server.make_url("/")),
            "GATEKEEPER_DATABASE_URL": fresh_db.url,
            "GATEKEEPER_UPSTREAM_USERNAME": USERNAME,
            "GATEKEEPER_UPSTREAM_PASSWORD": PASSWORD,
            "GATEKEEPER_POLICIES": POLICIES,
        }
    )
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    db = sessionmaker(engine)
    session, tokens = make_client_session(settings), make_token_client(settings)
    bus = EventBus()
    service = VerificationService(
        settings,
        db,
        Upstream(settings, session, tokens),
        build_verifiers(settings.verifiers, DbLayerCache(db)),
        bus,
        # This process's policies as loaded at its start: behind once a waiver is made
        # elsewhere (another replica, or before its own refresh).
        await load_book(db, settings.policies),
    )
    built = Rig(service, db, settings.policies)

    async def listen(change: VerdictChange) -> None:
        built.changes.append(change)

    bus.subscribe(listen)
    yield built
    await tokens.aclose()
    await session.close()
    await engine.dispose()
    await registry_server.close()
    await store_server.close()


async def _waive_and_reevaluate(rig: Rig) -> None:
    """What making a waiver does (``proxy.admin``): store it, then decide again, from stored
    findings, every verdict its scope reaches."""
    async with rig.db() as session, session.begin():
        await waivers.add(
            session, finding=RULE, scope=REPO, reason="known", author="tina", expires_at=None
        )
    report = await after_policy_change(
        rig.db, rig.policies, publish=rig.service.bus.publish, cause="waiver made by tina"
    )
    assert report.changed == 1


async def test_a_waiver_applied_during_a_verification_is_not_undone_by_it(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    await rig.service.verify(REPO, DIGEST)
    assert await rig.state() == State.QUARANTINED
    checked = rig.service._check

    async def check_then_waive(*args: Any, **kwargs: Any) -> Any:
        result = await checked(*args, **kwargs)
        if not waived.done():
            await _waive_and_reevaluate(rig)
            waived.set_result(None)
        return result

    waived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    monkeypatch.setattr(rig.service, "_check", check_then_waive)
    rig.changes.clear()
    stored = await rig.service.verify(REPO, DIGEST)  # a re-scan, begun before the waiver
    assert waived.done()
    assert stored.state == State.PASSED, stored.reasons
    assert await rig.state() == State.PASSED
    assert [c.new_state for c in rig.changes] == [State.PASSED], [
        (c.event, c.reason) for c in rig.changes
    ]
    async with rig.db() as session:
        history = await verdicts.history(session, REPO, DIGEST)
    assert [e.new_state for e in history][-2:] == ["quarantined", "passed"]


async def test_a_verification_under_the_policy_in_force_is_stored(rig: Rig) -> None:
    """The other side: a verdict decided under an older version than the one in force is
    decided over by a verification that used the one in force (the guard refuses only stale
    decisions)."""
    await rig.service.verify(REPO, DIGEST)
    await _waive_and_reevaluate(rig)
    assert await rig.state() == State.PASSED
    async with rig.db() as session, session.begin():
        listed = await waivers.active(session)
        await waivers.withdraw(session, listed[0].id, "tina", "no longer")
    # This process's policies (loaded before the waiver) are the ones in force again.
    stored = await rig.service.verify(REPO, DIGEST)
    assert stored.state == State.QUARANTINED
    assert await rig.state() == State.QUARANTINED
