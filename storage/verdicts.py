"""Verdict rows and their history. Which state an image should be in is decided elsewhere
(``verifiers.policy`` decides, ``verifiers.lifecycle`` combines a decision with the admin
overrides); this module only stores the result and answers "may this be pulled"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    delete,
    exists,
    insert,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage import globs
from storage.keys import images_clause
from storage.models import FindingRow, Manifest, ManifestRef, Verdict, VerdictEvent
from storage.prepared import Prepared, table
from storage.timeutil import now as utcnow
from storage.timeutil import utc
from verifiers import lifecycle
from verifiers.base import Finding, Severity
from verifiers.lifecycle import State


@dataclass(frozen=True)
class VerdictView:
    repository: str
    digest: str
    state: State
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
    trigger: str | None = None
    """What made the latest decision (None: a verification); see ``Verdict.trigger``."""

    held_by: str | None = None
    """The admin whose hold keeps it quarantined until a release (see ``lifecycle``)."""
    origin: str = "local"
    """Where the image comes from (``Verdict.origin``): which policy applies depends on it."""
    pushed: bool = False
    """It was pushed through the gatekeeper (``Verdict.pushed``)."""

    def effective_state(self, moment: datetime | None = None) -> State:
        """A release past its expiry counts as quarantined even before the sweep rewrites it."""
        return lifecycle.effective(self.state, self.release_expires, moment)

    def pullable(self, moment: datetime | None = None) -> bool:
        return self.effective_state(moment) in lifecycle.PULLABLE


@dataclass(frozen=True)
class FindingRecord:
    verifier: str
    rule_id: str
    severity: str
    title: str
    location: str = ""
    evidence: str = ""
    fix: str | None = None
    """The fixed version of a package finding, "" when none is known, None if n/a."""
    blob: str | None = None
    """The layer or config that carries it (``Finding.blob``)."""
    origin: str | None = None
    """``repository@digest`` of the image that found it, for a finding inherited through a
    shared blob; None for the image's own."""

    def finding(self) -> Finding:
        """Back to a verifier's finding; an unreadable severity counts as critical (closed)."""
        try:
            severity = Severity.parse(self.severity)
        except ValueError:
            severity = Severity.CRITICAL
        return Finding(
            self.verifier,
            self.rule_id,
            severity,
            self.title,
            self.location,
            self.evidence,
            self.fix,
            self.blob,
        )

    @classmethod
    def of(cls, finding: Finding, origin: str | None = None) -> FindingRecord:
        """The stored form of a verifier's finding (severity as its lower-case name)."""
        return cls(
            finding.verifier,
            finding.rule_id,
            finding.severity.name.lower(),
            finding.title,
            finding.location,
            finding.evidence,
            finding.fix,
            finding.blob,
            origin,
        )


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

    state: State
    reasons: tuple[str, ...]
    policy: str
    policy_version: str
    data_versions: dict[str, Any]
    outcomes: tuple[dict[str, Any], ...]
    findings: tuple[FindingRecord, ...] = field(default_factory=tuple)
    trigger: str | None = None
    """Why this decision was made when it is not a verification (``Verdict.trigger``)."""
    held: bool = False
    """An admin's hold on another image covers its content: it stays quarantined whatever
    the decision (``lifecycle.settle``)."""


