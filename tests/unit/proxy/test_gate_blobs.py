"""The blob rule of the pull gate (``proxy.gate.judge_blob``) on a real database: a blob leaves
only as part of a pullable manifest of the repository, never while held, and never with a
blocking finding of its own that the manifest it leaves with was not decided knowing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from config.policy import Policy, Waiver, match_policy
from oci.manifests import DescriptorRecord, ManifestRecord
from proxy.gate import judge_blob, judge_read_back
from storage import content, fresh_uploads, verdicts
from storage.db import create_engine, sessionmaker, upgrade
from storage.manifests import record_manifest
from storage.verdicts import DecisionRecord, FindingRecord
from tests.support.database import Database
from verifiers.lifecycle import State

POLICY = Policy(name="p", repositories=["*"], require=["secrets"])
LAYER = "sha256:" + "1" * 64
BASE = "sha256:" + "2" * 64
CONFIG = "sha256:" + "3" * 64
SECRET = FindingRecord(
    "secrets", "secret.aws-access-key", "critical", "AWS key", f"{LAYER}:k", "", None, LAYER
)


@pytest.fixture
async def db(fresh_db: Database) -> AsyncIterator[Any]:
    engine = create_engine(fresh_db.url)
    await upgrade(engine)
    yield sessionmaker(engine)
    await engine.dispose()


async def image(
    db: Any,
    repository: str,
    digest: str,
    state: State,
    layers: list[str],
    *findings: FindingRecord,
    origin: bool = False,
    source: str = "local",
) -> None:
    refs = (
        DescriptorRecord("config", CONFIG, "c", 2),
        *(DescriptorRecord("layer", layer, "l", 2) for layer in layers),
    )
    record = ManifestRecord(repository, digest, "m", 10, refs=refs, config_digest=CONFIG)
    async with db() as session, session.begin():
        await record_manifest(session, record, None)
        await verdicts.ensure_pending(session, repository, digest, "test", "r", origin=source)
        stored = tuple(
            FindingRecord(**{**f.__dict__, "origin": "x@y" if origin else None}) for f in findings
        )
        await verdicts.record_decision(
            session,
            repository,
            digest,
            DecisionRecord(state, (), "p", "v", {}, (), stored),
        )


async def judge(db: Any, repository: str, blob: str, policy: Policy = POLICY) -> Any:
    async with db() as session:
        return await judge_blob(session, policy, repository, blob)


def digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


async def test_a_blob_leaves_only_with_a_pullable_manifest(db: Any) -> None:
    await image(db, "a/x", digest(1), State.QUARANTINED, [BASE, LAYER], SECRET)
    assert (await judge(db, "a/x", LAYER)).state == "not-pullable"
    await image(db, "a/x", digest(2), State.PASSED, [BASE])
    assert (await judge(db, "a/x", BASE)).allowed  # the shared base layer of a good image
    assert (await judge(db, "b/x", BASE)).state == "not-pullable"  # another repository


async def test_a_blob_with_its_own_finding_is_blocked_in_any_manifest(db: Any) -> None:
    await image(db, "a/x", digest(1), State.QUARANTINED, [LAYER], SECRET)
    # A relabelled manifest that never looked at the layer passed: the blob still cannot leave.
    await image(db, "b/relabel", digest(2), State.PASSED, [LAYER])
    found = await judge(db, "b/relabel", LAYER)
    assert not found.allowed and found.state == "blocked"
    assert "secret.aws-access-key" in found.message and f"a/x@{digest(1)}" in found.message


async def test_a_manifest_decided_knowing_the_finding_lets_it_out(db: Any) -> None:
    """``notify``, ``warn`` and waivers: the manifest's verdict weighed the finding."""
    await image(db, "a/x", digest(1), State.QUARANTINED, [LAYER], SECRET)
    await image(db, "b/x", digest(2), State.PASSED, [LAYER], SECRET, origin=True)
    assert (await judge(db, "b/x", LAYER)).allowed


