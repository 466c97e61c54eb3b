"""Engine creation and schema migrations for both backends.

SQLite is the embedded default (one file, WAL so readers never block the access-log writer);
PostgreSQL (asyncpg) is for several replicas sharing state. The schema is owned by Alembic
migrations, applied at ``gatekeeper serve`` start and by ``gatekeeper db upgrade``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
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
from storage.prepared import insert_on, upserting
from storage.write_queue import WriteQueue

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_FILE = re.compile(r"(\d{4})_\w+\.py")
"""``0021_vex.py`` holds revision ``0021``, down from ``0020``: a unit test holds every
migration to it (``tests/unit/storage/test_migration_head.py``)."""


# What "the database failed" looks like to callers: our own error for a database that cannot
# run statements (the engine translates, see ``_translate``), and SQLAlchemy's for the rest
# (a statement refused on its merits). Never a bare ``OSError``: that is a client hanging up.
DATABASE_ERRORS: tuple[type[Exception], ...] = (StorageError, SQLAlchemyError)


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int | None = None) -> AsyncEngine:
    """An async engine with the per-backend settings the gatekeeper relies on (``pool_size``:
    PostgreSQL's connections kept; ``max_overflow``: how many more are opened under a burst,
    and closed after it, ``pool_size`` unless given)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        overflow = pool_size if max_overflow is None else max_overflow
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=overflow)
        event.listen(engine.sync_engine.pool, "checkin", _checked_in)
        event.listen(engine.sync_engine.pool, "checkout", _ping_if_idle)
    event.listen(engine.sync_engine, "do_connect", _connect)
    event.listen(engine.sync_engine, "handle_error", _translate)
    return engine


PING_IDLE_SECONDS = 1.0
"""A PostgreSQL connection that sat in the pool this long is pinged before it is handed out.

SQLAlchemy's ``pool_pre_ping`` pings every checkout, and on asyncpg that ping is three round
trips (``BEGIN``, ``;``, ``ROLLBACK``): under the load test a pull's whole work was one or three
statements, so the pings were most of its round trips (bench/README.md, issue 15). A
connection used a moment ago is as good as the ping would find it (a database that went away
since fails its next statement, 503, and the pool drops every connection made before); one
that sat idle (a restarted database, a firewall dropping quiet connections) is checked with
one round trip, and replaced if it fails."""


def _checked_in(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Ping a connection idle for :data:`PING_IDLE_SECONDS` or more (one round trip, outside a
    transaction); a failed ping makes the pool replace it (``DisconnectionError``)."""
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < PING_IDLE_SECONDS:
        return  # new (just connected), or used a moment ago
    autocommit = dbapi_connection.autocommit
    try:
        dbapi_connection.autocommit = True  # the bare ``;``: no BEGIN and ROLLBACK around it
        dbapi_connection.ping()
    except Exception as exc:
        raise DisconnectionError(f"idle connection failed its ping: {exc}") from exc
    finally:
        dbapi_connection.autocommit = autocommit


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


def reader(db: async_sessionmaker[Any]) -> AsyncSession:
    """A session for reads only, for the hot paths (a pull's verdict and blob judgement, an
    upload's session checks). On PostgreSQL its statements run outside a transaction
    (``AUTOCOMMIT``): each is one round trip, without the ``BEGIN`` before the first and the
    ``ROLLBACK`` at the end (two of a pull's three or five). Under READ COMMITTED, what the
    gatekeeper runs, every statement of a transaction reads its own snapshot anyway, so a
    series of reads sees nothing different. Never write through it: each statement would
    commit on its own. On SQLite it is an ordinary session (a deferred read transaction)."""
    engine = getattr(db, "kw", {}).get("bind")
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "postgresql":
        plain: AsyncSession = db()
        return plain
    autocommit = getattr(engine.sync_engine, "_gatekeeper_autocommit", None)
    if autocommit is None:
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        engine.sync_engine._gatekeeper_autocommit = autocommit  # type: ignore[attr-defined]
    session: AsyncSession = db(bind=autocommit)
    return session


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
    insert = insert_on(session)
    await session.execute(insert(model).values(**values).on_conflict_do_nothing())


async def upsert(session: AsyncSession, model: Any, keys: list[str], **values: Any) -> None:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` of every other column given: one statement
    on both backends, so concurrent writers of the same row never fail on its key."""
    await session.execute(upserting(insert_on(session), model, keys, **values))
