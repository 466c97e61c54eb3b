"""What follows an advisory import: re-evaluate the images it may affect, found through the
inventory (``image_packages`` is the index from package to images).

With the policies at hand the affected images are decided again from stored data
(``services.reevaluate``): no layer, no manifest, no upstream request. Only images with nothing
stored to decide from (never inventoried, still pending) are queued for a full verification on
the persisted queue, which the running gatekeeper's workers pick up even when the import ran in
another process. Without policies (a caller that has none) every affected image is queued, as
before re-evaluation existed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from config.policy import Policy
from services.reevaluate import Publish, Report, after_advisory_import, queue_verifications
from storage import jobs
from storage.advisories import DbAdvisoryStore, ImportResult
from storage.timeutil import now as utcnow

log = logging.getLogger("gatekeeper.rescan")

REASON = "advisory-import"


async def queue_affected(
    db: async_sessionmaker[Any],
    result: ImportResult,
    *,
    policies: Sequence[Policy] | None = None,
    publish: Publish | None = None,
) -> int:
    """Re-evaluate (given ``policies``) or queue every image holding a package ``result``
    changed; returns how many images were re-evaluated or queued."""
    report = await reevaluate_import(db, result, policies=policies, publish=publish)
    return report.examined + len(report.needs_verification)


async def reevaluate_import(
    db: async_sessionmaker[Any],
    result: ImportResult,
    *,
    policies: Sequence[Policy] | None,
    publish: Publish | None = None,
) -> Report:
    """:func:`queue_affected` with the full report. The import is marked settled only at the
    end: if this process dies first, :func:`settle_unfinished` does it again later."""
    store = DbAdvisoryStore(db)
    if not result.new_version:
        return Report()  # nothing changed: no version of its own to settle
    if not result.packages:
        await store.settled(result.data_version)
        return Report()
    images = sorted(await DbAdvisoryStore(db).images_with(result.packages))
    if policies is None:
        report = Report(needs_verification=images)
    else:
        report = await after_advisory_import(
            db,
            policies,
            images,
            result.data_version,
            changed=result.advisories or None,
            publish=publish,
        )
    await queue(db, report.needs_verification, f"{REASON} (data version {result.data_version})")
    await store.settled(result.data_version)
    return report


SETTLE_GRACE = timedelta(minutes=10)
"""How long an import may go unsettled before another process re-evaluates for it: longer than
any re-evaluation takes, so a live importer is never doubled (its webhooks would be too)."""


async def settle_unfinished(
    db: async_sessionmaker[Any],
    *,
    policies: Sequence[Policy] | None,
    publish: Publish | None = None,
    moment: datetime | None = None,
) -> int:
    """Re-evaluate for every import whose importer died before doing so (the import committed,
    its re-evaluation did not); how many imports were settled. Run by the cluster-wide
    scheduler, so once per cluster."""
    moment = moment or utcnow()
    owed = await DbAdvisoryStore(db).unsettled(moment - SETTLE_GRACE)
    for result in owed:
        log.warning("advisory import %s was never re-evaluated; doing it now", result.data_version)
        await reevaluate_import(db, result, policies=policies, publish=publish)
    return len(owed)


async def queue(
    db: async_sessionmaker[Any], images: Sequence[tuple[str, str]], reason: str
) -> None:
    """A full verification of each image (pending if it has no verdict yet)."""
    if not images:
        return
    async with db() as session, session.begin():
        await queue_verifications(session, images, reason, jobs.ADVISORY_IMPORT)
