"""How stored waivers join the settings file's policies (``services.policybook``): only where
their scope applies, so a policy's version changes exactly there, and the policy then treats
them like the settings file's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from config.policy import Policy, Waiver
from services.policybook import PolicyBook, load_book
from storage import waivers
from storage.waivers import Status, StoredWaiver
from verifiers.base import Finding, Severity
from verifiers.lifecycle import State
from verifiers.pipeline import Outcome
from verifiers.policy import decide

NOW = datetime(2030, 1, 1, tzinfo=UTC)
TEAM = Policy(
    name="team",
    repositories=["team/*"],
    require=["scan"],
    waivers=[Waiver(finding="CVE-OLD", reason="settings", author="sec")],
)
OTHER = Policy(name="other", repositories=["*"], require=["scan"])


def stored(n: int, finding: str, scope: str, **extra: Any) -> StoredWaiver:
    return StoredWaiver(n, finding, scope, "not reachable", "tina", NOW, None, **extra)


def test_a_stored_waiver_joins_the_policy_only_where_its_scope_matches() -> None:
    book = PolicyBook([TEAM, OTHER], [stored(1, "CVE-1", "team/app")])
    app, lib, elsewhere = book.match("team/app"), book.match("team/lib"), book.match("x/app")
    assert [w.finding for w in app.waivers] == ["CVE-OLD", "CVE-1"]
    assert app.waivers[1].repositories == ["team/app"] and app.waivers[1].author == "tina"
    assert app.name == "team" and app.version != TEAM.version
    assert lib is TEAM and elsewhere is OTHER  # untouched: the very same object and version


def test_the_version_is_stable_for_the_same_waivers_and_changes_with_them() -> None:
    one = PolicyBook([TEAM], [stored(1, "CVE-1", "team/*")])
    again = PolicyBook([TEAM], [stored(1, "CVE-1", "team/*")])
    two = PolicyBook([TEAM], [stored(1, "CVE-1", "team/*"), stored(2, "CVE-2", "team/*")])
    assert one.match("team/a").version == again.match("team/a").version
    assert two.match("team/a").version != one.match("team/a").version
    assert one.key == again.key != two.key


def test_a_deny_all_policy_takes_no_waiver() -> None:
    book = PolicyBook([TEAM], [stored(1, "CVE-1", "*")])
    unmatched = book.match("nowhere/app")
    assert unmatched.deny_all and unmatched.waivers == []


def test_a_stored_waiver_that_fails_validation_is_skipped() -> None:
    bad = StoredWaiver(2, "CVE-2", "team/*", "evil\x1b[2J", "tina", NOW, None)
    book = PolicyBook([TEAM], [stored(1, "CVE-1", "team/*"), bad])
    assert [w.finding for w in book.match("team/a").waivers] == ["CVE-OLD", "CVE-1"]


def test_the_policy_lets_a_stored_waiver_through_like_its_own() -> None:
    finding = Finding("scan", "CVE-1", Severity.CRITICAL, "bad")
    outcome = Outcome("scan", "1", "ok", (finding,))
    before = decide(TEAM, "team/app", [outcome], NOW)
    waived = PolicyBook([TEAM], [stored(1, "scan:CVE-1", "team/*")]).match("team/app")
    after = decide(waived, "team/app", [outcome], NOW)
    assert before.state == State.QUARANTINED
    assert after.state == State.PASSED and after.waived == (finding,)
    assert after.policy_version == waived.version


async def test_only_active_waivers_are_loaded(db: Any) -> None:
    soon = datetime.now(UTC) + timedelta(days=1)
    async with db() as session, session.begin():
        kept = await waivers.add(
            session, finding="CVE-1", scope="team/*", reason="r", author="a", expires_at=soon
        )
        forever = await waivers.add(
            session, finding="CVE-2", scope="team/*", reason="r", author="a", expires_at=None
        )
        gone = await waivers.add(
            session, finding="CVE-3", scope="team/*", reason="r", author="a", expires_at=None
        )
        assert await waivers.withdraw(session, gone.id, "b", "done") is not None
        assert await waivers.withdraw(session, gone.id, "c", "again") is None
    book = await load_book(db, [TEAM])
    assert [w.id for w in book.stored] == [kept.id, forever.id]
    later = await load_book(db, [TEAM], moment=soon + timedelta(seconds=1))
    assert [w.id for w in later.stored] == [forever.id]
    async with db() as session:
        everything = await waivers.listed(session, include_inactive=True)
    statuses = {w.id: w.status(soon + timedelta(seconds=1)) for w in everything}
    assert statuses == {
        kept.id: Status.EXPIRED,
        forever.id: Status.ACTIVE,
        gone.id: Status.WITHDRAWN,
    }
    withdrawn = next(w for w in everything if w.id == gone.id)
    assert (withdrawn.withdrawn_by, withdrawn.withdraw_reason) == ("b", "done")
