"""What a pushed manifest queues for verification: itself, and the image it is about in its own
repository and in each other one whose signatures are kept where it was pushed (cosign's
``COSIGN_REPOSITORY``), never in a repository that merely has a verdict for that digest; all of
it in the transaction that indexes the manifest (a worker deciding the referrer must find the
image's re-verification queued already)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from oci.manifests import ManifestRecord
from proxy.handlers.manifests import _index_pushed
from proxy.state import Services
from storage import verdicts
from storage.manifests import get_manifest

IMAGE = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
SIGNATURE = "sha256:" + "c" * 64
TAG = "sha256-" + "a" * 64 + ".sig"


@dataclass
class RecordingVerification:
    """Stands in for the verification service: records what would be queued."""

    submitted: list[tuple[str, str]] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=lambda: {"app/x": "sigs/app"})
    """Repository -> where its signature rule keeps its signatures."""
    identities: list[str] = field(default_factory=list)
    pushed: list[tuple[str, str]] = field(default_factory=list)
    """What was submitted as pushed here (so of origin ``local``)."""

    announced: int = 0

    sessions: list[AsyncSession] = field(default_factory=list)
    """The session each was queued in."""

    async def submit(
        self, repository: str, digest: str, reason: str, *, identity: str, pushed: bool = False
    ) -> bool:
        raise AssertionError("queued in a transaction of its own, not in the push's")

    async def queue(
        self,
        session: AsyncSession,
        repository: str,
        digest: str,
        reason: str,
        *,
        identity: str,
        pushed: bool = False,
    ) -> bool:
        assert session.in_transaction()
        assert self.announced == 0, "queued after the workers were woken"
        if pushed:  # the pushed manifest's own job: queued in the transaction that indexes it
            assert await get_manifest(session, repository, digest) is not None
            self.pushed.append((repository, digest))
        self.submitted.append((repository, digest))
        self.identities.append(identity)
        self.sessions.append(session)
        return True

    async def announce(self) -> None:
        self.announced += 1

    def signature_repositories(self, repository: str) -> set[str]:
        return {repository, self.kept.get(repository, repository)}


@dataclass
class FakeServices:
    db: Any
    verification: RecordingVerification = field(default_factory=RecordingVerification)


@pytest.fixture
async def svc(db: Any) -> FakeServices:
    async with db() as session, session.begin():
        for repository, digest in (
            ("app/x", IMAGE),
            ("mirror/x", IMAGE),
            ("sigs/app", IMAGE),
            ("app/y", OTHER),
        ):
            await verdicts.ensure_pending(session, repository, digest, "test", "pushed")
    return FakeServices(db)


def signature(repository: str, subject: str | None = None) -> ManifestRecord:
    return ManifestRecord(
        repository,
        SIGNATURE,
        "application/vnd.oci.image.manifest.v1+json",
        10,
        subject_digest=subject,
    )


PUSHER = "paul"


async def push(svc: FakeServices, repository: str, reference: str, record: ManifestRecord) -> None:
    """Everything a push queues is queued in the one transaction that indexes the manifest, and
    the workers are woken once, after it."""
    verification = svc.verification
    verification.sessions.clear()
    await _index_pushed(cast(Services, svc), repository, reference, record, PUSHER)
    assert verification.announced == 1
    assert len({id(s) for s in verification.sessions}) == 1, "queued in several transactions"
    verification.announced = 0


async def test_a_cosign_tag_re_evaluates_the_image_where_its_signatures_are_kept(
    svc: FakeServices,
) -> None:
    await push(svc, "sigs/app", TAG, signature("sigs/app"))
    # mirror/x has a verdict for the same digest, but keeps its signatures elsewhere.
    assert svc.verification.submitted == [
        ("sigs/app", SIGNATURE),
        ("sigs/app", IMAGE),
        ("app/x", IMAGE),
    ]


async def test_a_cosign_tag_beside_the_image_re_evaluates_it_there_only(
    svc: FakeServices,
) -> None:
    await push(svc, "app/x", TAG, signature("app/x"))
    assert svc.verification.submitted == [("app/x", SIGNATURE), ("app/x", IMAGE)]


async def test_a_referrer_re_evaluates_its_subject_where_its_signatures_count(
    svc: FakeServices,
) -> None:
    await push(svc, "sigs/app", SIGNATURE, signature("sigs/app", subject=IMAGE))
    assert svc.verification.submitted == [
        ("sigs/app", SIGNATURE),
        ("sigs/app", IMAGE),
        ("app/x", IMAGE),
    ]


async def test_a_referrer_in_another_repository_queues_nothing_there(svc: FakeServices) -> None:
    """Push rights on other/* must not buy verification work on app/x or app/y."""
    await push(svc, "other/x", SIGNATURE, signature("other/x", subject=IMAGE))
    await push(svc, "other/x", "sha256-" + "b" * 64 + ".sig", signature("other/x"))
    assert svc.verification.submitted == [("other/x", SIGNATURE), ("other/x", SIGNATURE)]


async def test_an_unknown_subject_is_not_queued(svc: FakeServices) -> None:
    """A signature repository holds no image: queueing the subject there would leave a pending
    verdict no job can settle. An image pushed later is verified on its own push."""
    tag = "sha256-" + "d" * 64 + ".sig"
    await push(svc, "sigs/app", tag, signature("sigs/app"))
    assert svc.verification.submitted == [("sigs/app", SIGNATURE)]


async def test_a_plain_image_queues_only_itself(svc: FakeServices) -> None:
    await push(svc, "app/z", "v1", signature("app/z"))
    assert svc.verification.submitted == [("app/z", SIGNATURE)]


async def test_every_verification_a_push_queues_is_the_pushers(svc: FakeServices) -> None:
    """Fairness is per identity: re-evaluations a signature triggers in other repositories
    count against whoever pushed it, not against the image's owners."""
    await push(svc, "sigs/app", TAG, signature("sigs/app"))
    assert len(svc.verification.submitted) == 3  # itself, the image here, the image in app/x
    assert svc.verification.identities == [PUSHER] * 3


async def test_only_the_pushed_manifest_is_marked_pushed_here(svc: FakeServices) -> None:
    """The image a signature re-evaluates was not pushed by this push: its origin stays."""
    await push(svc, "sigs/app", TAG, signature("sigs/app"))
    assert svc.verification.pushed == [("sigs/app", SIGNATURE)]
