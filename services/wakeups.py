"""Waking the processes that wait on the database, instead of each polling it.

Two things wait: an idle verification worker (for a job to be queued) and a pull held while
its image is verified (for the verdict). Both used to read the database on a timer; with
serving and verifying in different processes (``gatekeeper serve --workers N``) or machines,
the timer was the latency. Now whoever queues a job or changes a verdict sends a wake-up on a
channel (:data:`JOBS`, :data:`VERDICTS`, :data:`WIDENED`), and every waiter on it, in any
process, reads the database at once. The timers stay, as a safety net for a lost wake-up (and
for a retry queued for later), not as the way work is noticed.

- **PostgreSQL**: ``LISTEN``/``NOTIFY`` on a connection of its own (asyncpg), so every
  process and machine on the database hears every wake-up; made again when it is lost.
- **SQLite** (one host): each process binds a Unix datagram socket in a directory beside the
  database file (``<file>.wake/``), and a wake-up is one datagram to each socket there;
  a socket whose process is gone is removed by the first sender that finds it dead.
- **In memory** (tests): this process only.

A wake-up carries nothing but its channel: the database stays the only truth, so a forged or
lost datagram can cause at most one extra read, or a wait until the safety net's timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger("gatekeeper.wakeups")

JOBS = "gatekeeper_jobs"
"""A verification job was queued."""
VERDICTS = "gatekeeper_verdicts"
"""An image's verdict changed."""
WIDENED = "gatekeeper_verdicts_widened"
"""An image's verdict changed, and the change only lets more out (``VerdictChange.widens``):
pulls waiting for a verdict read it, cached decisions stay."""
CHANNELS = (JOBS, VERDICTS, WIDENED)


class Wakeups:
    """Local listeners per channel, and the transport to the other processes."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Callable[[], None]]] = {c: [] for c in CHANNELS}

    def listen(self, channel: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) on every wake-up of ``channel``."""
        self._listeners[channel].append(callback)

    @contextlib.contextmanager
    def waiting(self, *channels: str) -> Iterator[asyncio.Event]:
        """An event set by each wake-up of any of ``channels`` while the ``with`` lasts."""
        event = asyncio.Event()
        for channel in channels:
            self._listeners[channel].append(event.set)
        try:
            yield event
        finally:
            for channel in channels:
                self._listeners[channel].remove(event.set)

    def deliver(self, channel: str) -> None:
        for callback in list(self._listeners.get(channel, ())):
            callback()

    async def notify(self, channel: str) -> None:
        """Wake every waiter on ``channel``: this process's now, the others' by the transport.
        Never raises: a wake-up that cannot be sent leaves the waiters to their timers."""
        self.deliver(channel)
        try:
            await self._send(channel)
        except Exception as exc:
            log.debug("wake-up on %s not sent: %s", channel, exc)

    async def _send(self, channel: str) -> None:
        """This process only."""

    async def start(self) -> None:
        """Start hearing the other processes."""

    async def close(self) -> None:
        """Stop hearing them."""


