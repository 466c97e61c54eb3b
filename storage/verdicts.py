"""Verdict rows and their history. Which state an image should be in is decided elsewhere
(``verifiers.policy``); this module only stores decisions and answers "may this be pulled"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import FindingRow, Manifest, ManifestRef, Verdict, VerdictEvent
from storage.timeutil import now as utcnow
from storage.timeutil import utc

PULLABLE = ("passed", "released")


@dataclass(frozen=True)
class VerdictView:
    repository: str
    digest: str
    state: str
    reasons: tuple[str, ...]
    policy: str | None
    policy_version: str | None
    data_versions: dict[str, Any]
    outcomes: tuple[dict[str, Any], ...]
    released_by: str | None
    release_reason: str | None
    release_expires: datetime | None
    decided_at: datetime | None
    updated_at: datetime

    def effective_state(self, moment: datetime | None = None) -> str:
        """A release past its expiry counts as quarantined even before the sweep rewrites it."""
        expires = self.release_expires
        if self.state == "released" and expires is not None and expires <= (moment or utcnow()):
            return "quarantined"
        return self.state

    def pullable(self, moment: datetime | None = None) -> bool:
        return self.effective_state(moment) in PULLABLE


@dataclass(frozen=True)
class FindingRecord:
    verifier: str
    rule_id: str
    severity: str
    title: str
    location: str = ""
    evidence: str = ""


@dataclass(frozen=True)
class EventView:
    time: datetime
    event: str
    old_state: str | None
    new_state: str
    actor: str
    reason: str | None


@dataclass(frozen=True)
class DecisionRecord:
    """What the verification service hands over to be stored."""

    state: str
    reasons: tuple[str, ...]
    policy: str
    policy_version: str
    data_versions: dict[str, Any]
    outcomes: tuple[dict[str, Any], ...]
    findings: tuple[FindingRecord, ...] = field(default_factory=tuple)


def _view(row: Verdict) -> VerdictView:
    return VerdictView(
        repository=row.repository,
        digest=row.digest,
        state=row.state,
        reasons=tuple(row.reasons or ()),
        policy=row.policy,
        policy_version=row.policy_version,
        data_versions=dict(row.data_versions or {}),
        outcomes=tuple(row.outcomes or ()),
        released_by=row.released_by,
        release_reason=row.release_reason,
        release_expires=utc(row.release_expires),
        decided_at=utc(row.decided_at),
        updated_at=utc(row.updated_at) or utcnow(),
    )


async def get(session: AsyncSession, repository: str, digest: str) -> VerdictView | None:
    row = await session.get(Verdict, (repository, digest))
    return _view(row) if row else None


def _event(
    session: AsyncSession,
    repository: str,
    digest: str,
    event: str,
    old: str | None,
    new: str,
    actor: str,
    reason: str | None,
) -> None:
    session.add(
        VerdictEvent(
            time=utcnow(),
            repository=repository,
            digest=digest,
            event=event,
            old_state=old,
            new_state=new,
            actor=actor,
            reason=reason,
        )
    )


async def ensure_pending(
    session: AsyncSession, repository: str, digest: str, actor: str, reason: str
) -> bool:
    """Create a ``pending`` verdict if the image has none; True if created."""
    if await session.get(Verdict, (repository, digest)) is not None:
        return False
    moment = utcnow()
    session.add(
        Verdict(
            repository=repository,
            digest=digest,
            state="pending",
            reasons=[reason],
            policy=None,
            policy_version=None,
            data_versions={},
            outcomes=[],
            updated_at=moment,
        )
    )
    _event(session, repository, digest, "pending", None, "pending", actor, reason)
    await session.flush()
    return True


async def record_decision(
    session: AsyncSession,
    repository: str,
    digest: str,
    decision: DecisionRecord,
) -> tuple[str | None, str]:
    """Store a completed verification; returns (old state, new state).

    An unexpired admin release survives a failing re-scan (the override is the admin's call
    until it expires); a passing re-scan replaces it.
    """
    moment = utcnow()
    row = await session.get(Verdict, (repository, digest), with_for_update=True)
    old = row.state if row else None
    if row is None:
        row = Verdict(
            repository=repository,
            digest=digest,
            updated_at=moment,
            data_versions={},
            outcomes=[],
            reasons=[],
            state="pending",
        )
        session.add(row)
    current = _view(row) if old else None
    keep_release = (
        current is not None
        and current.effective_state(moment) == "released"
        and decision.state == "quarantined"
    )
    # An admin's hold outlives passing re-scans: it is lifted by a release, nothing else.
    held = row.held_by is not None and row.state == "quarantined"
    new = "released" if keep_release else "quarantined" if held else decision.state
    row.state = new
    row.reasons = list(decision.reasons)
    if held:
        hold = f"held in quarantine by {row.held_by} until an admin releases it"
        row.reasons = [hold, *decision.reasons][:50]
    row.policy = decision.policy
    row.policy_version = decision.policy_version
    row.data_versions = decision.data_versions
    row.outcomes = list(decision.outcomes)
    row.decided_at = moment
    row.updated_at = moment
    if new != "released":
        row.released_by = row.release_reason = None
        row.release_expires = None
    await session.execute(
        delete(FindingRow).where(FindingRow.repository == repository, FindingRow.digest == digest)
    )
    for finding in decision.findings:
        session.add(FindingRow(repository=repository, digest=digest, **finding.__dict__))
    if old != new:
        event = {"passed": "passed", "quarantined": "quarantined"}.get(new, "verified")
        _event(
            session,
            repository,
            digest,
            event,
            old,
            new,
            "gatekeeper",
            "; ".join(decision.reasons) or "all checks passed",
        )
    await session.flush()
    return old, new


async def release(
    session: AsyncSession,
    repository: str,
    digest: str,
    actor: str,
    reason: str,
    expires: datetime | None,
) -> tuple[str, str]:
    row = await session.get(Verdict, (repository, digest), with_for_update=True)
    if row is None:
        raise LookupError(f"no verdict for {repository}@{digest}")
    old = row.state
    moment = utcnow()
    row.state, row.released_by, row.release_reason = "released", actor, reason
    row.release_expires, row.updated_at = expires, moment
    row.held_by = None
    _event(session, repository, digest, "released", old, "released", actor, reason)
    await session.flush()
    return old, "released"


async def requarantine(
    session: AsyncSession, repository: str, digest: str, actor: str, reason: str
) -> tuple[str, str]:
    row = await session.get(Verdict, (repository, digest), with_for_update=True)
    if row is None:
        raise LookupError(f"no verdict for {repository}@{digest}")
    old = row.state
    row.state, row.updated_at = "quarantined", utcnow()
    row.held_by = actor
    row.reasons = [f"re-quarantined by {actor}: {reason}", *(row.reasons or [])][:50]
    row.released_by = row.release_reason = None
    row.release_expires = None
    _event(session, repository, digest, "requarantined", old, "quarantined", actor, reason)
    await session.flush()
    return old, "quarantined"


async def expire_releases(session: AsyncSession) -> list[tuple[str, str]]:
    """Turn releases past their expiry back into quarantine; returns the images changed."""
    moment = utcnow()
    rows = (
        await session.scalars(
            select(Verdict)
            .where(Verdict.state == "released", Verdict.release_expires <= moment)
            .with_for_update()
        )
    ).all()
    changed = []
    for row in rows:
        row.state, row.updated_at = "quarantined", moment
        row.reasons = [f"release by {row.released_by} expired", *(row.reasons or [])][:50]
        _event(
            session,
            row.repository,
            row.digest,
            "release-expired",
            "released",
            "quarantined",
            "gatekeeper",
            f"release by {row.released_by} expired",
        )
        row.released_by = row.release_reason = None
        row.release_expires = None
        changed.append((row.repository, row.digest))
    await session.flush()
    return changed


async def history(session: AsyncSession, repository: str, digest: str) -> list[EventView]:
    rows = (
        await session.scalars(
            select(VerdictEvent)
            .where(VerdictEvent.repository == repository, VerdictEvent.digest == digest)
            .order_by(VerdictEvent.id)
        )
    ).all()
    return [
        EventView(utc(r.time) or utcnow(), r.event, r.old_state, r.new_state, r.actor, r.reason)
        for r in rows
    ]


async def findings(session: AsyncSession, repository: str, digest: str) -> list[FindingRecord]:
    rows = (
        await session.scalars(
            select(FindingRow)
            .where(FindingRow.repository == repository, FindingRow.digest == digest)
            .order_by(FindingRow.id)
        )
    ).all()
    return [
        FindingRecord(r.verifier, r.rule_id, r.severity, r.title, r.location, r.evidence)
        for r in rows
    ]


async def list_verdicts(
    session: AsyncSession,
    state: str | None = None,
    repository: str | None = None,
    limit: int = 100,
) -> list[VerdictView]:
    query = select(Verdict)
    if state is not None:
        query = query.where(Verdict.state == state)
    if repository is not None:
        query = query.where(Verdict.repository == repository)
    rows = (await session.scalars(query.order_by(Verdict.updated_at.desc()).limit(limit))).all()
    return [_view(r) for r in rows]


def _pullable_clause(moment: datetime):  # type: ignore[no-untyped-def]
    return or_(
        Verdict.state == "passed",
        and_(
            Verdict.state == "released",
            or_(Verdict.release_expires.is_(None), Verdict.release_expires > moment),
        ),
    )


async def blob_pullable(session: AsyncSession, repository: str, blob_digest: str) -> bool:
    """Does a pullable manifest of ``repository`` reference this blob (as config or layer)?"""
    moment = utcnow()
    query = select(
        exists().where(
            ManifestRef.digest == blob_digest,
            ManifestRef.kind.in_(("config", "layer")),
            Manifest.id == ManifestRef.manifest_id,
            Manifest.repository == repository,
            Verdict.repository == Manifest.repository,
            Verdict.digest == Manifest.digest,
            _pullable_clause(moment),
        )
    )
    return bool(await session.scalar(query))


async def by_digest(session: AsyncSession, digest: str, limit: int = 1000) -> list[VerdictView]:
    """Verdicts of this digest in every repository (at most ``limit``), by repository name."""
    rows = (
        await session.scalars(
            select(Verdict)
            .where(Verdict.digest == digest)
            .order_by(Verdict.repository)
            .limit(limit)
        )
    ).all()
    return [_view(r) for r in rows]


async def blocked_elsewhere(session: AsyncSession, digest: str) -> Sequence[VerdictView]:
    """Verdicts of this digest, in any repository, that do not allow pulling it."""
    rows = (
        await session.scalars(
            select(Verdict).where(Verdict.digest == digest, Verdict.state == "quarantined")
        )
    ).all()
    return [_view(r) for r in rows]


async def page(
    session: AsyncSession,
    *,
    repository: str | None = None,
    after: tuple[str, str] | None = None,
    limit: int = 500,
) -> list[VerdictView]:
    """One page of verdicts in key order, after the key ``after``: for walks over every verdict
    (bulk rescans, policy dry-runs) that must not hold the whole table in memory or miss rows
    whose ``updated_at`` changes mid-walk."""
    query = select(Verdict)
    if repository is not None:
        query = query.where(Verdict.repository == repository)
    if after is not None:
        query = query.where(tuple_(Verdict.repository, Verdict.digest) > after)
    query = query.order_by(Verdict.repository, Verdict.digest).limit(limit)
    return [_view(r) for r in (await session.scalars(query)).all()]


async def findings_of(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[FindingRecord]]:
    """The stored findings of several images in one query, keyed by (repository, digest)."""
    found: dict[tuple[str, str], list[FindingRecord]] = {key: [] for key in keys}
    if not keys:
        return found
    rows = (
        await session.scalars(
            select(FindingRow)
            .where(tuple_(FindingRow.repository, FindingRow.digest).in_(list(keys)))
            .order_by(FindingRow.id)
        )
    ).all()
    for r in rows:
        found[(r.repository, r.digest)].append(
            FindingRecord(r.verifier, r.rule_id, r.severity, r.title, r.location, r.evidence)
        )
    return found
