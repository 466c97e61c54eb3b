"""An artifact's examination against the image it is about, while that image's re-verification
finishes: whatever moment it finishes at, the artifact is never found blocked by a verdict the
image no longer has (it would stay quarantined after the image passed, until decided again).
It matters on PostgreSQL, where each read of a session sees what was committed before it (read
committed); on SQLite the session's reads share one snapshot, so their order cannot matter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from sqlalchemy import update

from oci.manifests import ManifestRecord
from services.examine import Examiner
from storage import content, jobs, manifests, verdicts
from storage.models import Job, Verdict
from upstream.client import Upstream

REPOSITORY = "app/x"
IMAGE = "sha256:" + "a" * 64
SIGNATURE = "sha256:" + "c" * 64


@pytest.fixture(autouse=True)
async def seeded(db: Any) -> None:
    """The image quarantined, its re-verification queued (a referrer was pushed)."""
    async with db() as session, session.begin():
        await verdicts.ensure_pending(session, REPOSITORY, IMAGE, "test", "pushed")
        await session.execute(
            update(Verdict).where(Verdict.digest == IMAGE).values(state="quarantined")
        )
        await jobs.enqueue(session, "verify", REPOSITORY, IMAGE, "a referrer", identity="p")


async def _image_passes(db: Any) -> None:
    """The image's re-verification stores ``passed`` and finishes its job in one transaction,
    as ``VerificationService._store`` does."""
    async with db() as session, session.begin():
        await session.execute(update(Verdict).where(Verdict.digest == IMAGE).values(state="passed"))
        await session.execute(update(Job).where(Job.digest == IMAGE).values(state="done"))


async def _no_submit(repository: str, digest: str, reason: str) -> None:
    raise AssertionError("the image has a verdict: nothing to queue")


@pytest.mark.parametrize("finishes_before_read", [0, 1, 2])
async def test_an_image_passing_meanwhile_never_blocks_its_referrer(
    db: Any, monkeypatch: pytest.MonkeyPatch, finishes_before_read: int
) -> None:
    """The image's job finishes just before the first, second or third read of its state:
    the signature waits for it or finds it passed, never ``subject-not-pullable``."""
    reads = 0

    def counted(read: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            if reads == finishes_before_read:
                await _image_passes(db)
            reads += 1
            return await read(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(content, "states", counted(content.states))
    monkeypatch.setattr(jobs, "active", counted(jobs.active))
    monkeypatch.setattr(manifests, "get_manifest", counted(manifests.get_manifest))
    examiner = Examiner(cast(Upstream, None), db, _no_submit)
    record = ManifestRecord(REPOSITORY, SIGNATURE, "application/vnd.oci.image.manifest.v1+json", 1)
    findings: list[Any] = []
    waiting: list[str] = []
    await examiner._depend(record, IMAGE, "the image", "subject-not-pullable", findings, waiting)
    assert reads == 3
    assert findings == [], [f.title for f in findings]


async def test_an_image_still_quarantined_and_not_verified_again_blocks_it(db: Any) -> None:
    """The other side: with no re-verification of the image queued, its quarantine is the
    signature's finding (the test above cannot pass by finding nothing ever)."""
    async with db() as session, session.begin():
        await session.execute(update(Job).where(Job.digest == IMAGE).values(state="done"))
    examiner = Examiner(cast(Upstream, None), db, _no_submit)
    record = ManifestRecord(REPOSITORY, SIGNATURE, "application/vnd.oci.image.manifest.v1+json", 1)
    findings: list[Any] = []
    waiting: list[str] = []
    await examiner._depend(record, IMAGE, "the image", "subject-not-pullable", findings, waiting)
    assert [f.rule_id for f in findings] == ["content.subject-not-pullable"]
    assert waiting == []
