"""The database behind each test: SQLite (the default) or PostgreSQL, chosen once per session.

The same suite runs on both backends (``pytest --db=postgresql`` or ``GATEKEEPER_TEST_DB``;
see tests/conftest.py). Every gatekeeper a test starts, and every storage-level test, asks this
module for a *fresh* database, so tests stay as independent as they are with one SQLite file
each: on PostgreSQL that is a new ``CREATE DATABASE`` in one private cluster per session
(``initdb`` + ``pg_ctl`` on a free port, see :mod:`tests.support.postgres`). A test that
wants the schema in place (``migrated``) gets a copy of a database migrated once per pytest
process; a gatekeeper process gets an empty one and migrates it, as in production.

The backend is session state held here rather than a fixture threaded through every call:
helpers such as :func:`tests.support.gatekeeper.make_gatekeeper` are called from fixtures,
tests and other helpers alike, and a gatekeeper that silently stayed on SQLite in a PostgreSQL
run would defeat the point. Outside pytest (bench/) nothing is configured and SQLite is used.

Tests read the database through :meth:`Database.fetch`, one SQL dialect for both backends
(``:name`` parameters, results as dicts), instead of opening the SQLite file themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.support import postgres

Backend = Literal["sqlite", "postgresql"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "postgresql")
T = TypeVar("T")


class QueryError(Exception):
    """A test's query failed (no such table yet, database not reachable...), on either backend."""