async def test_a_release_lets_it_out_as_part_of_that_image(db: Any) -> None:
    await image(db, "a/x", digest(1), State.QUARANTINED, [LAYER], SECRET)
    assert not (await judge(db, "a/x", LAYER)).allowed
    async with db() as session, session.begin():
        await verdicts.release(session, "a/x", digest(1), "admin", "accepted", None)
    assert (await judge(db, "a/x", LAYER)).allowed
    await image(db, "b/x", digest(2), State.PASSED, [LAYER])
    assert not (await judge(db, "b/x", LAYER)).allowed  # not through another image


async def test_the_policy_of_the_repository_decides_what_blocks(db: Any) -> None:
    await image(db, "a/x", digest(1), State.QUARANTINED, [LAYER], SECRET)
    await image(db, "b/x", digest(2), State.PASSED, [LAYER])
    lenient = Policy(
        name="l", repositories=["*"], require=["secrets"], severity_threshold="critical"
    )
    waived = POLICY.model_copy(
        update={
            "waivers": [
                Waiver(
                    finding="secret.aws-access-key",
                    reason="test key",
                    author="sec",
                    repositories=["b/*"],
                )
            ]
        }
    )
    assert not (await judge(db, "b/x", LAYER, lenient)).allowed  # critical >= critical
    assert (await judge(db, "b/x", LAYER, waived)).allowed


async def test_the_blob_leaves_under_the_policy_of_the_images_it_leaves_with(db: Any) -> None:
    """Images of one repository from two origins: the blob may leave with those of one origin
    when that origin's policy lets its finding through, never under another's."""
    await image(db, "a/x", digest(1), State.QUARANTINED, [LAYER], SECRET)
    await image(db, "mix/app", digest(2), State.PASSED, [LAYER], source="local")
    lenient = Policy(
        name="hub", repositories=["*"], require=["secrets"], severity_threshold="critical"
    )
    lenient = lenient.model_copy(
        update={"waivers": [Waiver(finding="secret.aws-access-key", reason="r", author="a")]}
    )
    policies = {"local": POLICY, "hub": lenient}
    found = await judge_by_origin(db, "mix/app", LAYER, policies)
    assert found.state == "blocked" and "under policy p" in found.message  # only local images
    await image(db, "mix/app", digest(3), State.PASSED, [LAYER], source="hub")
    found = await judge_by_origin(db, "mix/app", LAYER, policies)
    assert found.allowed and found.policy is lenient  # with the image from hub, under its policy
    strict_everywhere = {"local": POLICY, "hub": POLICY}
    assert not (await judge_by_origin(db, "mix/app", LAYER, strict_everywhere)).allowed


async def judge_by_origin(db: Any, repository: str, blob: str, policies: dict[str, Policy]) -> Any:
    async with db() as session:
        return await judge_blob(
            session, POLICY, repository, blob, policy_for=lambda origin: policies[origin]
        )


async def test_a_hold_covers_the_blob_everywhere(db: Any) -> None:
    await image(db, "a/held", digest(1), State.PASSED, [LAYER])
    await image(db, "b/copy", digest(2), State.PASSED, [LAYER])
    async with db() as session, session.begin():
        held = await content.hold_content(session, "a/held", digest(1), "admin", "backdoor")
    # The layer was pullable elsewhere when the hold was made: only the config is held.
    assert held == [CONFIG]
    await image(db, "a/held", digest(3), State.PASSED, [BASE])
    async with db() as session, session.begin():
        held = await content.hold_content(session, "a/held", digest(3), "admin", "backdoor")
    assert held == [CONFIG, BASE]
    await image(db, "c/rewrap", digest(4), State.PASSED, [BASE])
    found = await judge(db, "c/rewrap", BASE)
    assert found.state == "held" and "backdoor" in found.message
    async with db() as session, session.begin():
        assert sorted(await content.lift_holds(session, "a/held", digest(3))) == [BASE, CONFIG]
    assert (await judge(db, "c/rewrap", BASE)).allowed


