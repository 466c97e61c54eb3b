"""Re-verification of the images an advisory import may affect, found through the inventory.

Only images whose stored inventory holds a package named by an added or updated advisory are
queued (``image_packages`` is the index from package to images). Jobs go to the persisted
queue, so the running gatekeeper's workers pick them up even when the import ran in another
process; the inventory verifier's per-layer results are cached by layer digest, so the
re-verification reads no layer again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from storage import jobs, verdicts
from storage.advisories import DbAdvisoryStore, ImportResult

REASON = "advisory-import"


async def queue_affected(db: async_sessionmaker[Any], result: ImportResult) -> int:
    """Queue a verification of every image holding a package ``result`` changed; how many."""
    if not result.packages:
        return 0
    images = await DbAdvisoryStore(db).images_with(result.packages)
    reason = f"{REASON} (advisory data version {result.data_version})"
    async with db() as session, session.begin():
        for repository, digest in sorted(images):
            await verdicts.ensure_pending(session, repository, digest, "gatekeeper", reason)
            await jobs.enqueue(session, "verify", repository, digest, reason)
    return len(images)
