"""Concurrent identical reads share one: the pull gate's verdict and blob decisions.

A serving process caches a pullable verdict and an allowed blob for a second, and drops every
cached decision when any verdict changes (``services.verification``). Under the load test
that happens a few times a second (each pushed image's verdict), and the hundred pulls in
flight in the process then all missed at once: each read the same verdict, or judged the
same blob with three statements, before the first had answered and refilled the cache.
Here the first miss reads, and the others that arrive while it runs wait for its answer.

A caller never gets an answer older than its own arrival would allow: :meth:`forget` (called
wherever the caches are dropped) lets go of the reads under way, so a caller arriving after a
change starts a read of its own; the callers already waiting get the answer of a read that
began before the change, as if they had been served a moment earlier.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """At most one computation per key under way; the callers of a key share its outcome."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        """``compute()``'s outcome (its result or its error), shared with every caller of
        ``key`` while it runs. A caller that is cancelled does not cancel it for the others."""
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(compute())
            self._running[key] = task
            task.add_done_callback(lambda done: self._done(key, done))
        return await asyncio.shield(task)

    def forget(self) -> None:
        """Later callers start afresh (see the module docstring); running ones finish."""
        self._running.clear()

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: every caller may have gone
