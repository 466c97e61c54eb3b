"""The application factory: ``create_app(settings)`` builds a fully wired gatekeeper.

One cleanup context owns every long-lived resource (database engine, access-log writer,
upstream client session, token client, background services) through one ``AsyncExitStack``
and closes them in reverse order, so a clean stop drains the access log while the database is
still open, and a start that fails half-way closes what it had opened.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aiohttp import HttpVersion10, web
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from config.public_names import public_hosts
from config.settings import Settings
from oci.errors import Code, OCIError
from proxy import origins, registry_files
from proxy.admin.routes import add_admin
from proxy.attest import keys as attest_keys
from proxy.attest.keys import GatekeeperKeys
from proxy.attest.publisher import SummaryPublisher, SummaryRecorder
from proxy.audit import (
    AuditWriter,
    access_log,
    add_request_id,
    audit_listener,
    begin_on_prepare,
    build_middleware,
)
from proxy.audit_ledger import Ledger
from proxy.audit_spool import Spool, directory_for, replay
from proxy.auth.http import AUTH, build_auth_middleware
from proxy.auth.service import AuthService
from proxy.clientaddr import build_forwarded_middleware
from proxy.connections import CONNECTIONS, ConnectionLimits, OnRefused, limit_label
from proxy.errors import envelope, error_middleware
from proxy.handlers.keys import GATEKEEPER_KEYS
from proxy.hostheader import host_middleware, warn_if_host_derived
from proxy.metrics import Metrics
from proxy.names import check_raw_path
from proxy.prefetch import Prefetcher, warm_up
from proxy.presence import Presence
from proxy.remote_status import RemoteStatus, make_remote_client
from proxy.routes import ACCESS, ACTIONS, EXTRA_SCOPES, UNAUDITED_PATHS, add_routes
from proxy.server import OnUnparsed
from proxy.state import SERVICES, Services, services
from proxy.tls_port import OnPlain
from proxy.ui.app import add_console
from proxy.webhooks import WebhookDispatcher, make_webhook_client
from services.events import EventBus
from services.examine import StoredBlob
from services.live_policies import LivePolicies
from services.mirror import make_mirror_client
from services.reevaluate import after_policy_change
from services.scheduler import Scheduler, build_scheduler
from services.verification import VerificationService
from services.wakeups import for_database as wakeups_for
from storage.advisories import DbAdvisoryStore
from storage.audit import AccessRecord
from storage.db import create_engine, sessionmaker, upgrade
from storage.inventory import DbInventoryStore
from storage.layer_cache import DbLayerCache
from storage.writer import close as close_engine
from upstream.client import Upstream, make_client_session, make_token_client
from verifiers.base import Verifier
from verifiers.registry import build_verifiers
from verifiers.registry_names import RegistryNames

log = logging.getLogger("gatekeeper")


def _emit(request: web.Request, record: AccessRecord) -> None:
    _record(services(request), record)


def _record(svc: Services, record: AccessRecord) -> None:
    svc.metrics.observe(record)
    if svc.settings.audit.json_log:
        access_log.info(json.dumps(record.as_json(), separators=(",", ":")))
    svc.audit.submit(record)


def _admit(request: web.Request) -> OCIError | None:
    return services(request).audit.refusal()


def _emit_refused(request: web.Request, record: AccessRecord) -> None:
    _record_refused(services(request), record)


def _record_refused(svc: Services, record: AccessRecord) -> None:
    """A request refused because the access-log buffer is full: counted and logged, but not
    queued (that would grow the very buffer that is full)."""
    svc.metrics.observe(record)
    svc.metrics.audit_refused.inc()
    if svc.settings.audit.json_log:
        access_log.warning(json.dumps({"unrecorded": record.as_json()}, separators=(",", ":")))


def _begin(request: web.Request, record: AccessRecord) -> None:
    services(request).audit.begin(record)


def _refused_row(
    peer: str | None, path: str, action: str, failure: OCIError, request_id: str
) -> AccessRecord:
    """The row of a request refused before HTTP was parsed: only its peer is known, so the
    method and path are placeholders and the identity is anonymous."""
    return AccessRecord(
        time=datetime.now(UTC),
        request_id=request_id,
        client_addr=peer,
        identity="anonymous",
        method="UNKNOWN",
        path=path,
        action=action,
        repository=None,
        reference=None,
        digest=None,
        status=failure.code.status,
        bytes_in=0,
        bytes_out=len(envelope([failure])),
        duration_ms=0.0,
        upstream_status=None,
        decision=None,
        reason=failure.message,
        error_code=failure.code.code,
    )


def _record_or_refuse(svc: Services, row: AccessRecord) -> None:
    if svc.audit.full:
        _record_refused(svc, row)
    else:
        _record(svc, row)


def record_unparsed(app: web.Application) -> OnUnparsed:
    """Access-log rows for requests aiohttp refused before any middleware saw them: the parser
    gave up on their request line or headers (``request.unparsed``), or they did not arrive in
    time (``request.timeout``, counted in ``/metrics``)."""

    def record(request: web.BaseRequest, failure: OCIError, request_id: str) -> None:
        svc = app[SERVICES]
        action = "request.unparsed"
        if failure.code is Code.HEADERS_TIMEOUT:
            action = "request.timeout"
            svc.metrics.header_timeouts.inc()
        row = _refused_row(request.remote, "(unparsed)", action, failure, request_id)
        _record_or_refuse(svc, row)

    return record


def record_refused_connection(app: web.Application) -> OnRefused:
    """The access-log row (``connection.refused``) and the count of each connection refused
    by the connection caps (``proxy/connections.py``)."""

    def record(address: str | None, failure: OCIError, request_id: str) -> None:
        svc = app[SERVICES]
        svc.metrics.connections_refused.labels(limit_label(failure)).inc()
        row = _refused_row(address, "(unparsed)", "connection.refused", failure, request_id)
        _record_or_refuse(svc, row)

    return record


def record_plain_http(app: web.Application) -> OnPlain:
    """Access-log rows for plain-HTTP requests on the TLS port (``proxy.tls_port``)."""

    def record(peer: str | None, failure: OCIError, request_id: str) -> None:
        path = "(plain HTTP on the TLS port)"
        row = _refused_row(peer, path, "request.plain-http", failure, request_id)
        _record_or_refuse(app[SERVICES], row)

    return record


@web.middleware
async def path_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Refuse dot segments and encoded slashes before any handler sees the path."""
    if request.raw_path.startswith("/v2/"):
        check_raw_path(request.raw_path)
    return await handler(request)