@dataclass(frozen=True)
class Database:
    """One test database: the URL the gatekeeper gets, and a way for the test to read it."""

    url: str
    """Async SQLAlchemy URL, as ``GATEKEEPER_DATABASE_URL`` takes it."""
    backend: Backend
    path: Path | None = None
    """The SQLite file; ``None`` on PostgreSQL (tests about the file itself are SQLite-only)."""

    def fetch(self, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one query with ``:name`` parameters; rows as dicts, in the order returned.

        Values come back as each driver gives them: PostgreSQL returns ``datetime`` and
        ``bool`` where SQLite returns text and integers, so read times through
        :func:`as_datetime` (or normalise in the test) when a column's type matters.
        """
        if self.path is not None:
            return _fetch_sqlite(self.path, query, params or {})
        return run_sync(lambda: _fetch_async(self.url, query, params or {}))

    def execute(self, statement: str, params: Mapping[str, Any] | None = None) -> None:
        """Run one statement that changes the database and commit it: what an attacker with
        write access to the database does (tests/e2e/test_audit_chain.py)."""
        if self.path is not None:
            _execute_sqlite(self.path, statement, params or {})
            return
        run_sync(lambda: _execute_async(self.url, statement, params or {}))


def _execute_sqlite(path: Path, query: str, params: Mapping[str, Any]) -> None:
    try:
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(query, dict(params))
    except sqlite3.Error as exc:
        raise QueryError(str(exc)) from exc


async def _execute_async(url: str, query: str, params: Mapping[str, Any]) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(query), dict(params))
    except (SQLAlchemyError, OSError) as exc:
        raise QueryError(str(exc)) from exc
    finally:
        await engine.dispose()


def _fetch_sqlite(path: Path, query: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    try:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(query, dict(params)).fetchall()]
    except sqlite3.Error as exc:
        raise QueryError(str(exc)) from exc


async def _fetch_async(url: str, query: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(query), dict(params))
            return [dict(row._mapping) for row in result] if result.returns_rows else []
    except (SQLAlchemyError, OSError) as exc:
        raise QueryError(str(exc)) from exc
    finally:
        await engine.dispose()


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous test code, even inside an async test
    (its loop is busy running the test, so the coroutine gets a loop in a thread of its own)."""

    async def main() -> T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="test-db-query")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class Databases:
    """Hands out fresh databases on one backend and drops them when told."""

    def __init__(self, backend: Backend, workdir: Path) -> None:
        self.backend = backend
        self._workdir = workdir
        self._cluster: postgres.Postgres | None = None
        self._created: list[str] = []
        self._names = itertools.count(1)
        self._lock = threading.Lock()
        # One database is created ahead, in the background, while the test that will want it
        # is still being set up: CREATE DATABASE copies a template (~0.5 s under load).
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-db-ahead")
        self._spares: dict[bool, Future[str]] = {}
        """One database made ahead of each kind: empty (False) and migrated (True)."""
        self._template_lock = threading.Lock()
        self._templates: dict[Backend, str] = {}
        """The migrated template of each backend: a SQLite file, a PostgreSQL database."""

    @property
    def cluster(self) -> postgres.Postgres:
        """The session's PostgreSQL cluster, started on first use."""
        with self._lock:
            if self._cluster is None:
                self._cluster = postgres.start_postgres(self._workdir / "postgres")
            return self._cluster

    def fresh(self, sqlite_dir: Path, *, migrated: bool = False) -> Database:
        """A new database: empty (no schema: the gatekeeper migrates it as in production), or
        ``migrated`` to the head revision, copied from a template migrated once per session."""
        if self.backend == "sqlite":
            made = sqlite_database(sqlite_dir)
            if migrated:
                assert made.path is not None
                _copy_sqlite(Path(self._template("sqlite")), made.path)
            return made
        return self.fresh_postgres(migrated=migrated)

    def fresh_postgres(self, *, migrated: bool = False) -> Database:
        """A new PostgreSQL database, whatever the session's backend (for the tests that need
        PostgreSQL itself, such as several replicas sharing one database); empty unless
        ``migrated``."""
        cluster = self.cluster
        spare = self._spares.pop(migrated, None)
        name = spare.result() if spare is not None else self._create(migrated)
        self._spares[migrated] = self._ahead.submit(self._create, migrated)
        self._created.append(name)
        return Database(url=cluster.url_for(name), backend="postgresql")

    def _create(self, migrated: bool) -> str:
        name = f"test_{os.getpid()}_{next(self._names)}"
        template = f' TEMPLATE "{self._template("postgresql")}"' if migrated else ""
        self.cluster.admin(f'CREATE DATABASE "{name}"{template}')
        return name

    def _template(self, backend: Backend) -> str:
        """The backend's migrated template, made on first use: migrating took 0.13 s (SQLite)
        to 0.35 s (PostgreSQL) per test that wants a schema, a copy takes a few milliseconds.
        What a migration does to an empty database is tested on empty ones (the migration
        tests, and every gatekeeper process a test starts)."""
        cluster = self.cluster if backend == "postgresql" else None  # takes the lock itself
        with self._template_lock:
            if backend not in self._templates:
                if cluster is None:
                    directory = self._workdir / "template"
                    directory.mkdir(parents=True, exist_ok=True)
                    made = sqlite_database(directory)
                    migrate(made.url)
                    self._templates[backend] = str(made.path)
                else:
                    name = f"template_{os.getpid()}"
                    cluster.admin(f'CREATE DATABASE "{name}"')
                    migrate(cluster.url_for(name))
                    self._templates[backend] = name
            return self._templates[backend]

    def created(self) -> int:
        """How many databases were handed out so far (a mark for :meth:`drop_since`)."""
        return len(self._created)

    def drop_since(self, mark: int) -> None:
        """Drop the databases handed out after ``mark``, closing what still uses them."""
        names, self._created = self._created[mark:], self._created[:mark]
        if self._cluster is None:
            return
        for name in names:
            self._cluster.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        self._ahead.shutdown(wait=True)  # the spares go with the cluster
        if self._cluster is not None:
            self._cluster.stop()
            self._cluster = None


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the head revision, as a gatekeeper's start does (from
    synchronous code or inside an async test alike: :func:`run_sync`)."""
    from storage.db import create_engine, upgrade

    async def run() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    run_sync(run)


def _copy_sqlite(template: Path, path: Path) -> None:
    """A consistent copy of the template (SQLite's backup API: whatever its journal holds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.closing(sqlite3.connect(template)) as source,
        contextlib.closing(sqlite3.connect(path)) as target,
    ):
        source.backup(target)


def sqlite_database(directory: Path) -> Database:
    """The SQLite file a gatekeeper keeps in its working directory."""
    path = directory / "gatekeeper.db"
    return Database(url=f"sqlite+aiosqlite:///{path}", backend="sqlite", path=path)


_session: Databases | None = None


def configure(databases: Databases | None) -> None:
    """Set (or with ``None`` clear) the session's databases; tests/conftest.py does this."""
    global _session
    _session = databases


def session() -> Databases | None:
    return _session


def backend() -> Backend:
    return _session.backend if _session is not None else "sqlite"


def fresh(sqlite_dir: Path, *, migrated: bool = False) -> Database:
    """A fresh database on the session's backend; SQLite in ``sqlite_dir`` outside pytest."""
    if _session is None:
        made = sqlite_database(sqlite_dir)
        if migrated:
            migrate(made.url)
        return made
    return _session.fresh(sqlite_dir, migrated=migrated)


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Drop, on exit, the databases handed out inside (PostgreSQL; SQLite files go with their
    temporary directories)."""
    databases = _session
    mark = databases.created() if databases is not None else 0
    try:
        yield
    finally:
        if databases is not None:
            databases.drop_since(mark)


def as_datetime(value: Any) -> datetime:
    """A time column as a ``datetime``: PostgreSQL's driver returns one, SQLite returns text."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
