"""Keeping the stored origin of images current with the settings' ``[[remotes]]``.

Each verdict stores its image's origin (``config.remotes``), so every decision, the
re-evaluations included, picks the policy from the verdict alone. An image pushed through the
gatekeeper comes from here for good; for any other image the origin is what the settings say
of its repository, and the settings can change between two starts (a remote added, its
``repositories`` widened). At start-up, before verdicts decided under another policy are
decided again, every such image is given the origin the settings give its repository now, so a
changed ``[[remotes]]`` is a policy change like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from config.remotes import Remote, origin_of
from storage import verdicts

log = logging.getLogger("gatekeeper.origins")


async def reconcile(db: async_sessionmaker[Any], remotes: Sequence[Remote]) -> int:
    """Give every verdict not pushed here the origin the settings give its repository;
    how many repositories changed."""
    async with db() as session:
        stored = await verdicts.origins_in_use(session)
    changes: dict[str, str] = {}
    for repository, origin in stored:
        wanted = origin_of(remotes, repository, pushed=False)
        if wanted != origin:
            changes[repository] = wanted
    for repository, origin in sorted(changes.items()):
        async with db() as session, session.begin():
            count = await verdicts.set_origins(session, repository, origin)
        log.info("%d images of %s now come from %s (settings: remotes)", count, repository, origin)
    return len(changes)
