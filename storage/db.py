"""Engine creation and schema migrations for both backends.

SQLite is the embedded default (one file, WAL so readers never block the access-log writer);
PostgreSQL (asyncpg) is for several replicas sharing state. The schema is owned by Alembic
migrations, applied at ``gatekeeper serve`` start and by ``gatekeeper db upgrade``.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    AsyncSessionTransaction,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransactionOrigin

from storage.errors import DatabaseUnavailable, StorageError
from storage.write_queue import WriteQueue

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_FILE = re.compile(r"(\d{4})_\w+\.py")
"""``0021_vex.py`` holds revision ``0021``, down from ``0020``: a unit test holds every
migration to it (``tests/unit/storage/test_migration_head.py``)."""


# What "the database failed" looks like to callers: our own error for a database that cannot
# run statements (the engine translates, see ``_translate``), and SQLAlchemy's for the rest
# (a statement refused on its merits). Never a bare ``OSError``: that is a client hanging up.
DATABASE_ERRORS: tuple[type[Exception], ...] = (StorageError, SQLAlchemyError)


def create_engine(url: str) -> AsyncEngine:
    """An async engine with the per-backend settings the gatekeeper relies on."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(url, pool_size=10, max_overflow=10)
        event.listen(engine.sync_engine.pool, "connect", _used)
        event.listen(engine.sync_engine.pool, "checkin", _used)
        event.listen(engine.sync_engine.pool, "checkout", partial(_ping_if_idle, engine))
    event.listen(engine.sync_engine, "do_connect", _connect)
    event.listen(engine.sync_engine, "handle_error", _translate)
    return engine


PING_AFTER_IDLE_SECONDS = 1.0
"""A PostgreSQL connection idle longer than this is pinged before it is used again, so a server
restarted meanwhile costs a reconnection, not a failed statement. SQLAlchemy's
``pool_pre_ping`` pinged every checkout, and asyncpg's ping is three round trips (it wraps
``;`` in a transaction): with a checkout per session, a third of the round trips of a first
pull (12 of 32), each one a wake-up of both ends on a busy machine. A connection used less than
a second ago is taken as alive; if the server did restart within that second, the statement
fails (the request is refused: 503, fail closed) and SQLAlchemy's disconnect handling drops
every older connection of the pool at once."""
_LAST_USED = "gatekeeper_last_used"


def _used(_dbapi_connection: Any, record: Any, *_: Any) -> None:
    record.info[_LAST_USED] = time.monotonic()


