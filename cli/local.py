"""The admin API served inside the command itself, for ``gatekeeper quarantine ...`` and
``gatekeeper policy ...`` given a settings file instead of a gatekeeper's URL.

The commands always speak the admin API, so they behave the same either way. With a settings
file, the API's own handlers (``proxy/admin``) run in this process over the settings' database,
on a unix socket in a private temporary directory (mode 0700), guarded by a one-time admin
token: the same checks and refusals, the same verdict changes with their access-log rows and
history, webhook deliveries recorded for the serving gatekeeper to send (as
``gatekeeper advisories import`` does), and verifications queued for its workers. Nothing is
verified here: no worker, no scheduler.

Whoever can read the settings and open the database is an admin already, so the one-time token
is the admin-token principal: actions are recorded as ``admin-token:<actor>``, the actor being
``--actor`` or this machine's login name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from config.settings import Settings

if TYPE_CHECKING:
    from services.events import VerdictChange

START_TIMEOUT = 120.0
"""Seconds to open the database (and bring its schema up to date) before giving up."""


class LocalApiError(Exception):
    """The settings' database could not be opened; the message says why."""


@dataclass(frozen=True)
class Endpoint:
    """Where a command reaches the admin API, and with what."""

    url: str
    token: str
    transport: httpx.BaseTransport | None = None
    label: str = ""
    """How messages name it (the URL, or the settings file)."""


def _app(settings: Settings) -> Any:
    """An application holding only the admin API and the access log, over ``settings``."""
    from aiohttp import web

    from proxy.admin.routes import add_admin
    from proxy.audit import build_middleware
    from proxy.errors import error_middleware
    from proxy.state import services

    def emit(request: web.Request, record: Any) -> None:
        services(request).audit.submit(record)

    app = web.Application(
        middlewares=[build_middleware(emit, frozenset()), error_middleware],
        client_max_size=1024 * 1024,
    )
    add_admin(app)
    app.cleanup_ctx.append(_resources(settings))
    return app


def _resources(settings: Settings) -> Any:
    async def ctx(app: Any) -> AsyncIterator[None]:
        from proxy.attest.publisher import recorder_for
        from proxy.audit import AuditWriter, audit_listener
        from proxy.audit_ledger import open_ledger
        from proxy.metrics import Metrics
        from proxy.presence import Presence
        from proxy.remote_status import RemoteStatus, make_remote_client
        from proxy.state import SERVICES, Services
        from services.events import EventBus
        from services.live_policies import LivePolicies
        from services.verification import VerificationService
        from storage.db import create_engine, sessionmaker, upgrade
        from upstream.client import Upstream, make_client_session, make_token_client

        engine = create_engine(settings.database_url)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            await upgrade(engine)
            db = sessionmaker(engine)
            writer = AuditWriter(db, settings.audit, ledger=await open_ledger(settings, db))
            writer.start()
            stack.push_async_callback(writer.close)
            session = make_client_session(settings)
            stack.push_async_callback(session.close)
            tokens = make_token_client(settings)
            stack.push_async_callback(tokens.aclose)
            bus = EventBus()
            bus.subscribe(audit_listener(writer, json_log=settings.audit.json_log))
            remote_client = make_remote_client()
            stack.push_async_callback(remote_client.aclose)
            bus.subscribe(await _recorded_webhooks(settings, db, stack))
            upstream = Upstream(settings, session, tokens)
            # Not started either: read once, so waivers made here apply to what this command
            # decides again; the serving gatekeeper picks them up on its next refresh.
            policies = LivePolicies(settings.policies, db, bus.publish)
            await policies.refresh()
            # Summaries of what this command releases or re-quarantines: signed and stored
            # here, pushed by the serving gatekeeper.
            if (recorder := await recorder_for(settings, db, policies.match)) is not None:
                bus.subscribe(recorder.listener)
            # Never started: submit() queues jobs for the serving gatekeeper's workers.
            verification = VerificationService(settings, db, upstream, [], bus, policies)
            app[SERVICES] = Services(
                settings=settings,
                engine=engine,
                db=db,
                upstream=upstream,
                audit=writer,
                metrics=Metrics(),
                bus=bus,
                verification=verification,
                policies=policies,
                remotes=RemoteStatus(settings.remotes, remote_client),
                # Never started: this command serves no uploads, so it holds no sessions.
                presence=Presence(db, verification.owner, settings.replicas),
            )
            yield

    return ctx


async def _recorded_webhooks(
    settings: Settings, db: Any, stack: contextlib.AsyncExitStack
) -> Callable[[VerdictChange], Awaitable[None]]:
    """The webhook dispatcher's listener, not started: it records deliveries, the serving
    gatekeeper sends them."""
    from proxy.webhooks import WebhookDispatcher, make_webhook_client
    from proxy.webhooks.cloudevents import event_source

    client = make_webhook_client()
    stack.push_async_callback(client.aclose)
    hooks = WebhookDispatcher(settings.webhooks, db, client, source=event_source(settings))
    stack.push_async_callback(hooks.close)
    return hooks.listener


class _Server:
    """The admin application on a unix socket, in a thread of its own with its own loop (the
    commands are synchronous httpx clients)."""

    def __init__(self, settings: Settings, path: str) -> None:
        self.settings = settings
        self.path = path
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="local-admin-api", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self.ready.wait(START_TIMEOUT):
            raise LocalApiError(f"the database did not open within {START_TIMEOUT:.0f}s")
        if self.error is not None:
            raise LocalApiError(f"{type(self.error).__name__}: {self.error}") from self.error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start(); the thread must not die silently
            self.error = exc
        finally:
            self.ready.set()

    async def _serve(self) -> None:
        from aiohttp import web

        runner = web.AppRunner(_app(self.settings), access_log=None)
        await runner.setup()
        try:
            await web.UnixSite(runner, self.path).start()
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            self.ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()


@contextlib.contextmanager
def local_admin_api(settings: Settings, label: str) -> Iterator[Endpoint]:
    """The admin API over ``settings``, for as long as the block runs."""
    token = secrets.token_urlsafe(32)
    served = settings.model_copy(update={"admin_token": SecretStr(token)})
    with tempfile.TemporaryDirectory(prefix="gatekeeper-admin-") as private:
        os.chmod(private, 0o700)
        path = os.path.join(private, "admin.sock")
        server = _Server(served, path)
        try:
            server.start()
            yield Endpoint("http://gatekeeper.local", token, httpx.HTTPTransport(uds=path), label)
        finally:
            server.stop()