async def test_index_links_both_ways(db: Any) -> None:
    """What an index lists and which indexes list a manifest: the dependency lookups."""
    child, other, index = digest(1), digest(2), digest(9)
    refs = tuple(DescriptorRecord("manifest", d, "m", 1) for d in (child, other))
    async with db() as session, session.begin():
        await record_manifest(session, ManifestRecord("a/x", index, "i", 10, refs=refs), None)
    async with db() as session:
        assert await content.children(session, "a/x", index) == sorted([child, other])
        assert await content.parents(session, "a/x", child) == [index]
        assert await content.parents(session, "b/x", child) == []
        assert await content.dependents(session, "a/x", other) == [index]


async def read_back(
    db: Any, repository: str, blob: str, policy: Policy = POLICY, uploaded: bool = True
) -> Any:
    """The read-back judgement of ``blob``, uploaded into ``repository`` just now (unless
    ``uploaded`` is False: it reached the registry some other way)."""
    if uploaded:
        async with db() as session, session.begin():
            await fresh_uploads.remember(session, repository, blob)
    async with db() as session:
        return await judge_read_back(session, policy, repository, blob)


FRESH = "sha256:" + "f" * 64


async def test_a_fresh_upload_may_be_read_back_but_is_never_cached(db: Any) -> None:
    """No manifest anywhere lists it: a pusher may read it back (the caller checks who)."""
    assert (await judge(db, "a/x", FRESH)).state == "not-pullable"  # the blob rule says no
    found = await read_back(db, "a/x", FRESH)
    assert found.allowed and found.state == "read-back" and not found.cacheable


async def test_a_blob_of_an_image_that_may_not_be_pulled_is_never_read_back(db: Any) -> None:
    for n, state in enumerate((State.QUARANTINED, State.PENDING)):
        layer = digest(100 + n)
        await image(db, "a/x", digest(10 + n), state, [layer])
        assert not (await read_back(db, "a/x", layer)).allowed  # listed here: the blob rule
        found = await read_back(db, "b/fresh", layer)  # uploaded again elsewhere
        assert not found.allowed and found.state == "not-pullable"
        assert str(state) in found.message and "a/x" not in found.message
    # Listed by a pullable image elsewhere too: still a blob of one that may not be pulled.
    await image(db, "c/good", digest(20), State.PASSED, [digest(100)])
    assert not (await read_back(db, "b/fresh", digest(100))).allowed


async def test_only_a_blob_uploaded_through_the_gatekeeper_is_read_back(db: Any) -> None:
    """One that reached the registry around it (before it, say) is content nobody verified."""
    found = await read_back(db, "a/x", FRESH, uploaded=False)
    assert not found.allowed and "uploaded into it through the gatekeeper" in found.message
    assert not (await read_back(db, "b/elsewhere", digest(7), uploaded=False)).allowed
    assert (await read_back(db, "a/x", FRESH)).allowed
    assert not (await read_back(db, "c/other", FRESH, uploaded=False)).allowed  # per repository


async def test_no_read_back_where_no_policy_applies(db: Any) -> None:
    unmatched = Policy(name="none", repositories=["other/*"], require=["secrets"])
    found = await read_back(db, "a/x", FRESH, match_policy([unmatched], "a/x"))
    assert not found.allowed and found.state == "no-policy"


async def test_a_blob_of_a_pullable_image_elsewhere_may_be_read_back(db: Any) -> None:
    await image(db, "a/x", digest(1), State.PASSED, [BASE])
    assert (await read_back(db, "b/fresh", BASE)).allowed


async def test_a_held_or_blocked_blob_is_never_read_back(db: Any) -> None:
    await image(db, "a/held", digest(1), State.PASSED, [BASE])
    async with db() as session, session.begin():
        await content.hold_content(session, "a/held", digest(1), "admin", "backdoor")
    assert (await read_back(db, "b/fresh", BASE)).state == "held"
    await image(db, "a/x", digest(2), State.QUARANTINED, [LAYER], SECRET)
    async with db() as session, session.begin():
        await verdicts.release(session, "a/x", digest(2), "admin", "accepted", None)
    found = await read_back(db, "b/fresh", LAYER)  # its image is released, the blob is not
    assert found.state == "blocked" and "secret.aws-access-key" in found.message