@web.middleware
async def version_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Refuse HTTP/0.9-style request lines (``GET /path`` without a version), which aiohttp
    accepts: no registry client sends one, and a request line a proxy in front may frame
    differently is how request smuggling starts."""
    if request.version < HttpVersion10:
        raise OCIError(
            Code.REQUEST_MALFORMED,
            "HTTP/0.9 requests are not supported; use HTTP/1.1",
            {"reason": "HTTP/0.9"},
        )
    return await handler(request)


def create_app(settings: Settings) -> web.Application:
    # Without public_url, the Host header decides the URLs handed out: refuse a bad one first.
    hosts = [] if settings.public_url is not None else [host_middleware]
    warn_if_host_derived(settings)
    app = web.Application(
        middlewares=[
            build_forwarded_middleware(settings.trusted_proxies),
            build_middleware(_emit, UNAUDITED_PATHS, _admit, _emit_refused),
            error_middleware,
            version_middleware,
            *hosts,
            path_middleware,
            build_auth_middleware(ACCESS, ACTIONS, EXTRA_SCOPES),
        ],
        # Manifest bodies are capped by their handler; blob bodies are streamed, never buffered.
        client_max_size=settings.max_manifest_bytes + 1024,
    )
    app[CONNECTIONS] = ConnectionLimits(settings.connections, settings.trusted_proxies)
    add_routes(app)
    add_admin(app)
    if settings.console.enabled:
        add_console(app)
    app.on_response_prepare.append(add_request_id)
    app.on_response_prepare.append(begin_on_prepare(_begin))
    app.cleanup_ctx.append(_resources(settings))
    app.on_shutdown.append(_stop_background)
    return app


def _event_source(settings: Settings) -> str:
    """CloudEvents ``source``: the public URL when one is set."""
    return str(settings.public_url).rstrip("/") if settings.public_url else "registry-gatekeeper"


@dataclass(frozen=True)
class _Background:
    """This replica's background work, stopped first when the process stops."""

    verification: VerificationService
    scheduler: Scheduler
    presence: Presence

    async def stop(self) -> None:
        await self.verification.close()
        await self.scheduler.close()
        await self.presence.close()


BACKGROUND: web.AppKey[_Background] = web.AppKey("background", _Background)
"""Set by the resources once the background work runs."""


async def _stop_background(app: web.Application) -> None:
    """``on_shutdown``: the moment a stop begins, before in-flight requests are waited for
    (up to the shutdown timeout), this replica hands its verification jobs and its scheduler
    lease back and leaves the replicas, so the others take its work over at once."""
    background = app.get(BACKGROUND)
    if background is not None:
        await background.stop()


