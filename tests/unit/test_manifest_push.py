"""What a pushed manifest queues for verification: itself, and the image it is about in its own
repository and in every other one that has a verdict for it (cosign's ``COSIGN_REPOSITORY``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from proxy.handlers.manifests import _verify_pushed
from proxy.state import Services
from storage import verdicts
from storage.db import create_engine, sessionmaker, upgrade
from storage.manifests import ManifestRecord
from tests.support.database import Database

IMAGE = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
SIGNATURE = "sha256:" + "c" * 64
TAG = "sha256-" + "a" * 64 + ".sig"


@dataclass
class RecordingVerification:
    """Stands in for the verification service: records what would be queued."""

    submitted: list[tuple[str, str]] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)

    async def submit(self, repository: str, digest: str, reason: str, *, identity: str) -> None:
        self.submitted.append((repository, digest))
        self.identities.append(identity)


@dataclass
class FakeServices:
    db: Any
    verification: RecordingVerification = field(default_factory=RecordingVerification)


@pytest.fixture
async def svc(fresh_db: Database) -> AsyncIterator[FakeServices]:
    engine = create_engine(fresh_db.url)
    await upgrade(engine)
    db = sessionmaker(engine)
    async with db() as session, session.begin():
        for repository, digest in (
            ("app/x", IMAGE),
            ("mirror/x", IMAGE),
            ("sigs/app", IMAGE),
            ("app/y", OTHER),
        ):
            await verdicts.ensure_pending(session, repository, digest, "test", "pushed")
    yield FakeServices(db)
    await engine.dispose()


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
    await _verify_pushed(cast(Services, svc), repository, reference, record, PUSHER)


async def test_a_cosign_tag_re_evaluates_the_image_in_every_repository(
    svc: FakeServices,
) -> None:
    await push(svc, "sigs/app", TAG, signature("sigs/app"))
    assert svc.verification.submitted == [
        ("sigs/app", SIGNATURE),
        ("sigs/app", IMAGE),
        ("app/x", IMAGE),
        ("mirror/x", IMAGE),
    ]


async def test_a_cosign_tag_beside_the_image_still_re_evaluates_it_there_first(
    svc: FakeServices,
) -> None:
    await push(svc, "app/x", TAG, signature("app/x"))
    assert svc.verification.submitted == [
        ("app/x", SIGNATURE),
        ("app/x", IMAGE),
        ("mirror/x", IMAGE),
        ("sigs/app", IMAGE),
    ]


async def test_a_referrer_re_evaluates_its_subject_everywhere(svc: FakeServices) -> None:
    await push(svc, "sigs/app", SIGNATURE, signature("sigs/app", subject=IMAGE))
    assert svc.verification.submitted == [
        ("sigs/app", SIGNATURE),
        ("sigs/app", IMAGE),
        ("app/x", IMAGE),
        ("mirror/x", IMAGE),
    ]


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
    assert len(svc.verification.submitted) == 4
    assert svc.verification.identities == [PUSHER] * 4