def _ping_if_idle(engine: AsyncEngine, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Pool ``checkout``: ping a connection idle for :data:`PING_AFTER_IDLE_SECONDS`; one that
    does not answer is replaced (``DisconnectionError`` makes the pool connect anew)."""
    if time.monotonic() - record.info.get(_LAST_USED, 0.0) < PING_AFTER_IDLE_SECONDS:
        return
    try:
        engine.dialect.do_ping(dbapi_connection)
    except Exception as exc:
        raise DisconnectionError(f"{type(exc).__name__}: {exc}") from exc
    record.info[_LAST_USED] = time.monotonic()


def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    """Open a connection as the dialect would, with the driver's own ``OSError`` (refused,
    unreachable, reset; asyncpg raises it bare, past SQLAlchemy's error handling) or timeout
    translated, as :func:`_translate` does for statements."""
    try:
        return dialect.connect(*cargs, **cparams)
    except (OSError, TimeoutError) as exc:
        raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _translate(context: ExceptionContext) -> BaseException | None:
    """The storage boundary: a driver's failure to reach or keep the database (a refused or
    lost connection, a bare ``OSError`` or timeout from the driver, SQLite locked or full)
    leaves the engine as :class:`DatabaseUnavailable`, with the driver's message and the
    original chained. Statements refused on their merits keep SQLAlchemy's error; a pre-ping
    is left to the pool, which reconnects; cancellation is never touched."""
    original = context.original_exception
    if context.is_pre_ping or not isinstance(original, Exception):
        return None
    if isinstance(original, StorageError):
        return None
    unavailable = (
        context.is_disconnect
        or isinstance(context.sqlalchemy_exception, OperationalError | InterfaceError)
        or (context.sqlalchemy_exception is None and isinstance(original, OSError | TimeoutError))
    )
    if not unavailable:
        return None
    return DatabaseUnavailable(f"{type(original).__name__}: {original}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let our sessions, not the driver, open transactions (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class _SqliteSession(Session):
    """Sessions on SQLite open their transactions themselves (the driver's implicit ones are
    switched off in ``_sqlite_pragmas``), choosing the kind by intent."""


@event.listens_for(_SqliteSession, "after_begin")
def _sqlite_begin(session: Session, transaction: Any, connection: Connection) -> None:
    """An explicit ``session.begin()`` is how this code base writes: take SQLite's write lock
    at once (BEGIN IMMEDIATE), so a read-then-write transaction waits its turn on the busy
    timeout instead of failing with "database is locked" when another writer got in between
    (a lock upgrade cannot wait). A session that merely reads (autobegun) starts a deferred
    transaction: in WAL mode it never waits for the writer, so pulls do not queue behind the
    access-log writer."""
    explicit = transaction.origin is SessionTransactionOrigin.BEGIN
    connection.exec_driver_sql("BEGIN IMMEDIATE" if explicit else "BEGIN")


class _QueuedSession(AsyncSession):
    """A session whose write transactions (``session.begin()``) wait their turn in the
    database's :class:`~storage.write_queue.WriteQueue` before ``BEGIN IMMEDIATE``."""

    def __init__(self, *args: Any, write_queue: WriteQueue, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._write_queue = write_queue

    def begin(self) -> Any:
        return _QueuedTransaction(self._write_queue, super().begin())


class _QueuedTransaction:
    """``async with session.begin()``: the writer's turn, then the transaction inside it."""

    def __init__(self, queue: WriteQueue, transaction: AsyncSessionTransaction) -> None:
        self._turn = queue.turn()
        self._transaction = transaction

    async def __aenter__(self) -> AsyncSessionTransaction:
        await self._turn.__aenter__()
        try:
            return await self._transaction.__aenter__()
        except BaseException as exc:
            await self._turn.__aexit__(type(exc), exc, exc.__traceback__)
            raise

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._transaction.__aexit__(*exc)
        finally:
            await self._turn.__aexit__(None, None, None)


def write_queue(engine: AsyncEngine) -> WriteQueue:
    """The engine's queue of write transactions (one per engine, made on first use)."""
    queue = getattr(engine.sync_engine, "_gatekeeper_write_queue", None)
    if queue is None:
        database = engine.url.database
        path = Path(database) if database and database != ":memory:" else None
        queue = WriteQueue(path)
        engine.sync_engine._gatekeeper_write_queue = queue  # type: ignore[attr-defined]
    return queue


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    if engine.dialect.name == "sqlite":
        return async_sessionmaker(
            engine,
            class_=_QueuedSession,
            expire_on_commit=False,
            sync_session_class=_SqliteSession,
            write_queue=write_queue(engine),
        )
    return async_sessionmaker(engine, expire_on_commit=False)


@contextlib.asynccontextmanager
async def reading(db: async_sessionmaker[Any]) -> AsyncIterator[AsyncSession]:
    """A session that only reads. On PostgreSQL its statements run without a transaction
    around them (autocommit): at READ COMMITTED each statement takes a snapshot of its own
    anyway, and the ``BEGIN`` and ``ROLLBACK`` were two round trips of three for the one
    statement of a pull's verdict read. SQLite's reads keep their deferred transaction."""
    async with db() as session:
        bind = session.bind
        if bind is not None and bind.dialect.name == "postgresql":
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


MIGRATION_LOCK = 0x6761_7465_6B65_6570  # "gatekeep": the cluster-wide migration lock's key


def shipped_head() -> str:
    """The newest migration shipped, from the file names alone (see ``_MIGRATION_FILE``):
    what :func:`head_revision` says, without importing Alembic and every migration."""
    found = (
        _MIGRATION_FILE.fullmatch(path.name) for path in (MIGRATIONS_DIR / "versions").iterdir()
    )
    return max(match.group(1) for match in found if match)


async def _is_current(engine: AsyncEngine) -> bool:
    """Whether the schema is at :func:`shipped_head` already; False when there is no version
    to read (a fresh database). A database that cannot be reached fails here, as it did in
    Alembic's path."""
    async with engine.connect() as conn:
        try:
            result = await conn.execute(text("SELECT version_num FROM alembic_version"))
            versions = list(result.scalars())
        except (SQLAlchemyError, StorageError):  # the engine turns some into DatabaseUnavailable
            return False
    return versions == [shipped_head()]


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to run on every start.

    Every process of a gatekeeper runs this at start, and nearly always the schema is current:
    that is checked first with one query, because importing Alembic, Mako and the migration
    scripts to find nothing to do kept about 11 MiB resident in every process (issue 15)."""
    if revision == "head" and await _is_current(engine):
        return
    from alembic import command

    def run(connection: Connection) -> None:
        command.upgrade(_alembic_config(connection), revision)

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together would race to create the same tables; the
            # transaction-scoped lock makes the second wait and then find the schema current.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.run_sync(run)


def head_revision() -> str:
    """The newest migration shipped with this code."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def insert_if_absent(session: AsyncSession, model: Any, **values: Any) -> None:
    """``INSERT ... ON CONFLICT DO NOTHING``: both backends have it, SQLAlchemy spells it per
    dialect. The way to create a row that concurrent transactions then lock and update."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(insert(model).values(**values).on_conflict_do_nothing())


async def upsert(session: AsyncSession, model: Any, keys: list[str], **values: Any) -> None:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` of every other column given: one statement
    on both backends, so concurrent writers of the same row never fail on its key."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(**values)
    changed = {k: getattr(statement.excluded, k) for k in values if k not in keys}
    await session.execute(statement.on_conflict_do_update(index_elements=keys, set_=changed))