def _resources(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context that owns every long-lived resource. Each goes on one exit stack
    the moment it is opened, so a stop closes them in reverse order (background work first,
    the access log drained while the database is still open, the engine last), and a start
    that fails half-way (a migration, the key source, the catch-up re-evaluation) closes
    exactly what it had opened before the error stops the process."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            engine = create_engine(settings.database_url)
            stack.push_async_callback(close_engine, engine)  # its writer thread, then itself
            await upgrade(engine)
            db = sessionmaker(engine)
            # First: a key source that is missing or unsafe stops the start before anything
            # else is running (proxy/auth/keystore.py).
            auth = await AuthService.create(settings.auth, db) if settings.auth.enabled else None
            # The gatekeeper's own key (checkpoints, summaries): a bad key file stops the
            # start here too (proxy/attest/keys.py).
            keys = await attest_keys.load(settings, db, create=True)
            app[GATEKEEPER_KEYS] = keys
            metrics = Metrics()
            writer = await _open_audit(app, settings, db, metrics, keys, stack)
            wiring = await _open_services(settings, engine, db, metrics, writer, stack)
            app[SERVICES] = svc = wiring.services
            if auth is not None:
                app[AUTH] = auth
            else:
                log.warning(
                    "authentication is disabled: anyone who reaches the gatekeeper can push "
                    "and pull"
                )
            scheduler = _open_scheduler(svc, stack)
            publisher = _open_summaries(svc, keys, stack)
            # Verdicts decided under another version of their policy (the settings file's,
            # with the stored waivers, for their origin as the settings now give it) are
            # decided again from stored findings (no layer is read) before the first pull is
            # gated.
            await origins.reconcile(db, settings.remotes)
            await after_policy_change(db, settings.policies, publish=svc.bus.publish)
            svc.verification.start()
            svc.policies.start()
            wiring.webhooks.start()
            scheduler.start()
            if publisher is not None:
                publisher.start()
            app[BACKGROUND] = _Background(svc.verification, scheduler, svc.presence)
            _log_ready(settings, wiring.verifiers)
            yield

    return ctx


async def _open_audit(
    app: web.Application,
    settings: Settings,
    db: async_sessionmaker[Any],
    metrics: Metrics,
    keys: GatekeeperKeys,
    stack: contextlib.AsyncExitStack,
) -> AuditWriter:
    """The access-log writer, after the rows a gatekeeper that did not stop cleanly left in
    its spool are written (``proxy.audit_spool``), so they come before this one's."""
    spool = Spool(
        directory_for(settings.audit.spool_dir, settings.database_url),
        settings.audit.spool_sync_seconds,
    )
    spool.open()
    # Left for the next start to replay if the start fails; a no-op after the writer closed it.
    stack.callback(spool.close, drained=False)
    # Each row is chained to the one before it, with signed checkpoints (proxy.audit_ledger).
    ledger = Ledger(db, keys.signer, settings.audit.checkpoint_interval_seconds)
    await ledger.open()
    await replay(spool.directory, spool.name, db, settings.audit.batch_size, ledger)
    writer = AuditWriter(db, settings.audit, metrics.audit_backlog_failures.inc, spool, ledger)
    metrics.watch_audit(lambda: writer.backlog, settings.audit.max_buffered)
    metrics.watch_connections(lambda: app[CONNECTIONS].open)
    writer.start()
    stack.push_async_callback(writer.close)
    return writer


@dataclass(frozen=True)
class _Wiring:
    """What start-up built before any background work runs."""

    services: Services
    webhooks: WebhookDispatcher
    verifiers: list[Verifier]


async def _open_services(
    settings: Settings,
    engine: AsyncEngine,
    db: async_sessionmaker[Any],
    metrics: Metrics,
    writer: AuditWriter,
    stack: contextlib.AsyncExitStack,
) -> _Wiring:
    """The upstream clients, the event bus and its listeners, the verifiers and the
    verification service, and this replica's presence among the others."""
    session = make_client_session(settings)
    stack.push_async_callback(session.close)
    token_client = make_token_client(settings)
    stack.push_async_callback(token_client.aclose)
    upstream = Upstream(settings, session, token_client)
    remote_client = make_remote_client()
    stack.push_async_callback(remote_client.aclose)
    bus = EventBus()
    bus.subscribe(audit_listener(writer, json_log=settings.audit.json_log))
    webhooks = _open_webhooks(settings, db, stack)
    bus.subscribe(webhooks.listener)
    verifiers = build_verifiers(
        settings.verifiers,
        DbLayerCache(db),
        DbInventoryStore(db),
        DbAdvisoryStore(db),
        registry=RegistryNames.of(public_hosts(settings)),
    )
    policies = LivePolicies(settings.policies, db, bus.publish)
    await policies.refresh()
    verification = await _open_verification(
        settings, db, upstream, verifiers, bus, policies, metrics, stack
    )
    presence = Presence(db, verification.owner, settings.replicas)
    stack.push_async_callback(presence.close)
    stack.push_async_callback(verification.close)  # hands its jobs back before it leaves
    stack.push_async_callback(policies.close)  # nothing to close before it starts
    await presence.start()
    services = Services(
        settings=settings,
        engine=engine,
        db=db,
        upstream=upstream,
        audit=writer,
        metrics=metrics,
        bus=bus,
        verification=verification,
        policies=policies,
        remotes=RemoteStatus(settings.remotes, remote_client),
        presence=presence,
    )
    return _Wiring(services, webhooks, verifiers)


async def _open_verification(
    settings: Settings,
    db: async_sessionmaker[Any],
    upstream: Upstream,
    verifiers: list[Verifier],
    bus: EventBus,
    policies: LivePolicies,
    metrics: Metrics,
    stack: contextlib.AsyncExitStack,
) -> VerificationService:
    """The verification service, with the wake-ups by which queued jobs and changed verdicts
    reach the other processes (``services.wakeups``). The wake-ups close after the service
    (pushed first), which may still publish while it hands its jobs back."""
    wakeups = wakeups_for(settings.database_url)
    await wakeups.start()
    stack.push_async_callback(wakeups.close)
    return VerificationService(
        settings,
        db,
        upstream,
        verifiers,
        bus,
        policies,
        on_incomplete=metrics.verifications_incomplete.inc,
        wakeups=wakeups,
        on_vex=policies.apply,
        stored_blob=_stored_blob(settings),
    )


def _stored_blob(settings: Settings) -> StoredBlob | None:
    """The registry's mounted storage as the verification's first source of configs."""
    root = settings.upstream_storage_root
    return None if root is None else partial(registry_files.blob, root)


def _open_webhooks(
    settings: Settings, db: async_sessionmaker[Any], stack: contextlib.AsyncExitStack
) -> WebhookDispatcher:
    client = make_webhook_client()
    stack.push_async_callback(client.aclose)
    webhooks = WebhookDispatcher(settings.webhooks, db, client, source=_event_source(settings))
    stack.push_async_callback(webhooks.close)
    return webhooks


def _open_scheduler(svc: Services, stack: contextlib.AsyncExitStack) -> Scheduler:
    """The cluster-wide scheduler (periodic re-verification, advisory mirror sync, keeping
    the prefetch list warm), with the mirror's client when mirrors are configured."""
    settings = svc.settings
    mirror_client = make_mirror_client(settings.advisories) if settings.advisories.urls else None
    if mirror_client is not None:
        stack.push_async_callback(mirror_client.aclose)
    prefetcher = Prefetcher(
        svc.upstream,
        svc.verification,
        svc.remotes,
        on_result=lambda result: svc.metrics.prefetched.labels(result).inc(),
    )
    scheduler = build_scheduler(
        settings,
        svc.engine,
        svc.db,
        svc.metrics,
        mirror_client,
        owner=svc.verification.owner,
        bus=svc.bus,
        warm=partial(warm_up, prefetcher, settings.prefetch.images),
    )
    stack.push_async_callback(scheduler.close)
    return scheduler


def _open_summaries(
    svc: Services, keys: GatekeeperKeys, stack: contextlib.AsyncExitStack
) -> SummaryPublisher | None:
    """Signed verification summaries: recorded as verdicts change (on the bus), pushed to the
    upstream as referrers by a background publisher. None without a signing key."""
    settings = svc.settings
    if not settings.attestations.summaries:
        return None
    if keys.signer is None:
        log.warning(
            "verification summaries are not pushed: the gatekeeper has no signing key "
            "(set a key-encryption key or attestations.signing_key_file)"
        )
        return None
    publisher = SummaryPublisher(settings, svc.db, svc.upstream, svc.verification)
    stack.push_async_callback(publisher.close)
    recorder = SummaryRecorder(
        settings, svc.db, keys.signer, svc.policies.match, wake=publisher.wake
    )
    svc.bus.subscribe(recorder.listener)
    return publisher


def _log_ready(settings: Settings, verifiers: Sequence[Verifier]) -> None:
    log.info(
        "gatekeeper ready: upstream %s, verifiers %s, %d policies",
        settings.upstream_url,
        ", ".join(v.name for v in verifiers) or "none",
        len(settings.policies),
    )
    if not settings.policies:
        log.warning("no policies configured: every pull will be denied (fail closed)")
    for remote in settings.remotes:
        log.info(
            "remote %s serves %s%s",
            remote.name,
            ", ".join(remote.repositories),
            "" if remote.url else " (no url: a failed fetch is not asked about)",
        )
