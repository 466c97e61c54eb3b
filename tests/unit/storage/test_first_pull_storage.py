"""The storage steps of a first pull verified inline (``VerificationService.verify_inline``):
a manifest indexed unless it is already, and a decision recorded over the verdict it was made
from, locked and read once. On the session's database backend."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from oci.manifests import DescriptorRecord, ManifestRecord, parse_manifest, sha256_digest
from storage import content, manifests, verdicts
from storage.models import ManifestRef
from storage.verdicts import DecisionRecord
from tests.support.ocihttp import OCI_MANIFEST, image_config, image_manifest
from verifiers.lifecycle import State

REPO = "team/app"


def record() -> ManifestRecord:
    body = image_manifest(image_config(layers=2), [b"one", b"two"])
    return parse_manifest(REPO, body, OCI_MANIFEST, sha256_digest(body))


@pytest.fixture
def statements() -> Iterator[list[str]]:
    ran: list[str] = []

    def seen(conn: Any, cursor: Any, text: str, *args: Any) -> None:
        if not text.startswith("BEGIN"):
            ran.append(text.split(None, 1)[0])

    event.listen(Engine, "before_cursor_execute", seen)
    yield ran
    event.remove(Engine, "before_cursor_execute", seen)


async def test_a_manifest_is_indexed_once_and_an_indexed_one_is_left_as_it_was(db: Any) -> None:
    """A first pull indexes the manifest it holds; one a push indexed already keeps what the
    push recorded (here: the image a cosign tag says it is about)."""
    fresh = record()
    async with db() as session, session.begin():
        assert await manifests.index_if_absent(session, fresh) is None
    async with db() as session:
        row = await manifests.get_manifest(session, REPO, fresh.digest)
        assert row is not None and row.config_digest == fresh.config_digest
        refs = (
            await session.scalars(
                select(ManifestRef.kind)
                .where(ManifestRef.manifest_id == row.id)
                .order_by(ManifestRef.position)
            )
        ).all()
        assert refs == ["config", "layer", "layer"]
    pushed = replace(record(), about_digest="sha256:" + "c" * 64)
    async with db() as session, session.begin():
        await manifests.record_manifest(session, pushed, "sha256-cccc.sig")
    async with db() as session, session.begin():
        about = await manifests.index_if_absent(session, replace(pushed, about_digest=None))
    assert about == "sha256:" + "c" * 64, "what the push recorded stays"
    async with db() as session:
        row = await manifests.get_manifest(session, REPO, pushed.digest)
        assert row is not None and row.about_digest == about


async def test_a_decision_is_recorded_over_the_verdict_it_was_made_from_read_once(
    db: Any, statements: list[str]
) -> None:
    """The storing transaction reads the verdict locked, decides, and records: the row is not
    read a second time (neither by ``record_decision`` nor by the read of what it stored)."""
    digest = "sha256:" + "d" * 64
    async with db() as session, session.begin():
        await verdicts.ensure_pending(session, REPO, digest, "test", "first pull")
    decision = DecisionRecord(
        state=State.PASSED,
        reasons=(),
        policy="p",
        policy_version="1",
        data_versions={},
        outcomes=(),
        findings=(),
    )
    statements.clear()
    async with db() as session, session.begin():
        current = await verdicts.lock_current(session, REPO, digest)
        assert current is not None and current.state == State.PENDING
        old, new = await verdicts.record_decision(session, REPO, digest, decision)
        stored = await verdicts.get(session, REPO, digest)
    assert (old, new) == (State.PENDING, State.PASSED)
    assert stored is not None and stored.state == State.PASSED
    assert statements.count("SELECT") == 1, statements
    # Without the lock first, record_decision reads (and locks) it itself, as before.
    async with db() as session, session.begin():
        assert await verdicts.record_decision(session, REPO, digest, decision) == (
            State.PASSED,
            State.PASSED,
        )


async def test_the_dependents_of_a_manifest_are_found_in_one_statement(
    db: Any, statements: list[str]
) -> None:
    """What depends on an image's verdict: the indexes listing it and the artifacts about it,
    in its repository only, each once (an artifact both about it and listing it too)."""
    image = "sha256:" + "1" * 64
    listing = (DescriptorRecord("manifest", image, OCI_MANIFEST, 1),)
    found = {
        "index": ManifestRecord(REPO, "sha256:" + "2" * 64, OCI_MANIFEST, 10, refs=listing),
        "signature": ManifestRecord(
            REPO, "sha256:" + "3" * 64, OCI_MANIFEST, 10, subject_digest=image
        ),
        "both": ManifestRecord(
            REPO, "sha256:" + "4" * 64, OCI_MANIFEST, 10, refs=listing, subject_digest=image
        ),
        "elsewhere": ManifestRecord(
            "other/app", "sha256:" + "5" * 64, OCI_MANIFEST, 10, refs=listing
        ),
    }
    async with db() as session, session.begin():
        for manifest in found.values():
            await manifests.record_manifest(session, manifest, None)
    statements.clear()
    async with db() as session:
        dependents = await content.dependents(session, REPO, image)
    assert dependents == sorted(found[k].digest for k in ("index", "signature", "both"))
    assert statements == ["SELECT"]
