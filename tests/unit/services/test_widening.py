"""A verdict change that only lets more out (an image a verification found clean of findings on
any blob became pullable) leaves every other cached decision in place, in this process and in
the others: under push load, each pushed image passing dropped every pull's cached verdicts and
blob decisions. Any other change still drops them all, or a blob found to carry a finding, or
an image quarantined, could be let out from a cache."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.events import VerdictChange
from services.wakeups import VERDICTS, WIDENED
from tests.support.bypass import aws_key
from tests.support.database import Database
from tests.support.ocihttp import digest_of, image_config, image_manifest, tar_layer
from tests.support.verification_rig import Rig, verification_rig
from verifiers.lifecycle import State

ONE, TWO = image_config(layers=1), image_config(layers=2)
CLEAN_LAYER, _ = tar_layer({"etc/motd": b"hello\n"})
CLEAN = image_manifest(ONE, [CLEAN_LAYER])
# config-sanity's finding (no blob): the config lists two layers, the manifest one.
MISMATCHED = image_manifest(TWO, [CLEAN_LAYER])
SECRET_LAYER, _ = tar_layer({"app/.env": f"AWS_ACCESS_KEY_ID={aws_key()}\n".encode()})
SECRET = image_manifest(ONE, [SECRET_LAYER])
IMAGES = [
    (ONE, [CLEAN_LAYER], CLEAN),
    (TWO, [CLEAN_LAYER], MISMATCHED),
    (ONE, [SECRET_LAYER], SECRET),
]
OTHER = ("team/other", "sha256:" + "b" * 64)


def _rig(database_url: str, mode: str) -> Any:
    require = ["config-sanity", "secrets"]
    policy = [{"name": "p", "repositories": ["*"], "require": require, "mode": mode}]
    env = {
        "GATEKEEPER_POLICIES": json.dumps(policy),
        "GATEKEEPER_VERIFIERS": json.dumps({"config-sanity": {}, "secrets": {}}),
        # A cached decision lives at most this long; the longest there is, so that only a
        # drop, never a slow verification (PostgreSQL on a loaded CI machine took over the
        # 1 s default once), takes one away.
        "GATEKEEPER_VERIFICATION__VERDICT_CACHE_SECONDS": "60",
    }
    return verification_rig(database_url, IMAGES, env)


@pytest.fixture
async def rig(fresh_db: Database) -> AsyncIterator[Rig]:
    async with _rig(fresh_db.url, "enforce") as made:
        yield made


def _sent(rig: Rig) -> list[str]:
    """Records the wake-ups the service sends to the other processes."""
    sent: list[str] = []
    rig.service.wakeups.listen(VERDICTS, lambda: sent.append(VERDICTS))
    rig.service.wakeups.listen(WIDENED, lambda: sent.append(WIDENED))
    return sent


def _cache_other(rig: Rig) -> int:
    """Another image's blob decision, cached as the gate caches it; the generation noted."""
    service = rig.service
    service.remember_blob(*OTHER, service.cache_generation)
    assert service.blob_allowed(*OTHER)
    return service.cache_generation


async def test_a_clean_image_passing_widens_and_keeps_other_decisions(rig: Rig) -> None:
    sent = _sent(rig)
    generation = _cache_other(rig)
    stored = await rig.service.verify("team/app", digest_of(CLEAN))
    assert stored.state == State.PASSED
    [change] = rig.changes
    assert (change.old_state, change.new_state, change.widens) == (None, State.PASSED, True)
    assert rig.service.blob_allowed(*OTHER)
    assert rig.service.cache_generation == generation
    assert sent == [WIDENED]


@pytest.mark.parametrize(
    ("manifest", "state"),
    [(MISMATCHED, State.QUARANTINED), (SECRET, State.QUARANTINED)],
    ids=["quarantined", "blob-finding"],
)
async def test_a_quarantine_drops_every_decision(rig: Rig, manifest: bytes, state: State) -> None:
    sent = _sent(rig)
    _cache_other(rig)
    stored = await rig.service.verify("team/app", digest_of(manifest))
    assert stored.state == state
    assert [c.widens for c in rig.changes] == [False]
    assert not rig.service.blob_allowed(*OTHER)
    assert sent == [VERDICTS]


async def test_passing_with_a_finding_on_a_blob_does_not_widen(fresh_db: Database) -> None:
    """Warn mode lets the image with a secret in a layer pass, but the layer now carries a
    finding that may block it in another repository: every cached decision goes."""
    async with _rig(fresh_db.url, "warn") as rig:
        sent = _sent(rig)
        _cache_other(rig)
        stored = await rig.service.verify("team/app", digest_of(SECRET))
        assert stored.state == State.PASSED
        assert any(f.blob for f in await _findings(rig, digest_of(SECRET)))
        assert State.PASSED in [c.new_state for c in rig.changes]
        assert not any(c.widens for c in rig.changes)
        assert not rig.service.blob_allowed(*OTHER)
        assert VERDICTS in sent and WIDENED not in sent


async def test_a_widened_change_from_another_process_keeps_the_cache_and_wakes_waiters(
    rig: Rig,
) -> None:
    service = rig.service
    _cache_other(rig)
    with service.wakeups.waiting(VERDICTS, WIDENED) as changed:
        service.wakeups.deliver(WIDENED)  # as heard from another process
        assert changed.is_set()
    assert service.blob_allowed(*OTHER)
    service.wakeups.deliver(VERDICTS)
    assert not service.blob_allowed(*OTHER)


async def test_a_change_published_without_widens_drops_every_decision(rig: Rig) -> None:
    """Every publisher but a clean verification (admin actions, re-evaluations, expiries)
    leaves ``widens`` unset: the safe default."""
    _cache_other(rig)
    change = VerdictChange(
        "released", "team/app", "sha256:" + "c" * 64, "quarantined", "released", "admin", "why"
    )
    await rig.service.bus.publish(change)
    await asyncio.sleep(0)
    assert not rig.service.blob_allowed(*OTHER)


async def _findings(rig: Rig, digest: str) -> list[Any]:
    from storage import verdicts

    async with rig.db() as session:
        return await verdicts.findings(session, "team/app", digest)
