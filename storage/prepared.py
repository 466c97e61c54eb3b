"""Statements built once and run many times, for the write transactions every push runs.

Building a statement (``select(...).where(...)`` on ORM entities) and deriving its cache key
cost more CPU than SQLite takes to run it: about 0.5 ms per statement of an upload's
bookkeeping on these machines, most of such a transaction's time inside SQLite's one write turn,
where every other writer of the host waits for it (bench/README.md, "Where the write turn
goes"). A statement built once, its changing values bind parameters, is compiled once per
dialect and found again in the compiled cache by its memoized key: the same transactions
took 40% less CPU. They are written on Core tables, not ORM entities: the ORM's bulk insert
path costs as much again and these statements want none of what it adds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

S = TypeVar("S")

InsertOn = Callable[..., Any]
"""The dialect's ``insert`` (``sqlite.insert`` or ``postgresql.insert``): what spells
``ON CONFLICT`` on it."""


def table(model: type[Any]) -> Table:
    """The Core table of ORM model ``model`` (typed as one)."""
    return cast(Table, model.__table__)


def deleted(result: Any) -> int:
    """Rows a ``DELETE`` removed (``rowcount``; -1, unknown to the driver, counts as none):
    what the batched forgetting of stale rows returns to say whether its batch was full."""
    return max(int(getattr(result, "rowcount", 0) or 0), 0)


def dialect_of(session: AsyncSession) -> str:
    """The session's dialect name (SQLite for a session bound to nothing yet)."""
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def insert_on(session: AsyncSession) -> InsertOn:
    """The ``insert`` of the session's dialect, which spells ``ON CONFLICT``."""
    return postgresql.insert if dialect_of(session) == "postgresql" else sqlite.insert


def upserting(insert_on: InsertOn, target: Any, keys: list[str], **values: Any) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` of every other column in ``values`` into
    ``target`` (a table or model): values, or bind parameters for a statement built once."""
    statement = insert_on(target).values(**values)
    changed = {name: statement.excluded[name] for name in values if name not in keys}
    return statement.on_conflict_do_update(index_elements=keys, set_=changed)


class Prepared(Generic[S]):
    """A statement built on first use per dialect (an upsert is spelled per dialect), then
    reused: ``STATEMENT(session)`` is the one for the session's database."""

    def __init__(self, build: Callable[[InsertOn], S]) -> None:
        self._build = build
        self._built: dict[str, S] = {}

    def __call__(self, session: AsyncSession) -> S:
        name = dialect_of(session)
        built = self._built.get(name)
        if built is None:
            built = self._built[name] = self._build(insert_on(session))
        return built
