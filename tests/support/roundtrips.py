"""Count the round trips a PostgreSQL engine makes, at asyncpg's protocol.

Every message exchange with the server goes through the connection's protocol object: simple
queries (``BEGIN``, ``COMMIT``, ``ROLLBACK``), a statement's prepare, its bind and execute.
Counting calls there counts what a request costs in waits for the database, whatever layer
(SQLAlchemy's pool ping, its lazy ``BEGIN``, the ORM) sent them; a statement SQLAlchemy's
per-connection cache already prepared costs one, a new one two.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import weakref
from collections.abc import Iterator
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy import event
from sqlalchemy.pool import Pool

ROUND_TRIPS = frozenset(
    {"query", "prepare", "bind_execute", "bind_execute_many", "bind", "execute", "close_statement"}
)
"""The protocol's methods that send a message and wait for the server's answer."""


COUNTED: contextvars.ContextVar[bool] = contextvars.ContextVar("round_trips_counted", default=False)
"""Set while a request counts (:func:`middleware`); tasks and writer-thread transactions
started for it inherit it (``run_coroutine_threadsafe`` copies the caller's context), the
app's background tasks (the access log's batches, heartbeats, the scheduler) do not."""


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware of an app whose requests are counted."""
    token = COUNTED.set(True)
    try:
        return await handler(request)
    finally:
        COUNTED.reset(token)


class RoundTrips:
    """Round trips made for a request (see :data:`COUNTED`) on every PostgreSQL connection
    any engine's pool hands out while :meth:`counting`, by kind (the protocol method's
    name), and the text of each simple query (``BEGIN``, ``COMMIT``, ``ROLLBACK``)."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self.queries: list[str] = []
        self._wrapped: weakref.WeakSet[Any] = weakref.WeakSet()

    @contextlib.contextmanager
    def counting(self) -> Iterator[RoundTrips]:
        event.listen(Pool, "checkout", self._wrap)
        try:
            yield self
        finally:
            event.remove(Pool, "checkout", self._wrap)

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        self.calls.clear()
        self.queries.clear()

    def _wrap(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        connection = getattr(dbapi_connection, "_connection", None)  # asyncpg's
        if not isinstance(connection, asyncpg.Connection) or connection in self._wrapped:
            return
        self._wrapped.add(connection)
        connection._protocol = _Counting(connection._protocol, self)


class _Counting:
    """Stands in for one asyncpg protocol, counting the calls that are round trips."""

    def __init__(self, protocol: Any, counts: RoundTrips) -> None:
        self._protocol = protocol
        self._counts = counts

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._protocol, name)
        if name not in ROUND_TRIPS:
            return attribute
        counts = self._counts

        def counted(*args: Any, **kwargs: Any) -> Any:
            if COUNTED.get():
                counts.calls[name] += 1
                if name == "query" and args:
                    counts.queries.append(str(args[0]))
            return attribute(*args, **kwargs)

        return counted
