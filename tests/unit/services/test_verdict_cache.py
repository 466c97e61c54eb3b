"""The pull gate's cache of pullable verdicts and allowed blobs (``VerificationService``):
a decision read before the cached decisions were dropped (a verdict changed meanwhile) and
answered after the drop is not cached, or a quarantine that landed during the read would be
answered "pullable" from the cache for another ``verdict_cache_seconds``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from config.settings import load_settings
from services.events import EventBus
from services.policybook import PolicySource
from services.verification import VerificationService
from storage.db import create_engine, sessionmaker
from upstream.client import Upstream

REPO, DIGEST = "team/app", "sha256:" + "a" * 64


class Pullable:
    """What the read returns: a verdict the gate may cache."""

    def pullable(self) -> bool:
        return True


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[VerificationService]:
    settings = load_settings(env={"GATEKEEPER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/x"})
    engine = create_engine(settings.database_url)
    book = cast(PolicySource, None)  # nothing here matches a policy
    made = VerificationService(
        settings, sessionmaker(engine), cast(Upstream, None), [], EventBus(), book
    )
    yield made
    await made.close()
    await engine.dispose()


def slow_reads(service: VerificationService, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Replace the database read by one that answers when told; counts the reads."""
    state: dict[str, Any] = {"reads": 0, "go": asyncio.Event()}

    async def read(repository: str, digest: str) -> Pullable:
        state["reads"] += 1
        await state["go"].wait()
        return Pullable()

    monkeypatch.setattr(service, "_read", read)
    return state


@pytest.mark.parametrize("dropped", [False, True])
async def test_a_verdict_read_across_a_drop_is_not_cached(
    service: VerificationService, monkeypatch: pytest.MonkeyPatch, dropped: bool
) -> None:
    state = slow_reads(service, monkeypatch)
    pull = asyncio.create_task(service.verdict(REPO, DIGEST, cached=True))
    await asyncio.sleep(0.01)
    assert state["reads"] == 1
    if dropped:
        service._forget_all()  # what a verdict change does in every process
    state["go"].set()
    assert (await pull) is not None
    await service.verdict(REPO, DIGEST, cached=True)
    assert state["reads"] == (2 if dropped else 1)  # read again, or served from the cache


@pytest.mark.parametrize("dropped", [False, True])
async def test_a_blob_judged_across_a_drop_is_not_remembered(
    service: VerificationService, dropped: bool
) -> None:
    generation = service.cache_generation  # the gate notes it before judging
    if dropped:
        service._forget_all()
    service.remember_blob(REPO, DIGEST, generation)
    assert service.blob_allowed(REPO, DIGEST) is not dropped