class SocketWakeups(Wakeups):
    """One host: a Unix datagram socket per process in a shared directory."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self._directory = directory
        # Short: a socket's path must fit in 107 bytes.
        self._path = directory / f"{uuid.uuid4().hex[:12]}.sock"
        self._sock: socket.socket | None = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._directory.mkdir(mode=0o700, exist_ok=True)
            sock.setblocking(False)
            sock.bind(str(self._path))
        except OSError as exc:  # a path too long, a read-only directory
            sock.close()
            log.warning("no wake-up socket (waiters fall back to their timers): %s", exc)
            return
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._receive)

    def _receive(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.deliver(data.decode(errors="replace"))

    async def _send(self, channel: str) -> None:
        if self._sock is None:
            return
        data = channel.encode()
        for name in os.listdir(self._directory):
            path = self._directory / name
            if path == self._path or not name.endswith(".sock"):
                continue
            try:
                self._sock.sendto(data, str(path))
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    path.unlink()  # its process is gone
            except (BlockingIOError, OSError):
                continue  # a full queue already has a wake-up waiting in it

    async def close(self) -> None:
        if self._sock is None:
            return
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        with contextlib.suppress(OSError):
            self._path.unlink()


class PostgresWakeups(Wakeups):
    """Every process on the database: ``LISTEN``/``NOTIFY`` on a connection of its own.

    The connection is made again when it is lost (a database restart, a failover, an idle
    connection cut by a proxy) or could not be made at start, after :data:`RETRY_SECONDS`;
    meanwhile waiters fall back to their timers. Once it is back, every channel is delivered
    once here, since wake-ups sent while nobody listened are gone."""

    RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
    """Waits before each new attempt; the last repeats."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._again: asyncio.Task[None] | None = None
        self._closing = False
        self._due: set[str] = set()
        self._sender: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not await self._connect():
            self._reconnect_later()

    async def _connect(self) -> bool:
        import asyncpg

        conn: Any = None
        try:
            conn = await asyncpg.connect(self._dsn)
            for channel in CHANNELS:
                await conn.add_listener(channel, self._heard)
            conn.add_termination_listener(self._lost)
        except Exception as exc:  # an unreachable server, a URL option asyncpg refuses
            log.warning("no LISTEN connection (waiters fall back to their timers): %s", exc)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            return False
        self._conn = conn
        return True

    def _lost(self, conn: Any) -> None:
        if self._closing or conn is not self._conn:
            return
        self._conn = None
        log.warning("LISTEN connection lost: connecting again (waiters use their timers)")
        self._reconnect_later()

    def _reconnect_later(self) -> None:
        if self._closing or (self._again is not None and not self._again.done()):
            return
        self._again = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delays = itertools.chain(self.RETRY_SECONDS, itertools.repeat(self.RETRY_SECONDS[-1]))
        for delay in delays:
            await asyncio.sleep(delay)
            if self._closing:
                return
            if await self._connect():
                log.info("LISTEN connection made again")
                for channel in CHANNELS:  # what was sent while nobody listened
                    self.deliver(channel)
                return

    def _heard(self, _conn: Any, _pid: int, channel: str, _payload: str) -> None:
        self.deliver(channel)

    async def _send(self, channel: str) -> None:
        """Sent by a task of its own: the caller (a push answering its client, a verdict
        being announced) does not wait for the ``NOTIFY``'s round trip, which on a serving
        loop busy with pulls took 50-60 ms (bench/README.md). Wake-ups of a channel asked for
        while one is being sent are sent once after it: each carries nothing but its channel,
        and a listener reads the database when it hears one."""
        if self._conn is None:
            return
        self._due.add(channel)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_due())

    async def _send_due(self) -> None:
        while self._due and not self._closing:
            channels, self._due = sorted(self._due), set()
            for channel in channels:
                try:
                    await self._notify(channel)
                except Exception as exc:
                    log.debug("wake-up on %s not sent: %s", channel, exc)

    async def _notify(self, channel: str) -> None:
        conn = self._conn
        if conn is None:
            return
        async with self._lock:
            # Heard by this process too: waiters read the database once more, harmlessly.
            try:
                await conn.execute("SELECT pg_notify($1, '')", channel)
            except Exception:
                if conn.is_closed():
                    self._lost(conn)  # in case the termination was not reported yet
                raise

    async def close(self) -> None:
        if self._sender is not None and not self._sender.done():
            # Wake-ups asked for before the stop still go out (briefly: the timers cover them).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._sender), 2.0)
        self._closing = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self._again is not None:
            self._again.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._again
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None


def for_database(database_url: str) -> Wakeups:
    """The transport that reaches every process on ``database_url``."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        plain = url.set(drivername="postgresql")
        return PostgresWakeups(plain.render_as_string(hide_password=False))
    database = url.database
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        path = Path(database)
        return SocketWakeups(path.with_name(path.name + ".wake"))
    return Wakeups()
