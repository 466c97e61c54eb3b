"""Re-evaluation from stored data (``services.reevaluate``) on a real database: an advisory import
re-matches the stored inventory, keeps other verifiers' findings, applies the current policy,
records the trigger, and publishes what changed; a policy change re-decides from stored findings.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from config.policy import VerifierPolicy
from oci.manifests import DescriptorRecord, ManifestRecord
from services.reevaluate import after_advisory_import, after_policy_change
from services.rescan import queue_affected
from storage import jobs, verdicts
from storage.inventory import DbInventoryStore
from storage.manifests import record_manifest
from storage.models import FindingRow, Job
from storage.verdicts import FindingRecord
from tests.support.reevaluation import (
    CONFIG_FINDING,
    DIGEST,
    POLICY,
    REPO,
    Recorder,
    imported,
    inventory,
    osv,
    seed,
    state_of,
)
from verifiers.vulns.assess import version_for
from verifiers.vulns.osv import Advisory

OTHER = "sha256:" + "b" * 64


async def findings(db: Any, digest: str = DIGEST) -> list[FindingRecord]:
    async with db() as session:
        return await verdicts.findings(session, REPO, digest)


async def test_import_quarantines_from_the_stored_inventory(db: Any) -> None:
    await seed(db, DIGEST, inventory(("Demo_Pkg", "1.0"), ("safe", "3.0")))
    result = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))
    events = Recorder()
    report = await after_advisory_import(
        db, [POLICY], [(REPO, DIGEST)], result.data_version, publish=events
    )
    assert (report.examined, report.changed, report.quarantined) == (1, 1, 1)
    verdict = await state_of(db)
    trigger = f"advisory-import (data version {result.data_version})"
    assert verdict.state == "quarantined" and verdict.trigger == trigger
    assert "DEMO-1" in "; ".join(verdict.reasons)
    assert verdict.data_versions["vulnerabilities"] == version_for(result.data_version)
    outcome = next(o for o in verdict.outcomes if o["verifier"] == "vulnerabilities")
    assert outcome["findings"] == 1 and outcome["version"] == version_for(result.data_version)
    stored = await findings(db)
    assert CONFIG_FINDING in stored  # other verifiers' findings are kept
    (vuln,) = [f for f in stored if f.verifier == "vulnerabilities"]
    assert (vuln.rule_id, vuln.severity, vuln.fix) == ("DEMO-1", "high", "1.5")
    assert "(fix: 1.5)" in vuln.title
    (change,) = events.seen
    assert (change.event, change.old_state, change.new_state) == (
        "quarantined",
        "passed",
        "quarantined",
    )
    assert change.reason.startswith(trigger)
    async with db() as session:
        history = await verdicts.history(session, REPO, DIGEST)
    assert history[-1].reason is not None and history[-1].reason.startswith(trigger)


async def test_findings_of_unchanged_advisories_are_kept_not_rewritten(db: Any) -> None:
    await seed(db, DIGEST, inventory(("demo-pkg", "1.0")))
    result = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))
    await after_advisory_import(db, [POLICY], [(REPO, DIGEST)], result.data_version)
    marked = "stored before"
    async with db() as session, session.begin():  # tell the stored row apart from a new one
        await session.execute(
            update(FindingRow).where(FindingRow.rule_id == "DEMO-1").values(title=marked)
        )

    async def titles() -> list[str]:
        return [f.title for f in await findings(db) if f.verifier == "vulnerabilities"]

    events = Recorder()
    other = frozenset({"OTHER-1"})  # an import that changed another advisory only
    again = await after_advisory_import(
        db, [POLICY], [(REPO, DIGEST)], result.data_version + 1, changed=other, publish=events
    )
    assert await titles() == [marked] and events.seen == [] and again.changed == 0
    verdict = await state_of(db)
    assert verdict.data_versions["vulnerabilities"] == version_for(result.data_version + 1)
    # the advisory itself changed (or nobody says what changed): its row is rewritten
    for changed in (frozenset({"DEMO-1"}), None):
        await after_advisory_import(
            db, [POLICY], [(REPO, DIGEST)], result.data_version, changed=changed
        )
        assert await titles() == ["demo-pkg 1.0: demo-pkg is broken (fix: 1.5)"]
        async with db() as session, session.begin():
            await session.execute(update(FindingRow).values(title=marked))


async def test_a_withdrawn_advisory_removes_its_findings_and_lets_the_image_pass(db: Any) -> None:
    await seed(db, DIGEST, inventory(("demo-pkg", "1.0")))
    result = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))
    await after_advisory_import(db, [POLICY], [(REPO, DIGEST)], result.data_version)
    assert (await state_of(db)).state == "quarantined"
    withdrawn = Advisory.from_json(
        {**osv("DEMO-1", "demo-pkg", "1.5").raw, "modified": "2027-01-01T00:00:00Z", "affected": []}
    )
    update = await imported(db, withdrawn)
    events = Recorder()
    await after_advisory_import(
        db,
        [POLICY],
        [(REPO, DIGEST)],
        update.data_version,
        changed=update.advisories,
        publish=events,
    )
    assert (await state_of(db)).state == "passed"
    assert [f.verifier for f in await findings(db)] == ["config-sanity"]
    assert [c.event for c in events.seen] == ["passed"]


async def test_unaffected_version_passes_and_keeps_passing(db: Any) -> None:
    await seed(db, DIGEST, inventory(("demo-pkg", "2.0")))
    result = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))
    report = await after_advisory_import(db, [POLICY], [(REPO, DIGEST)], result.data_version)
    assert (report.examined, report.changed) == (1, 0)
    assert (await state_of(db)).state == "passed"
    assert [f.verifier for f in await findings(db)] == ["config-sanity"]


async def test_notify_keeps_a_passed_image_pullable_and_announces_once(db: Any) -> None:
    notify = POLICY.model_copy(update={"on_new_findings": "notify"})
    await seed(db, DIGEST, inventory(("demo-pkg", "1.0")))
    result = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))
    events = Recorder()
    report = await after_advisory_import(
        db, [notify], [(REPO, DIGEST)], result.data_version, publish=events
    )
    verdict = await state_of(db)
    assert verdict.state == "passed" and report.notified == 1
    assert any(r.startswith("notify only") and "DEMO-1" in r for r in verdict.reasons)
    (change,) = events.seen
    assert change.event == "new-findings" and change.new_state == "passed"
    assert "DEMO-1" in change.reason
    events.seen.clear()
    await after_advisory_import(db, [notify], [(REPO, DIGEST)], result.data_version, publish=events)
    assert events.seen == []  # already announced


async def test_an_admin_release_stays_released_and_is_told(db: Any) -> None:
    await seed(db, DIGEST, inventory(("demo-pkg", "1.0")))
    async with db() as session, session.begin():
        await verdicts.release(session, REPO, DIGEST, "admin-token:alice", "accepted", None)
    result = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))
    events = Recorder()
    await after_advisory_import(db, [POLICY], [(REPO, DIGEST)], result.data_version, publish=events)
    verdict = await state_of(db)
    assert verdict.state == "released" and verdict.released_by == "admin-token:alice"
    assert [(c.event, c.new_state) for c in events.seen] == [("new-findings", "released")]


async def test_unfixed_report_only_does_not_block(db: Any) -> None:
    lenient = POLICY.model_copy(
        update={"verifiers": {"vulnerabilities": VerifierPolicy(unfixed="report")}}
    )
    await seed(db, DIGEST, inventory(("nofix", "1.0")))
    await seed(db, OTHER, inventory(("demo-pkg", "1.0")))
    result = await imported(db, osv("NOFIX-1", "nofix", None), osv("DEMO-1", "demo-pkg", "1.5"))
    keys = [(REPO, DIGEST), (REPO, OTHER)]
    await after_advisory_import(db, [lenient], keys, result.data_version)
    assert (await state_of(db, DIGEST)).state == "passed"
    (reported,) = [f for f in await findings(db, DIGEST) if f.verifier == "vulnerabilities"]
    assert reported.fix == "" and "(no fix known)" in reported.title
    assert (await state_of(db, OTHER)).state == "quarantined"  # a fix exists: it blocks


async def test_images_without_stored_data_are_queued_for_a_full_verification(db: Any) -> None:
    await seed(db, DIGEST, None)  # verified, never inventoried
    await DbInventoryStore(db).store(REPO, OTHER, inventory(("demo-pkg", "1.0")))  # no verdict
    await seed(db, "sha256:" + "c" * 64, inventory(("demo-pkg", "1.0")))
    result = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))
    handled = await queue_affected(db, result, policies=[POLICY])
    assert handled == 2  # OTHER queued, "c" re-evaluated; DIGEST holds no affected package
    async with db() as session:
        queued = (await session.scalars(select(Job.digest))).all()
        pending = await verdicts.get(session, REPO, OTHER)
    assert queued == [OTHER]
    assert pending is not None and pending.state == "pending"
    assert (await state_of(db, "sha256:" + "c" * 64)).state == "quarantined"


async def test_without_policies_every_affected_image_is_queued(db: Any) -> None:
    await seed(db, DIGEST, inventory(("demo-pkg", "1.0")))
    result = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))
    assert await queue_affected(db, result) == 1
    async with db() as session, session.begin():
        job = await jobs.claim(session, "t", __import__("datetime").timedelta(seconds=5), 3)
    assert job is not None and job.digest == DIGEST
    assert (await state_of(db)).state == "passed"  # the verdict stays until the job lands


async def test_policy_change_redecides_from_stored_findings(db: Any) -> None:
    await seed(db, DIGEST, inventory(("demo-pkg", "1.0")))
    await seed(db, OTHER, inventory(("demo-pkg", "1.0")))
    result = await imported(db, osv("LOW-1", "demo-pkg", "1.5", severity="LOW"))
    await after_advisory_import(db, [POLICY], [(REPO, DIGEST), (REPO, OTHER)], result.data_version)
    assert (await state_of(db)).state == "passed"  # low is under the "high" threshold

    stricter = POLICY.model_copy(update={"severity_threshold": "low"})
    events = Recorder()
    report = await after_policy_change(db, [stricter], publish=events)
    assert (report.examined, report.quarantined) == (2, 2)
    verdict = await state_of(db)
    assert verdict.state == "quarantined" and verdict.policy_version == stricter.version
    assert verdict.trigger == f"policy-change (policy team version {stricter.version})"
    assert [c.event for c in events.seen] == ["quarantined", "quarantined"]
    assert CONFIG_FINDING in await findings(db)
    again = await after_policy_change(db, [stricter])
    assert again.examined == 0  # every verdict now carries the current policy version

    async with db() as session, session.begin():
        await verdicts.release(session, REPO, OTHER, "admin-token:bob", "ok for now", None)
    strictest = POLICY.model_copy(update={"severity_threshold": "info"})
    await after_policy_change(db, [strictest])
    assert (await state_of(db)).state == "quarantined"
    assert (await state_of(db, OTHER)).state == "released"  # an admin's release stays

    back = await after_policy_change(db, [POLICY])
    assert back.examined == 2 and back.changed == 2
    assert (await state_of(db)).state == "passed"


async def test_policy_change_to_notify_announces_findings_a_passed_image_now_has(db: Any) -> None:
    await seed(db, DIGEST, inventory(("demo-pkg", "1.0")))
    result = await imported(db, osv("LOW-1", "demo-pkg", "1.5", severity="LOW"))
    await after_advisory_import(db, [POLICY], [(REPO, DIGEST)], result.data_version)
    notify = POLICY.model_copy(update={"severity_threshold": "low", "on_new_findings": "notify"})
    events = Recorder()
    await after_policy_change(db, [notify], publish=events)
    assert (await state_of(db)).state == "passed"
    assert [(c.event, c.new_state) for c in events.seen] == [("new-findings", "passed")]


async def test_many_batches_read_ahead_and_give_the_same_result(db: Any) -> None:
    digests = [f"sha256:{n:064x}" for n in range(5)]
    for n, digest in enumerate(digests):
        await seed(db, digest, inventory(("demo-pkg", "1.0" if n % 2 else "2.0")))
    await seed(db, "sha256:" + "f" * 64, None)  # no inventory: handed back for a verification
    result = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))
    keys = [(REPO, d) for d in [*digests, "sha256:" + "f" * 64]]
    report = await after_advisory_import(
        db, [POLICY], keys, result.data_version, changed=result.advisories, batch=2
    )
    assert report.examined == 5 and report.quarantined == 2
    assert report.needs_verification == [(REPO, "sha256:" + "f" * 64)]
    states = [(await state_of(db, d)).state for d in digests]
    assert states == ["passed", "quarantined", "passed", "quarantined", "passed"]


async def test_a_newly_required_verifier_fails_closed_and_queues_a_verification(db: Any) -> None:
    await seed(db, DIGEST, inventory(("demo-pkg", "2.0")))
    signed = POLICY.model_copy(update={"require": ["inventory", "vulnerabilities", "signatures"]})
    report = await after_policy_change(db, [signed])
    verdict = await state_of(db)
    assert verdict.state == "quarantined"
    assert "required verifier signatures did not run" in verdict.reasons
    assert report.needs_verification == [(REPO, DIGEST)]
    async with db() as session:
        queued = (await session.scalars(select(Job.digest).where(Job.state == "queued"))).all()
    assert queued == [DIGEST]


async def test_an_image_sharing_a_layer_that_gains_findings_is_queued_for_verification(
    db: Any,
) -> None:
    """The vulnerable package's database sits in layer ``1...1``: an image that lists that layer
    but replaced the database in a later one (so its own inventory holds no such package) must
    weigh the layer's new findings too, which only a verification can do."""
    await seed(db, DIGEST, inventory(("demo-pkg", "1.0")))
    layer = "sha256:" + "1" * 64
    record = ManifestRecord(
        "other/derived",
        OTHER,
        "application/vnd.oci.image.manifest.v1+json",
        10,
        refs=(DescriptorRecord("layer", layer, "l", 1),),
    )
    async with db() as session, session.begin():
        await record_manifest(session, record, None)
    result = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))
    report = await after_advisory_import(db, [POLICY], [(REPO, DIGEST)], result.data_version)
    assert report.needs_verification == [("other/derived", OTHER)]
    again = await imported(db, osv("DEMO-1", "demo-pkg", "1.5", severity="CRITICAL"))
    # The same match again: the layer's findings are not new, nothing more to verify.
    report = await after_advisory_import(db, [POLICY], [(REPO, DIGEST)], again.data_version)
    assert report.needs_verification == []
