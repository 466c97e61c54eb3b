"""Recording verdict changes as deliveries, and sending them with retries.

The bus listener only inserts rows (one short transaction per event); the dispatcher task
claims due rows, sends them concurrently, and stores every attempt. Should the database refuse
the insert, the rows wait in memory and are retried by the dispatcher, so no event is dropped
while the process lives, and a clean stop logs any that could never be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from config.settings import WebhookSettings
from proxy.webhooks.cloudevents import to_cloud_event
from proxy.webhooks.sender import Hook, send_once
from services.events import VerdictChange
from storage import webhooks as store
from storage.db import DATABASE_ERRORS
from storage.timeutil import now as utcnow

log = logging.getLogger("gatekeeper.webhooks")

MAX_RETRY_DELAY = 3600.0
LEASE_MARGIN = 30.0
"""A claim outlives the attempt's timeout by this much before another process may retry."""


def retry_delay(base: float, attempt: int) -> float:
    """Seconds between attempt ``attempt`` (1-based) and the next one."""
    return float(min(base * 2 ** (attempt - 1), MAX_RETRY_DELAY))


class WebhookDispatcher:
    """Owns the dispatcher task of this process; replicas sharing a database share the rows."""

    def __init__(
        self,
        webhooks: Sequence[WebhookSettings],
        db: async_sessionmaker[Any],
        client: httpx.AsyncClient,
        *,
        source: str,
        poll_seconds: float = 1.0,
        batch_size: int = 16,
    ) -> None:
        self._hooks = {hook.key: hook for hook in map(Hook.of, webhooks)}
        self._db = db
        self._client = client
        self._source = source
        self._poll = poll_seconds
        self._batch = batch_size
        self._unwritten: deque[list[store.NewDelivery]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    # -- recording ------------------------------------------------------------------------

    async def listener(self, change: VerdictChange) -> None:
        """The bus listener: record one delivery per interested webhook, nothing else."""
        event = to_cloud_event(change, self._source)
        if event is None:
            return
        rows = [
            store.NewDelivery(hook.key, event.id, event.type, event.subject, event.body)
            for hook in self._hooks.values()
            if event.type in hook.settings.events
        ]
        if not rows:
            return
        if not await self._insert(rows):
            self._unwritten.append(rows)
        self._wake.set()

    async def _insert(self, rows: list[store.NewDelivery]) -> bool:
        try:
            async with self._db() as session, session.begin():
                await store.insert_deliveries(session, rows)
        except IntegrityError:  # a retried insert that had landed after all
            return True
        except DATABASE_ERRORS as exc:
            log.error(
                "cannot record %s for %s (kept for retry): %s",
                rows[0].event_type,
                rows[0].subject,
                exc,
            )
            return False
        return True

    async def _flush_unwritten(self) -> None:
        while self._unwritten and await self._insert(self._unwritten[0]):
            self._unwritten.popleft()

    # -- the task -------------------------------------------------------------------------

    def start(self) -> None:
        if not self._hooks:
            log.info("webhooks: none configured, verdict changes are not sent anywhere")
            return
        log.info("webhooks: sending to %s", ", ".join(h.label for h in self._hooks.values()))
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def close(self, grace: float = 10.0) -> None:
        """Let attempts in flight finish (up to ``grace`` seconds), then stop. Pending
        deliveries stay in the database for the next start."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, grace)
            except TimeoutError:
                log.warning("webhooks: attempts still in flight at shutdown are retried later")
            self._task = None
        await self._flush_unwritten()
        for rows in self._unwritten:
            log.error(
                "webhooks: %s for %s (event %s) could not be recorded",
                rows[0].event_type,
                rows[0].subject,
                rows[0].event_id,
            )

    async def _run(self) -> None:
        await self._warn_about_orphans()
        while not self._closing:
            self._wake.clear()
            try:
                await self._flush_unwritten()
                if await self.run_once():
                    continue
                delay = await self._idle_time()
            except DATABASE_ERRORS as exc:
                log.error("webhooks: database error, retrying: %s", exc)
                delay = self._poll
            except Exception:
                # A dispatcher that dies silently would leave every delivery pending forever.
                log.exception("webhooks: unexpected error in the dispatcher")
                delay = self._poll
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _idle_time(self) -> float:
        async with self._db() as session:
            due = await store.next_due(session, self._hooks.keys())
        if due is None:
            return self._poll
        return min(max((due - utcnow()).total_seconds(), 0.0), self._poll)

    async def _warn_about_orphans(self) -> None:
        with contextlib.suppress(*DATABASE_ERRORS):
            async with self._db() as session:
                orphans = await store.pending_elsewhere(session, self._hooks.keys())
            if orphans:
                log.warning(
                    "webhooks: %d pending deliveries belong to webhooks no longer "
                    "configured; they are kept but not sent",
                    orphans,
                )

    # -- sending --------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim the due deliveries (one batch) and attempt each; returns how many."""
        if not self._hooks:
            return 0
        lease = max(h.settings.timeout_seconds for h in self._hooks.values()) + LEASE_MARGIN
        async with self._db() as session, session.begin():
            claimed = await store.claim_due(
                session, self._hooks.keys(), timedelta(seconds=lease), self._batch
            )
        outcomes = await asyncio.gather(*map(self._deliver, claimed), return_exceptions=True)
        for delivery, outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                # The row keeps its claim; it is retried once the lease runs out.
                log.error("webhooks: delivery %s: %r", delivery.id, outcome)
        return len(claimed)

    async def _deliver(self, delivery: store.ClaimedDelivery) -> None:
        hook = self._hooks[delivery.webhook]
        cfg = hook.settings
        if delivery.attempt > cfg.max_attempts:
            async with self._db() as session, session.begin():
                await store.give_up(session, delivery, "gave up: the last attempt was cut short")
            log.error(
                "webhooks: delivery %s failed for good: its last attempt was cut short", delivery.id
            )
            return
        result = await send_once(self._client, hook, delivery)
        delay = retry_delay(cfg.retry_base_seconds, delivery.attempt)
        retry = result.error is not None and delivery.attempt < cfg.max_attempts
        retry_at = utcnow() + timedelta(seconds=delay) if retry else None
        async with self._db() as session, session.begin():
            state = await store.record_attempt(session, delivery, result, retry_at)
        what = f"delivery {delivery.id} ({delivery.event_type} {delivery.subject}) to {hook.label}"
        attempt = f"attempt {delivery.attempt}/{cfg.max_attempts}"
        if state is None:
            log.warning("webhooks: %s %s finished after its claim was taken over", what, attempt)
        elif state == "delivered":
            log.info("webhooks: %s delivered (%s, HTTP %s)", what, attempt, result.status)
        elif state == "pending":
            log.warning(
                "webhooks: %s %s failed: %s; retry in %gs", what, attempt, result.error, delay
            )
        else:
            log.error("webhooks: %s failed for good after %s: %s", what, attempt, result.error)