@dataclass(frozen=True)
class Reevaluation:
    """A decision re-derived from stored data (no layer read), for :func:`apply_reevaluations`.

    The stored findings change by a delta, not wholesale: the rows of verifier ``replaces``
    whose rule id is in ``rules`` (every row of it when ``rules`` is None) give way to
    ``decision.findings``. After an advisory import only the findings of the advisories it
    changed can differ, and rewriting all of an image's findings would cost more than the whole
    decision; a policy change re-decides on the same findings (``replaces`` None)."""

    repository: str
    digest: str
    decision: DecisionRecord
    replaces: str | None = None
    rules: frozenset[str] | None = None


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_reevaluations` did to one verdict."""

    repository: str
    digest: str
    old_state: State
    new_state: State
    released_by: str | None


def _view(row: Verdict) -> VerdictView:
    return VerdictView(
        repository=row.repository,
        digest=row.digest,
        state=State(row.state),
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
        trigger=row.trigger,
        held_by=row.held_by,
        origin=row.origin or "local",
        pushed=bool(row.pushed),
    )


def as_view(row: Verdict) -> VerdictView:
    """A verdict row as the rest of the gatekeeper reads it (for queries of other modules)."""
    return _view(row)


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


_LOCKED = "gatekeeper_locked_verdicts"
"""``session.info`` key: the verdicts this transaction read with :func:`lock_current`."""


async def lock_current(session: AsyncSession, repository: str, digest: str) -> VerdictView | None:
    """The verdict as it stands, its row locked until the write transaction ends (``FOR
    UPDATE``; SQLite's write transaction holds everything already): what a decision recorded
    later in the same transaction (:func:`record_decision`, which then reads it no more) is
    made from, so no change made meanwhile is decided over."""
    row = await session.get(Verdict, (repository, digest), with_for_update=True)
    _locked(session)[(repository, digest)] = row
    return _view(row) if row else None


def _locked(session: AsyncSession) -> dict[tuple[str, str], Verdict | None]:
    """The verdicts :func:`lock_current` read in the session's current transaction. The rows
    are kept here: the session's identity map holds them only weakly, and a row collected
    would be read again."""
    transaction = session.sync_session.get_transaction()
    held = session.info.get(_LOCKED)
    if held is None or held[0] is not transaction:
        held = session.info[_LOCKED] = (transaction, {})
    return cast(dict[tuple[str, str], Verdict | None], held[1])


_PENDING = Prepared(
    lambda insert_on: (
        insert_on(table(Verdict))
        .values(
            repository=bindparam("in_repository"),
            digest=bindparam("image"),
            state=bindparam("new_state"),
            reasons=bindparam("new_reasons"),
            policy=None,
            policy_version=None,
            data_versions=bindparam("no_data_versions"),
            outcomes=bindparam("no_outcomes"),
            updated_at=bindparam("moment"),
            origin=bindparam("new_origin"),
            pushed=bindparam("new_pushed"),
        )
        .on_conflict_do_nothing()
        .returning(table(Verdict).c.digest)
    )
)
"""A pending verdict unless the image has one: built once (``storage.prepared``), as every
push runs it in its write transaction."""
_ADD_EVENT = insert(table(VerdictEvent))


async def ensure_pending(
    session: AsyncSession,
    repository: str,
    digest: str,
    actor: str,
    reason: str,
    *,
    origin: str = "local",
    pushed: bool = False,
) -> bool:
    """Create a ``pending`` verdict if the image has none; True if created (by this call:
    of two transactions racing, exactly one creates it, the other finds it). An image pushed
    through the gatekeeper is marked ``pushed`` even when it had a verdict already; its
    ``origin`` is set only here, at creation, and by :func:`set_origins`. One statement
    when the verdict exists, two when it is created (the insert says which, no read first)."""
    moment = utcnow()
    created = await session.scalar(
        _PENDING(session),
        {
            "in_repository": repository,
            "image": digest,
            "new_state": State.PENDING.value,
            "new_reasons": [reason],
            "no_data_versions": {},
            "no_outcomes": [],
            "moment": moment,
            "new_origin": origin,
            "new_pushed": pushed,
        },
    )
    if created is None:  # it had one (or another transaction made it meanwhile)
        if pushed:
            await _mark_pushed(session, repository, digest, origin)
        return False
    if session.new or session.dirty or session.deleted:
        await session.flush()  # events added before this one keep their order
    await session.execute(
        _ADD_EVENT,
        {
            "time": moment,
            "repository": repository,
            "digest": digest,
            "event": "pending",
            "old_state": None,
            "new_state": State.PENDING.value,
            "actor": actor,
            "reason": reason,
        },
    )
    return True


async def _mark_pushed(session: AsyncSession, repository: str, digest: str, origin: str) -> None:
    await session.execute(
        update(Verdict)
        .execution_options(synchronize_session=False)
        .where(Verdict.repository == repository, Verdict.digest == digest, ~Verdict.pushed)
        .values(pushed=True, origin=origin)
    )


async def origins_in_use(session: AsyncSession) -> list[tuple[str, str]]:
    """Each (repository, origin) of verdicts not pushed through the gatekeeper, once."""
    rows = await session.execute(
        select(Verdict.repository, Verdict.origin).where(~Verdict.pushed).distinct()
    )
    return [(repository, origin) for repository, origin in rows.all()]


async def set_origins(session: AsyncSession, repository: str, origin: str) -> int:
    """Give every verdict of ``repository`` not pushed through the gatekeeper ``origin``;
    how many changed."""
    result = await session.execute(
        update(Verdict)
        .execution_options(synchronize_session=False)
        .where(Verdict.repository == repository, ~Verdict.pushed, Verdict.origin != origin)
        .values(origin=origin)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def record_decision(
    session: AsyncSession,
    repository: str,
    digest: str,
    decision: DecisionRecord,
) -> tuple[State | None, State]:
    """Store a completed verification; returns (old state, new state), combined with the
    admin overrides by ``lifecycle.settle``."""
    moment = utcnow()
    key = (repository, digest)
    locked = _locked(session)
    row = locked[key] if key in locked else await session.get(Verdict, key, with_for_update=True)
    old = State(row.state) if row else None
    if row is None:
        row = Verdict(
            repository=repository,
            digest=digest,
            updated_at=moment,
            data_versions={},
            outcomes=[],
            reasons=[],
            state=State.PENDING,
        )
        session.add(row)
    locked[key] = row  # locked now, and read no more in this transaction (:func:`get`)
    new = _apply(row, decision, moment)
    await session.execute(
        delete(FindingRow).where(FindingRow.repository == repository, FindingRow.digest == digest)
    )
    for finding in decision.findings:
        session.add(FindingRow(repository=repository, digest=digest, **finding.__dict__))
    if old != new:
        _event(
            session,
            repository,
            digest,
            lifecycle.event_name(new),
            old,
            new,
            "gatekeeper",
            _why(decision),
        )
    await session.flush()
    return old, new


_CHUNK = 500
"""Ids per ``IN (...)`` clause: well under every backend's bound-parameter limit."""


async def _delete_findings(
    session: AsyncSession,
    images: Sequence[tuple[str, str]],
    verifier: str,
    rules: frozenset[str] | None,
) -> None:
    """Delete one verifier's findings of ``images`` (only those of ``rules`` if given); the rows
    are matched inside the database, never read out."""
    # Inherited rows (``origin``) are not the verifier's own: they change on a verification.
    where = [FindingRow.verifier == verifier, FindingRow.origin.is_(None)]
    where.append(images_clause(FindingRow.repository, FindingRow.digest, images))
    if rules is None:
        await session.execute(delete(FindingRow).where(*where))
        return
    ordered = sorted(rules)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        await session.execute(delete(FindingRow).where(*where, FindingRow.rule_id.in_(chunk)))


def _placeholder(paramstyle: str, position: int) -> str | None:
    """The driver's bind marker for the ``position``-th (0-based) parameter, if we know it."""
    return {"qmark": "?", "format": "%s", "numeric_dollar": f"${position + 1}"}.get(paramstyle)


async def _insert_text_rows(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]]
) -> None:
    """Insert many rows of text columns through the driver's own ``executemany``: hundreds of
    thousands of findings after a large advisory import, where building SQLAlchemy's
    parameters row by row would cost more than SQLite's insert itself. Values are bound, never
    formatted into the statement; column names come from our own table."""
    names = list(rows[0])
    style = session.get_bind().dialect.paramstyle
    marks = [_placeholder(style, n) for n in range(len(names))]
    if None in marks:
        await session.execute(insert(table), rows)  # a driver we do not know: the portable way
        return
    columns = ", ".join(table.c[n].name for n in names)
    statement = f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join(map(str, marks))})"
    connection = await session.connection()
    await connection.exec_driver_sql(statement, [tuple(r[n] for n in names) for r in rows])


def _why(decision: DecisionRecord) -> str:
    why = "; ".join(decision.reasons) or "all checks passed"
    return f"{decision.trigger}: {why}" if decision.trigger else why


def _apply(row: Verdict, decision: DecisionRecord, moment: datetime) -> State:
    """Write ``decision`` onto ``row`` and return the state it leaves (``lifecycle.settle``:
    hold > release > verdict)."""
    released = lifecycle.release_active(row.state, utc(row.release_expires), moment)
    held = row.held_by is not None and row.state == State.QUARANTINED
    new = lifecycle.settle(row.state, decision.state, held=held or decision.held, released=released)
    row.state = new
    row.reasons = list(decision.reasons)
    if held and row.held_by is not None:
        row.reasons = [lifecycle.hold_reason(row.held_by), *decision.reasons][:50]
    row.policy = decision.policy
    row.policy_version = decision.policy_version
    row.data_versions = decision.data_versions
    row.outcomes = list(decision.outcomes)
    row.trigger = decision.trigger
    row.decided_at = moment
    row.updated_at = moment
    if new != State.RELEASED:
        row.released_by = row.release_reason = None
        row.release_expires = None
    return new


async def apply_reevaluations(
    session: AsyncSession, items: Sequence[Reevaluation], locked: Locked | None = None
) -> list[Applied]:
    """Store many re-derived decisions at once (one query per table, not per image), with the
    same release and hold rules as :func:`record_decision`. Images without a verdict any more
    are left out; the caller's transaction commits."""
    if not items:
        return []
    moment = utcnow()
    rows: dict[tuple[str, str], Verdict] = dict(locked.rows) if locked else {}
    missing = [(i.repository, i.digest) for i in items if (i.repository, i.digest) not in rows]
    if missing:
        found = await session.scalars(
            select(Verdict)
            .where(images_clause(Verdict.repository, Verdict.digest, missing))
            .with_for_update()
        )
        rows.update(((r.repository, r.digest), r) for r in found.all())
    applied: list[Applied] = []
    events: list[dict[str, Any]] = []
    replaced: dict[tuple[str, frozenset[str] | None], list[tuple[str, str]]] = {}
    new_findings: list[dict[str, Any]] = []
    for item in items:
        row = rows.get((item.repository, item.digest))
        if row is None:
            continue
        old = State(row.state)
        new = _apply(row, item.decision, moment)
        applied.append(Applied(item.repository, item.digest, old, new, row.released_by))
        if old != new:
            events.append(
                {
                    "time": moment,
                    "repository": item.repository,
                    "digest": item.digest,
                    "event": lifecycle.event_name(new),
                    "old_state": old,
                    "new_state": new,
                    "actor": "gatekeeper",
                    "reason": _why(item.decision),
                }
            )
        if item.replaces is not None:
            group = replaced.setdefault((item.replaces, item.rules), [])
            group.append((item.repository, item.digest))
        new_findings += (
            {"repository": item.repository, "digest": item.digest, **f.__dict__}
            for f in item.decision.findings
        )
    await session.flush()
    for (verifier, rules), images in replaced.items():
        await _delete_findings(session, images, verifier, rules)
    if new_findings:
        await _insert_text_rows(session, table(FindingRow), new_findings)
    if events:
        await session.execute(_ADD_EVENT, events)
    return applied


async def release(
    session: AsyncSession,
    repository: str,
    digest: str,
    actor: str,
    reason: str,
    expires: datetime | None,
) -> tuple[State, State]:
    row = await session.get(Verdict, (repository, digest), with_for_update=True)
    if row is None:
        raise LookupError(f"no verdict for {repository}@{digest}")
    old = State(row.state)
    moment = utcnow()
    row.state, row.released_by, row.release_reason = State.RELEASED, actor, reason
    row.release_expires, row.updated_at = expires, moment
    row.held_by = None
    _event(session, repository, digest, "released", old, State.RELEASED, actor, reason)
    await session.flush()
    return old, State.RELEASED


async def requarantine(
    session: AsyncSession, repository: str, digest: str, actor: str, reason: str
) -> tuple[State, State]:
    row = await session.get(Verdict, (repository, digest), with_for_update=True)
    if row is None:
        raise LookupError(f"no verdict for {repository}@{digest}")
    old = State(row.state)
    row.state, row.updated_at = State.QUARANTINED, utcnow()
    row.held_by = actor
    row.reasons = [f"re-quarantined by {actor}: {reason}", *(row.reasons or [])][:50]
    row.released_by = row.release_reason = None
    row.release_expires = None
    _event(session, repository, digest, "requarantined", old, State.QUARANTINED, actor, reason)
    await session.flush()
    return old, State.QUARANTINED


async def hold_inherited(
    session: AsyncSession, keys: Sequence[tuple[str, str]], actor: str, reason: str
) -> list[tuple[str, str, State]]:
    """Quarantine at once the pullable verdicts of manifests that hold content an admin just
    held (their next verification records why, as a finding); returns (repository, digest, old
    state) of those changed. Not an own hold (``held_by``): releasing the held image lifts it."""
    if not keys:
        return []
    moment = utcnow()
    rows = (
        await session.scalars(
            select(Verdict)
            .where(images_clause(Verdict.repository, Verdict.digest, keys))
            .where(pullable_clause(moment))
            .with_for_update()
        )
    ).all()
    changed = []
    for row in rows:
        old = State(row.state)
        row.state, row.updated_at = State.QUARANTINED, moment
        row.reasons = [reason, *(row.reasons or [])][:50]
        row.released_by = row.release_reason = None
        row.release_expires = None
        _event(
            session,
            row.repository,
            row.digest,
            "requarantined",
            old,
            State.QUARANTINED,
            actor,
            reason,
        )
        changed.append((row.repository, row.digest, old))
    await session.flush()
    return changed


async def any_release_expired(session: AsyncSession) -> bool:
    """Whether :func:`expire_releases` has anything to do: a read, so the sweep that runs
    every second takes SQLite's one write turn only when a release has run out (pulls do not
    wait for the sweep: ``effective_state`` already denies an expired release)."""
    found = await session.scalar(
        select(Verdict.digest)
        .where(Verdict.state == State.RELEASED, Verdict.release_expires <= utcnow())
        .limit(1)
    )
    return found is not None


async def expire_releases(session: AsyncSession) -> list[tuple[str, str]]:
    """Turn releases past their expiry back into quarantine; returns the images changed."""
    moment = utcnow()
    rows = (
        await session.scalars(
            select(Verdict)
            .where(Verdict.state == State.RELEASED, Verdict.release_expires <= moment)
            .with_for_update()
        )
    ).all()
    changed = []
    for row in rows:
        row.state, row.updated_at = State.QUARANTINED, moment
        row.reasons = [f"release by {row.released_by} expired", *(row.reasons or [])][:50]
        _event(
            session,
            row.repository,
            row.digest,
            "release-expired",
            State.RELEASED,
            State.QUARANTINED,
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
    return [_record(r) for r in rows]


async def finding_ids(session: AsyncSession, repository: str, digest: str) -> set[str]:
    """``verifier:rule_id`` of each finding the verdict has (what a new decision's blocking
    findings are compared with): two columns, not the findings."""
    rows = await session.execute(
        select(FindingRow.verifier, FindingRow.rule_id).where(
            FindingRow.repository == repository, FindingRow.digest == digest
        )
    )
    return {f"{verifier}:{rule_id}" for verifier, rule_id in rows.all()}


def _record(r: FindingRow) -> FindingRecord:
    return FindingRecord(
        r.verifier, r.rule_id, r.severity, r.title, r.location, r.evidence, r.fix, r.blob, r.origin
    )


async def list_verdicts(
    session: AsyncSession,
    state: str | None = None,
    repository: str | None = None,
    limit: int = 100,
    *,
    patterns: Sequence[str] | None = None,
) -> list[VerdictView]:
    """The most recently changed verdicts; with ``patterns``, only of repositories they match
    (a scoped reader's listing: ``limit`` counts matching verdicts)."""
    query = select(Verdict)
    if state is not None:
        query = query.where(Verdict.state == state)
    if repository is not None:
        query = query.where(Verdict.repository == repository)
    if patterns is not None and not globs.everything(patterns):
        query = query.where(globs.prefilter(Verdict.repository, patterns))
    else:
        patterns = None
    order = (Verdict.updated_at.desc(), Verdict.repository.desc(), Verdict.digest.desc())
    found: list[VerdictView] = []
    while True:
        rows = (await session.scalars(query.order_by(*order).limit(limit))).all()
        found += [
            _view(r) for r in rows if patterns is None or globs.matches(r.repository, patterns)
        ]
        if len(rows) < limit or len(found) >= limit:
            return found[:limit]
        last = rows[-1]  # the filter dropped some: read on past the last row seen
        key = tuple_(Verdict.updated_at, Verdict.repository, Verdict.digest)
        query = query.where(key < tuple_(last.updated_at, last.repository, last.digest))


def pullable_clause(moment: datetime):  # type: ignore[no-untyped-def]
    """SQL for "the verdict is pullable at ``moment``" (``lifecycle.PULLABLE``, expiry)."""
    return or_(
        Verdict.state == State.PASSED,
        and_(
            Verdict.state == State.RELEASED,
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
            pullable_clause(moment),
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
            select(Verdict).where(Verdict.digest == digest, Verdict.state == State.QUARANTINED)
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
    session: AsyncSession, keys: Sequence[tuple[str, str]], *, skip_verifier: str | None = None
) -> dict[tuple[str, str], list[FindingRecord]]:
    """The stored findings of several images in one query, keyed by (repository, digest);
    without those of ``skip_verifier`` if given."""
    found: dict[tuple[str, str], list[FindingRecord]] = {key: [] for key in keys}
    if not keys:
        return found
    # Plain rows, not ORM objects: re-evaluation reads tens of thousands of them per batch.
    columns = table(FindingRow).c
    rows = await session.execute(
        select(
            columns.repository,
            columns.digest,
            columns.verifier,
            columns.rule_id,
            columns.severity,
            columns.title,
            columns.location,
            columns.evidence,
            columns.fix,
            columns.blob,
            columns.origin,
        )
        .where(images_clause(columns.repository, columns.digest, keys))
        .where(columns.verifier != skip_verifier if skip_verifier else true())
        .order_by(columns.id)
    )
    for repository, digest, *fields in rows.all():
        found[(repository, digest)].append(FindingRecord(*fields))
    return found


async def rule_ids_of(
    session: AsyncSession,
    keys: Sequence[tuple[str, str]],
    verifier: str,
    among: frozenset[str] | None = None,
) -> dict[tuple[str, str], set[str]]:
    """The distinct rule ids of one verifier's stored findings for several images (only those
    in ``among`` if given: the database filters, so few rows come back)."""
    found: dict[tuple[str, str], set[str]] = {key: set() for key in keys}
    if not keys or among == frozenset():
        return found
    columns = table(FindingRow).c
    query = (
        select(columns.repository, columns.digest, columns.rule_id)
        .where(columns.verifier == verifier)
        .where(images_clause(columns.repository, columns.digest, keys))
        .distinct()
    )
    ordered = sorted(among) if among is not None else None
    chunks = (
        [query]
        if ordered is None
        else [
            query.where(columns.rule_id.in_(ordered[n : n + _CHUNK]))
            for n in range(0, len(ordered), _CHUNK)
        ]
    )
    for chunk in chunks:
        for repository, digest, rule_id in (await session.execute(chunk)).all():
            found[(repository, digest)].add(rule_id)
    return found


async def views_of(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], VerdictView]:
    """The verdicts of several images in one query, keyed by (repository, digest)."""
    return (await lock(session, keys, for_update=False)).views


@dataclass
class Locked:
    """Verdicts read for a read-modify-write in one transaction (:func:`lock`), handed back to
    :func:`apply_reevaluations` so they are not read twice."""

    views: dict[tuple[str, str], VerdictView]
    rows: dict[tuple[str, str], Verdict]


async def lock(
    session: AsyncSession, keys: Sequence[tuple[str, str]], *, for_update: bool = True
) -> Locked:
    """The verdicts of several images in one query, locked (``FOR UPDATE``) for this
    transaction's writes."""
    if not keys:
        return Locked({}, {})
    query = select(Verdict).where(images_clause(Verdict.repository, Verdict.digest, keys))
    found = (await session.scalars(query.with_for_update() if for_update else query)).all()
    rows = {(r.repository, r.digest): r for r in found}
    return Locked({key: _view(row) for key, row in rows.items()}, rows)
