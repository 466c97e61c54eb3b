"""This process's heartbeat among the replicas (``storage.replicas``).

It beats every ``replicas.heartbeat_seconds``; a replica silent for three beats is gone, and
what it held for clients (upload sessions) stops counting against their owners' caps. A clean
stop says so at once by deleting its row. Missing a beat (the database away) is logged, not
fatal: the next one that lands makes the replica present again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from config.settings import ReplicaSettings
from storage import replicas
from storage.db import DATABASE_ERRORS
from storage.replicas import Holder
from storage.timeutil import now
from storage.writer import transact

log = logging.getLogger("gatekeeper.presence")

SILENT_BEATS = 3
"""Heartbeats a replica may miss before it counts as gone."""


class Presence:
    """Owns the heartbeat task of this replica (its id is the job lease owner's)."""

    def __init__(self, db: async_sessionmaker[Any], replica: str, settings: ReplicaSettings):
        self._db = db
        self._interval = settings.heartbeat_seconds
        self.holder = Holder(replica, timedelta(seconds=settings.heartbeat_seconds * SILENT_BEATS))
        self._started = now()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """The first beat before anything is served (a failure here stops the start), then
        one every interval."""
        await self._beat()
        self._task = asyncio.create_task(self._run(), name="presence")

    async def _beat(self) -> None:
        replica, started = self.holder.replica, self._started
        await transact(self._db, lambda session: replicas.beat(session, replica, started))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._beat()
            except DATABASE_ERRORS as exc:
                log.warning("cannot record this replica's heartbeat: %s", exc)

    async def close(self) -> None:
        """Stop beating and leave: this replica's upload sessions stop counting now."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            replica = self.holder.replica
            await transact(self._db, lambda session: replicas.leave(session, replica))
        except DATABASE_ERRORS as exc:
            log.warning("cannot record that this replica stops (it falls silent): %s", exc)
