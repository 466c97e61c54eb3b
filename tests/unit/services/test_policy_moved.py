"""A verification that began under one version of the image's policy and ends after a waiver
(or a VEX) re-decided the image under a newer one never stores its stale decision over that:
a release by waiver undone, even for a moment, is a pull refused and a webhook that lies.
Through the real verification service, its queue and a fake registry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.reevaluate import after_policy_change
from storage import verdicts, waivers
from tests.support.database import Database
from tests.support.ocihttp import digest_of, image_config, image_manifest, tar_layer
from tests.support.verification_rig import Rig, verification_rig
from verifiers.lifecycle import State

# The config lists two layers, the manifest one: config-sanity's finding, which blocks.
CONFIG = image_config(layers=2)
LAYER, _ = tar_layer({"etc/motd": b"hello\n"})
MANIFEST = image_manifest(CONFIG, [LAYER])
DIGEST = digest_of(MANIFEST)
REPO = "team/app"
RULE = "config-sanity:config.layer-count-mismatch"
POLICIES = json.dumps([{"name": "strict", "repositories": ["*"], "require": ["config-sanity"]}])


@pytest.fixture
async def rig(fresh_db: Database) -> AsyncIterator[Rig]:
    # The service's policies are those loaded at its start: behind once a waiver is made
    # elsewhere (another replica, or before its own refresh).
    images = [(CONFIG, [LAYER], MANIFEST)]
    async with verification_rig(fresh_db.url, images, {"GATEKEEPER_POLICIES": POLICIES}) as rig:
        yield rig


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
    assert await rig.state(REPO, DIGEST) == State.QUARANTINED
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
    assert await rig.state(REPO, DIGEST) == State.PASSED
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
    assert await rig.state(REPO, DIGEST) == State.PASSED
    async with rig.db() as session, session.begin():
        listed = await waivers.active(session)
        await waivers.withdraw(session, listed[0].id, "tina", "no longer")
    # This process's policies (loaded before the waiver) are the ones in force again.
    stored = await rig.service.verify(REPO, DIGEST)
    assert stored.state == State.QUARANTINED
    assert await rig.state(REPO, DIGEST) == State.QUARANTINED
