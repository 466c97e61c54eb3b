"""The policies in force in this process, for callers that cannot wait for the database (the
pull gate, a verification about to decide): a snapshot (``services.policybook.PolicyBook``) of the
settings file's policies and the database's active waivers.

The snapshot is taken at start-up, again at once after a waiver is made or withdrawn here, and
every :data:`REFRESH_SECONDS` otherwise. When a refresh finds the set of active waivers changed
(another replica's waiver, or one that expired), the verdicts it affects are decided again from
their stored findings, exactly as after a change made here: every replica converges on the
same verdicts within a few seconds, and an expired waiver quarantines again what it let out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from config.policy import Policy
from config.remotes import LOCAL
from services.policybook import PolicyBook, load_book
from services.reevaluate import Publish, Report, after_policy_change
from storage.db import DATABASE_ERRORS

log = logging.getLogger("gatekeeper.policy")

REFRESH_SECONDS = 2.0


class LivePolicies:
    """The current :class:`PolicyBook`, kept current (see the module docstring)."""

    def __init__(
        self,
        policies: Sequence[Policy],
        db: async_sessionmaker[Any],
        publish: Publish | None = None,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.settings_policies = list(policies)
        self.book = PolicyBook(self.settings_policies)
        self._db = db
        self._publish = publish
        self._refresh_seconds = refresh_seconds
        self._applying = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def match(self, repository: str, origin: str = LOCAL) -> Policy:
        return self.book.match(repository, origin)

    async def refresh(self) -> bool:
        """Take a new snapshot; True when the active waivers changed."""
        book = await load_book(self._db, self.settings_policies)
        changed = book.key != self.book.key
        self.book = book
        return changed

    async def apply(self, cause: str | None = None) -> Report:
        """Take a new snapshot and decide again, from stored findings, every verdict decided
        under another version of its policy (one run at a time in this process)."""
        async with self._applying:
            await self.refresh()
            return await after_policy_change(
                self._db, self.settings_policies, publish=self._publish, cause=cause
            )

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="policy-refresh")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                if await self.refresh():
                    report = await self.apply("waivers changed")
                    log.info(
                        "the active waivers changed: %d verdicts decided again (%d changed)",
                        report.examined,
                        report.changed,
                    )
            except DATABASE_ERRORS as exc:
                log.error("waiver refresh failed (will retry): %s", exc)
            except Exception:  # the watch must outlive any one failure
                log.exception("waiver refresh failed (will retry)")
