"""``gatekeeper serve`` (one process, or ``--workers N`` under a supervising parent) and
``gatekeeper worker`` (verification and the scheduler, no port)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import sys
from functools import partial
from typing import Any

from cli.config import add_config, settings_for
from config.settings import Settings
from config.text import VisibleFormatter

log = logging.getLogger("gatekeeper")


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(VisibleFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # aiohttp's own access log would duplicate ours (and could log credentials in URLs).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs full request URLs at INFO; webhook and token URLs can carry secrets.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def add_serve_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the gatekeeper")
    add_config(serve)
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="serving processes on the port (default: the workers setting, else one per "
        "core); with more than one, verification runs in a process of its own",
    )
    serve.set_defaults(func=cmd_serve)
    worker = sub.add_parser(
        "worker",
        help="run verification jobs and scheduled work, serving no port",
        description="Run the verification workers and the scheduler against the database, "
        "without serving: beside `serve --workers N` (which starts one itself), or on other "
        "machines against the same PostgreSQL.",
    )
    add_config(worker)
    worker.set_defaults(func=cmd_worker)


def cmd_serve(args: argparse.Namespace) -> int:
    from proxy.listen import ListenError, bind
    from proxy.workers import (
        Supervisor,
        Target,
        default_count,
        metrics_directory,
        remove_metrics_directory,
    )

    settings = settings_for(args)
    configure_logging(settings.log_level)
    _warn_about(settings)
    count = args.workers or settings.workers or default_count()
    if count < 1:
        raise ValueError("--workers must be at least 1")
    if count == 1:
        return _serve(settings, None)
    # Before anything imports prometheus-client: its multiprocess mode is chosen at import.
    made = metrics_directory()
    try:
        sockets = bind(settings.host, settings.port)
    except ListenError as exc:
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        remove_metrics_directory(made)
        return 1
    # The schema once, before the children start: several processes migrating one fresh SQLite
    # file at once collide ("table ... already exists").
    if not _migrate(settings):
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        remove_metrics_directory(made)
        return 1
    serving = settings.model_copy(
        update={"verification": settings.verification.model_copy(update={"workers": 0})}
    )
    children: list[tuple[str, Target]] = [("serve", partial(_serve, serving, sockets))] * count
    if settings.verification.workers:
        children.append(("worker", partial(_work, settings)))
    try:
        return Supervisor(children).run()
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        remove_metrics_directory(made)


def _migrate(settings: Settings) -> bool:
    """Bring the schema up to date in this (the parent) process; False (said in one line) if
    the database cannot be reached."""
    from storage.db import DATABASE_ERRORS, create_engine, upgrade

    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except DATABASE_ERRORS as exc:
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        return False
    return True


def _serve(settings: Settings, sockets: list[socket.socket] | None) -> int:
    """Serve in this process (on ``sockets`` when a parent bound them) until stopped."""
    from proxy.app import create_app, record_plain_http, record_refused_connection, record_unparsed
    from proxy.connections import CONNECTIONS
    from proxy.server import Guard, serve

    ssl_context = None
    if settings.tls_cert and settings.tls_key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
    app = create_app(settings)
    guard = Guard(
        limits=app[CONNECTIONS],
        on_refused=record_refused_connection(app),
        header_timeout=settings.connections.request_header_timeout_seconds,
    )
    return _run(
        serve(
            app,
            host=settings.host,
            port=settings.port,
            sockets=sockets,
            ssl_context=ssl_context,
            on_unparsed=record_unparsed(app),
            guard=guard,
            keepalive_timeout=settings.connections.keepalive_timeout_seconds,
            on_plain_http=record_plain_http(app),
            shutdown_timeout=30,
        )
    )


def cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    configure_logging(settings.log_level)
    if not settings.verification.workers:
        log.warning("verification.workers is 0: this worker runs scheduled work only")
    return _work(settings)


def _work(settings: Settings) -> int:
    """The app's background work (verification, scheduler, webhooks) without a listener."""
    from aiohttp import web

    from proxy.app import create_app

    async def run() -> None:
        runner = web.AppRunner(create_app(settings), handle_signals=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await runner.setup()  # the app's resources start here, its background work too
            log.info("verification worker ready")
            await stop.wait()
        finally:
            await runner.cleanup()

    return _run(run())


def _run(main: Any) -> int:
    """Run ``main`` to its end; a failure to start is one line for the operator."""
    from proxy.audit_spool import SpoolError
    from proxy.listen import ListenError
    from storage.db import DATABASE_ERRORS

    start_errors: tuple[type[Exception], ...] = (ListenError, SpoolError, *DATABASE_ERRORS)
    try:
        asyncio.run(main)
    except start_errors as exc:
        # At start-up: the port is taken (checked first), the database is unreachable, or the
        # access-log spool cannot be written.
        # One line that says so, for the operator; the traceback would only bury it.
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        return 1
    return 0


def _warn_about(settings: Settings) -> None:
    """What ``check-config`` warns about, in the start-up log: a required verifier that cannot
    block anything must not look like protection."""
    from verifiers.advice import settings_advice

    for item in settings_advice(settings):
        log.warning("settings: %s: %s", item.key, item.message)
