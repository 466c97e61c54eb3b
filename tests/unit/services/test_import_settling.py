"""An import whose importer died after committing, before re-evaluating, is made good later."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.rescan import SETTLE_GRACE, reevaluate_import, settle_unfinished
from storage.advisories import DbAdvisoryStore
from storage.timeutil import now
from tests.support.reevaluation import (
    DIGEST,
    POLICY,
    Recorder,
    imported,
    inventory,
    osv,
    seed,
    state_of,
)


async def test_an_unsettled_import_is_reevaluated_once_after_the_grace(db: Any) -> None:
    await seed(db, DIGEST, inventory(("demo-pkg", "1.0")))
    # The importer commits and dies: no re-evaluation ran.
    result = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))
    assert (await state_of(db)).state == "passed"
    events = Recorder()
    # Within the grace period the importer may still be at work: leave it alone.
    assert await settle_unfinished(db, policies=[POLICY], publish=events) == 0
    later = now() + SETTLE_GRACE + timedelta(seconds=1)
    assert await settle_unfinished(db, policies=[POLICY], publish=events, moment=later) == 1
    verdict = await state_of(db)
    assert verdict.state == "quarantined" and "DEMO-1" in "; ".join(verdict.reasons)
    assert verdict.trigger == f"advisory-import (data version {result.data_version})"
    assert [c.event for c in events.seen] == ["quarantined"]
    # Settled: never done twice.
    assert await settle_unfinished(db, policies=[POLICY], publish=events, moment=later) == 0


async def test_a_finished_import_is_settled(db: Any) -> None:
    await seed(db, DIGEST, inventory(("demo-pkg", "1.0")))
    result = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))
    await reevaluate_import(db, result, policies=[POLICY])
    unchanged = await imported(db, osv("DEMO-1", "demo-pkg", "1.5"))  # nothing new
    await reevaluate_import(db, unchanged, policies=[POLICY])
    later = now() + SETTLE_GRACE + timedelta(seconds=1)
    assert await DbAdvisoryStore(db).unsettled(later) == []
