"""Re-evaluation: new verdicts from stored data, without reading a layer or asking the upstream.

Two triggers, one shape (batches of images, a few queries per batch, one transaction each):

1. An advisory import (:func:`after_advisory_import`). The ``vulnerabilities`` findings are
   matched again from the stored inventory (``image_packages``, only the packages some advisory
   names) and the current advisory store, with the verifier's own matching code
   (``verifiers.vulns.assess``); every other verifier's stored outcome and findings are kept;
   the policy that matches the repository now decides. An image with nothing stored to decide
   from (never inventoried, still pending, its vulnerability check errored) is handed back so
   the caller queues a full verification for it.
2. A policy change (:func:`after_policy_change`): verdicts decided under another version of the
   policy that now matches their repository are decided again from their stored findings. A
   waiver an admin makes or withdraws (``services.policybook``) is such a change where it applies.

Either way the rules of ``storage.verdicts`` hold: an unexpired admin release stays released, an
admin's hold stays quarantined. Each verdict records its trigger (``advisory-import (data
version N)``, ``policy-change (...)``), and every change is published on the event bus, so
webhooks fire: ``image.quarantined`` for a newly quarantined image, ``image.new-findings`` for
one that stays pullable (``on_new_findings = "notify"``, or an admin's release) although new
findings would block it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.policy import Policy
from services.events import VerdictChange
from services.policybook import PolicyBook, load_book
from services.stored_outcomes import (
    StoredDataError,
    decide_stored,
    expected_of,
    held_in,
    needs_verification,
    outcomes_json,
    rebuild_outcomes,
    stored_outcome,
)
from storage import content, inventory, jobs, verdicts
from storage.advisories import advisories_for
from storage.verdicts import (
    Applied,
    DecisionRecord,
    FindingRecord,
    Reevaluation,
    VerdictView,
)
from verifiers.base import Finding
from verifiers.lifecycle import State
from verifiers.pipeline import Outcome, required_here
from verifiers.policy import Decision
from verifiers.scan.model import Package
from verifiers.vulns import assess
from verifiers.vulns.ecosystems import Query
from verifiers.vulns.osv import Advisory

log = logging.getLogger("gatekeeper.reevaluate")

BATCH = 500
"""Images per transaction: large enough that per-query overhead vanishes, small enough to keep
the ``IN (...)`` lists and the rows in memory modest."""

Publish = Callable[[VerdictChange], Awaitable[None]]
Key = tuple[str, str]


@dataclass
class Report:
    """What one re-evaluation did."""

    examined: int = 0
    """Verdicts decided again."""
    changed: int = 0
    """Of those, how many changed state."""
    quarantined: int = 0
    """Newly quarantined."""
    notified: int = 0
    """Stayed pullable although new findings would block them (``image.new-findings``)."""
    needs_verification: list[Key] = field(default_factory=list)
    """Nothing stored to decide from: these need a full verification."""
    skipped: int = 0
    """Not applicable (the check did not run on them) or unreadable stored data."""
    seconds: float = 0.0


# -- deciding and storing ----------------------------------------------------------------------


class Policies:
    """The policies in force (the settings file's with the stored waivers, read once per run),
    with the match and the version per repository worked out once per run (a policy's version
    is a hash of its whole content)."""

    def __init__(self, book: PolicyBook) -> None:
        self._book = book
        self._matched: dict[tuple[str, str], tuple[Policy, str]] = {}

    def for_image(self, verdict: VerdictView) -> tuple[Policy, str]:
        """The policy for the image's repository and origin, and its version."""
        key = (verdict.repository, verdict.origin)
        found = self._matched.get(key)
        if found is None:
            policy = self._book.match(*key)
            found = self._matched[key] = (policy, policy.version)
        return found


@dataclass(frozen=True)
class _Planned:
    """One image's new decision, before it is stored."""

    item: Reevaluation
    decision: Decision
    known: Callable[[], frozenset[str]]
    """``finding_id`` of the findings the previous verdict already announced; worked out only
    for the few images that stay pullable with blocking findings."""


def _record(finding: Finding, memo: assess.Memo | None) -> FindingRecord:
    """The stored form of a finding, made once per finding the memo shares between images."""
    if memo is None:
        return FindingRecord.of(finding)
    record = memo.extra.get(id(finding))
    if record is None:
        record = memo.extra[id(finding)] = FindingRecord.of(finding)
    return record


@dataclass(frozen=True)
class _Delta:
    """How one verifier's stored findings of an image change: rows of ``rules`` (every row when
    None) give way to ``add``."""

    verifier: str
    add: tuple[FindingRecord, ...]
    rules: frozenset[str] | None


def _plan(
    verdict: VerdictView,
    policies: Policies,
    outcomes: list[Outcome],
    trigger: str,
    *,
    replace: Outcome | None,
    known: Callable[[], frozenset[str]],
    delta: _Delta | None = None,
) -> _Planned:
    """The new decision for ``verdict``, with ``replace`` standing in for the stored outcome of
    its verifier and ``delta`` turning that verifier's stored findings into the new ones."""
    policy, _ = policies.for_image(verdict)
    decision = decide_stored(policy, verdict, outcomes)
    data_versions = dict(verdict.data_versions)
    if replace is not None:
        data_versions[replace.verifier] = replace.version
    record = DecisionRecord(
        state=decision.state,
        reasons=decision.reasons,
        policy=decision.policy,
        policy_version=decision.policy_version,
        data_versions=data_versions,
        outcomes=outcomes_json(verdict, replace),
        findings=delta.add if delta else (),
        trigger=trigger,
        held=held_in(outcomes),
    )
    item = Reevaluation(
        verdict.repository,
        verdict.digest,
        record,
        replaces=delta.verifier if delta else None,
        rules=delta.rules if delta else None,
    )
    return _Planned(item, decision, known)


def _delta(
    new: Sequence[Finding],
    had: set[str],
    changed: frozenset[str] | None,
    memo: assess.Memo | None = None,
) -> _Delta | None:
    """The change to an image's ``vulnerabilities`` rows. A finding of an advisory the import
    did not change is the row already stored (same record, same inventory, same matching
    code), so it stays; the rows of changed advisories (``had``: those stored) are rewritten;
    ``changed`` None rewrites every row. None when nothing needs writing."""
    add = tuple(_record(f, memo) for f in new if changed is None or f.rule_id in changed)
    if not add and not had and changed is not None:
        return None
    return _Delta(assess.NAME, add, changed)


async def _store(
    session: AsyncSession,
    planned: Sequence[_Planned],
    report: Report,
    locked: verdicts.Locked,
) -> list[VerdictChange]:
    """Write one batch; returns the events to publish once the transaction has committed (a
    listener must never announce a verdict that was rolled back)."""
    applied = await verdicts.apply_reevaluations(session, [p.item for p in planned], locked)
    by_key = {(p.item.repository, p.item.digest): p for p in planned}
    changes = []
    for done in applied:
        report.examined += 1
        change = _change(done, by_key[(done.repository, done.digest)])
        if done.old_state != done.new_state:
            report.changed += 1
            report.quarantined += done.new_state == State.QUARANTINED
        elif change is not None:
            report.notified += 1
        if change is not None:
            changes.append(change)
    return changes


async def _publish(changes: Sequence[VerdictChange], publish: Publish | None) -> None:
    if publish is not None:
        for change in changes:
            await publish(change)


def _change(done: Applied, plan: _Planned) -> VerdictChange | None:
    """The event for one stored re-evaluation, or None when nothing worth telling happened."""
    record = plan.item.decision
    still_pullable = plan.decision.notified or (
        done.new_state == State.RELEASED and plan.decision.state == State.QUARANTINED
    )
    if done.old_state == done.new_state and not still_pullable:
        return None  # the common case: nothing to tell, so no text is built
    why = "; ".join(record.reasons) or "all checks passed"
    reason = f"{record.trigger}: {why}"
    if done.old_state != done.new_state:
        return VerdictChange(
            done.new_state,
            done.repository,
            done.digest,
            done.old_state,
            done.new_state,
            "gatekeeper",
            reason,
            policy=record.policy,
        )
    new = {f.finding_id for f in plan.decision.blocking} - plan.known()
    if new:
        shown = ", ".join(sorted(new)[:5]) + (", ..." if len(new) > 5 else "")
        return VerdictChange(
            "new-findings",
            done.repository,
            done.digest,
            done.old_state,
            done.new_state,
            "gatekeeper",
            f"{reason} (still pullable; new: {shown})",
            policy=record.policy,
        )
    return None


# -- advisory imports --------------------------------------------------------------------------


async def after_advisory_import(
    db: async_sessionmaker[Any],
    policies: Sequence[Policy],
    images: Sequence[Key],
    data_version: int,
    *,
    changed: frozenset[str] | None = None,
    publish: Publish | None = None,
    batch: int = BATCH,
) -> Report:
    """Match ``images`` again against advisory data ``data_version`` and decide them anew.
    ``changed`` are the ids of the advisories the import added or updated (None: unknown, so
    every stored finding of the images is rewritten rather than kept)."""
    started = time.perf_counter()
    report = Report()
    trigger = f"advisory-import (data version {data_version})"
    version = assess.version_for(data_version)
    resolver = Policies(await load_book(db, policies))
    caches = _Caches(changed)
    ordered = sorted(set(images))
    batches = [ordered[n : n + batch] for n in range(0, len(ordered), batch)]
    # Reading a batch (the large queries) overlaps deciding and writing the one before: the
    # database works in its own thread (or server) while Python matches.
    reading = _start_read(db, batches, 0, caches)
    try:
        for n, keys in enumerate(batches):
            assert reading is not None
            read = await reading
            reading = _start_read(db, batches, n + 1, caches)
            async with db() as session, session.begin():
                locked = await verdicts.lock(session, keys)
                planned = _plan_advisory_batch(
                    resolver, keys, locked, read, (trigger, version), caches, report
                )
                changes = await _store(session, planned, report, locked)
            await _publish(changes, publish)
            caches.flagged.update(_newly_flagged(planned, read))
    finally:
        if reading is not None and not reading.done():  # a failed batch: stop reading ahead
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading
    await _sharing(db, caches.flagged, set(ordered), report)
    report.seconds = time.perf_counter() - started
    log.info(
        "%s: %d images re-evaluated in %.2fs (%d changed, %d newly quarantined, %d notified), "
        "%d need a full verification",
        trigger,
        report.examined,
        report.seconds,
        report.changed,
        report.quarantined,
        report.notified,
        len(report.needs_verification),
    )
    return report


class _Caches:
    """What one run computes once and reuses for every batch (the advisories do not change
    during a run)."""

    def __init__(self, changed: frozenset[str] | None) -> None:
        self.changed = changed
        self.parsed: dict[str, Advisory] = {}
        self.memo = assess.Memo()
        self.flagged: set[str] = set()
        """Layers the run gave new findings (a vulnerable package whose database is there)."""


SHARING_LIMIT = 1000
"""Most manifests outside an import's scope queued because a layer they list gained findings."""


async def _sharing(
    db: async_sessionmaker[Any], flagged: set[str], scope: set[Key], report: Report
) -> None:
    """Manifests that list a layer the run gave new findings, but were not in its scope (their
    own inventory does not hold the package: a later layer replaced its database), need a full
    verification to weigh the layer's findings, which follow it everywhere; the pull gate
    refuses that layer to them meanwhile."""
    if not flagged:
        return
    async with db() as session:
        found = await content.referencing(session, sorted(flagged), limit=SHARING_LIMIT + 1)
    others = [key for key in found if key not in scope]
    if len(others) > SHARING_LIMIT:
        log.warning("more manifests share layers with new findings; queueing %d", SHARING_LIMIT)
    report.needs_verification += others[:SHARING_LIMIT]


def _newly_flagged(planned: Sequence[_Planned], read: _Read) -> set[str]:
    """Layers of findings an image did not have before this run (a re-import of unchanged
    matches flags nothing, so it queues nothing)."""
    flagged: set[str] = set()
    for plan in planned:
        had = read.previous.get((plan.item.repository, plan.item.digest), set())
        new = plan.item.decision.findings
        flagged.update(f.blob for f in new if f.blob and f.rule_id not in had)
    return flagged


@dataclass(frozen=True)
class _Read:
    """The stored data of one batch of images, read outside its write transaction."""

    pairs: dict[Key, list[tuple[Package, Query]]]
    """Each inventoried image's candidate packages with their OSV lookups."""
    advisories: dict[tuple[str, str], list[Advisory]]
    findings: dict[Key, list[FindingRecord]]
    """Other verifiers' stored findings (few)."""
    previous: dict[Key, set[str]]
    """Rule ids of this verifier's stored findings of the changed advisories."""


def _start_read(
    db: async_sessionmaker[Any], batches: Sequence[Sequence[Key]], n: int, caches: _Caches
) -> asyncio.Task[_Read] | None:
    if n >= len(batches):
        return None
    return asyncio.create_task(_read(db, batches[n], caches))


async def _read(db: async_sessionmaker[Any], keys: Sequence[Key], caches: _Caches) -> _Read:
    """One batch's inventories, advisories and findings, in a read-only session. Findings a
    verification writes meanwhile are not lost: the write deletes and inserts by rule id
    inside the database, never from what was read here."""
    memo = caches.memo
    async with db() as session:
        stored = await inventory.matchable(session, keys, memo.packages)
        pairs = {
            key: assess.queries(held.packages, held.os_release, memo)
            for key, held in stored.items()
        }
        wanted = {(q.ecosystem, q.name) for found in pairs.values() for _, q in found}
        advisories = await advisories_for(session, wanted, caches.parsed)
        findings = await verdicts.findings_of(session, keys, skip_verifier=assess.NAME)
        previous = await verdicts.rule_ids_of(session, keys, assess.NAME, caches.changed)
    return _Read(pairs, advisories, findings, previous)


def _plan_advisory_batch(
    policies: Policies,
    keys: Sequence[Key],
    locked: verdicts.Locked,
    read: _Read,
    labels: tuple[str, str],
    caches: _Caches,
    report: Report,
) -> list[_Planned]:
    """Decide every image of one batch from its locked verdict and the data read for it."""
    trigger, version = labels
    memo, changed = caches.memo, caches.changed
    planned = []
    for key in keys:
        verdict = locked.views.get(key)
        if verdict is None or verdict.state == State.PENDING or not verdict.outcomes:
            report.needs_verification.append(key)
            continue
        outcome = stored_outcome(verdict, assess.NAME)
        if outcome is None or outcome.get("status") == "skipped":
            report.skipped += 1  # the check does not apply to it, or is not enabled
            continue
        pairs = read.pairs.get(key)
        if pairs is None or outcome.get("status") != "ok":
            report.needs_verification.append(key)
            continue
        matched = assess.assess(pairs, read.advisories, memo)
        replace = Outcome(assess.NAME, version, "ok", tuple(matched))
        findings, previous = read.findings[key], read.previous[key]
        known = partial(_known_before_import, findings, previous, matched, changed)
        try:
            outcomes = rebuild_outcomes(verdict, findings, replace)
        except StoredDataError as exc:
            log.warning("%s skips %s@%s: %s", trigger, *key, exc)
            report.skipped += 1
            continue
        planned.append(
            _plan(
                verdict,
                policies,
                outcomes,
                trigger,
                replace=replace,
                known=known,
                delta=_delta(matched, previous, changed, memo),
            )
        )
    return planned


def _known_before_import(
    others: Sequence[FindingRecord],
    had: set[str],
    matched: Sequence[Finding],
    changed: frozenset[str] | None,
) -> frozenset[str]:
    """Announced before the import: other verifiers' findings, this one's stored rows of the
    changed advisories, and (unchanged, so stored) its findings of every other advisory."""
    return frozenset(
        {f"{f.verifier}:{f.rule_id}" for f in others}
        | {f"{assess.NAME}:{r}" for r in had}
        | {f.finding_id for f in matched if changed is not None and f.rule_id not in changed}
    )


# -- policy changes ----------------------------------------------------------------------------


def policy_trigger(policy: Policy, version: str, cause: str | None = None) -> str:
    where = f"policy {policy.name} version {version}"
    return f"{cause} ({where})" if cause else f"policy-change ({where})"


async def after_policy_change(
    db: async_sessionmaker[Any],
    policies: Sequence[Policy],
    *,
    repository: str | None = None,
    publish: Publish | None = None,
    batch: int = BATCH,
    cause: str | None = None,
) -> Report:
    """Decide again, from stored findings, every verdict whose recorded policy version differs
    from the policy that now matches its repository (of one repository, or all). The policies
    are ``policies`` with the stored waivers active now (``services.policybook``), so a waiver
    made, withdrawn or expired is a policy change where it applies. ``cause`` names it in each
    verdict's trigger (``waiver 3 made by tina``; default ``policy-change``).

    A policy that now requires a verifier with no stored outcome cannot be answered from stored
    data: the decision fails closed ("did not run") and a full verification is queued, so the
    image is decided on real results as soon as a worker gets to it."""
    started = time.perf_counter()
    report = Report()
    resolver = Policies(await load_book(db, policies))
    parsed: dict[FindingRecord, Finding] = {}
    after: Key | None = None
    queued = 0
    while True:
        async with db() as session, session.begin():
            page = await verdicts.page(session, repository=repository, after=after, limit=batch)
            if not page:
                break
            after = (page[-1].repository, page[-1].digest)
            keys = [(v.repository, v.digest) for v in page if _stale(v, resolver)]
            locked = await verdicts.lock(session, keys)  # read again, locked, to write back
            stale = [locked.views[k] for k in keys if k in locked.views]
            findings = await verdicts.findings_of(session, keys)
            planned = [
                plan
                for verdict in stale
                if (plan := _replan(verdict, findings, resolver, report, parsed, cause)) is not None
            ]
            changes = await _store(session, planned, report, locked)
            await queue_verifications(
                session, report.needs_verification[queued:], POLICY_CHANGE, jobs.POLICY_CHANGE
            )
            queued = len(report.needs_verification)
        await _publish(changes, publish)
    report.seconds = time.perf_counter() - started
    log.info(
        "policy change: %d verdicts re-decided from stored findings in %.2fs (%d changed, "
        "%d newly quarantined, %d notified); %d queued for a full verification (a newly "
        "required verifier has no stored result)",
        report.examined,
        report.seconds,
        report.changed,
        report.quarantined,
        report.notified,
        len(report.needs_verification),
    )
    return report


def _replan(
    verdict: VerdictView,
    findings: Mapping[Key, Sequence[FindingRecord]],
    resolver: Policies,
    report: Report,
    parsed: dict[FindingRecord, Finding],
    cause: str | None,
) -> _Planned | None:
    """The new decision on one stale verdict from its stored outcomes; None when they cannot
    be read (counted as skipped). A required verifier without a stored result puts the image
    in ``report.needs_verification``."""
    key = (verdict.repository, verdict.digest)
    try:
        outcomes = rebuild_outcomes(verdict, findings[key], parsed=parsed)
    except StoredDataError as exc:
        log.warning("policy re-evaluation skips %s@%s: %s", *key, exc)
        report.skipped += 1
        return None
    policy, version = resolver.for_image(verdict)
    wanted = required_here(policy.require, expected_of(verdict))
    if set(wanted) - {o.verifier for o in outcomes} or needs_verification(verdict):
        report.needs_verification.append(key)
    return _plan(
        verdict,
        resolver,
        outcomes,
        policy_trigger(policy, version, cause),
        replace=None,
        known=partial(_announced, verdict, findings[key]),
    )


POLICY_CHANGE = "policy-change: a required verifier has no stored result"
"""Why a policy change queues a full verification."""


async def queue_verifications(
    session: AsyncSession, images: Sequence[Key], reason: str, identity: str
) -> None:
    """A full verification of each image, on the persisted queue (pending if it has no
    verdict yet), attributed to ``identity`` (``jobs.POLICY_CHANGE``, ``jobs.ADVISORY_IMPORT``:
    one share of the workers however many images); in the caller's transaction."""
    for repository, digest in images:
        await verdicts.ensure_pending(session, repository, digest, "gatekeeper", reason)
        await jobs.enqueue(session, "verify", repository, digest, reason, identity=identity)


def _stale(verdict: VerdictView, policies: Policies) -> bool:
    """Decided (not pending, with outcomes) under another policy version than applies now."""
    if verdict.state == State.PENDING or not verdict.outcomes:
        return False
    return verdict.policy_version != policies.for_image(verdict)[1]


def _announced(verdict: VerdictView, findings: Sequence[FindingRecord]) -> frozenset[str]:
    """Findings the previous verdict already blocked on or announced: all of them unless it
    passed cleanly (then a policy that now blocks on them makes them new)."""
    if verdict.effective_state() == State.PASSED and not verdict.reasons:
        return frozenset()
    return frozenset(f"{f.verifier}:{f.rule_id}" for f in findings)
