"""Start-up and shutdown of the app's resources (``proxy/app.py``): one exit stack, so a
start that fails half-way closes everything it had opened, and a stop closes everything."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import event

import proxy.app
import upstream.client
from config.settings import load_settings
from proxy.app import create_app
from storage.db import create_engine
from tests.support.database import Database
from tests.support.gatekeeper import TEST_KEY_ENCRYPTION_KEY, WARN_EVERYTHING
from upstream.tls import verifying_context


class Injected(Exception):
    """The failure a test injects into start-up."""


class Opened:
    """Every resource the start-up opens that has an observable closed state."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.connections = 0
        self.clients: list[Any] = []
        self.sessions: list[Any] = []
        monkeypatch.setattr(proxy.app, "create_engine", self._engine)
        for factory in (
            "make_token_client",
            "make_remote_client",
            "make_webhook_client",
            "make_mirror_client",
        ):
            monkeypatch.setattr(proxy.app, factory, self._keep(getattr(proxy.app, factory)))
        monkeypatch.setattr(
            proxy.app, "make_client_session", self._keep(upstream.client.make_client_session, True)
        )

    def _engine(self, url: str) -> Any:
        engine = create_engine(url)

        def opened(*_: Any) -> None:
            self.connections += 1

        def closed(*_: Any) -> None:
            self.connections -= 1

        event.listen(engine.sync_engine.pool, "connect", opened)
        event.listen(engine.sync_engine.pool, "close", closed)
        return engine

    def _keep(self, factory: Any, session: bool = False) -> Any:
        def make(*args: Any, **kwargs: Any) -> Any:
            made = factory(*args, **kwargs)
            (self.sessions if session else self.clients).append(made)
            return made

        return make

    def left_open(self) -> list[str]:
        open_now = [f"client {c!r}" for c in self.clients if not c.is_closed]
        open_now += [f"session {s!r}" for s in self.sessions if not s.closed]
        if self.connections:
            open_now.append(f"{self.connections} database connections")
        return open_now


def _settings(db: Database, tmp_path: Path) -> Any:
    return load_settings(
        env={
            "GATEKEEPER_UPSTREAM_URL": "http://127.0.0.1:9",
            "GATEKEEPER_DATABASE_URL": db.url,
            "GATEKEEPER_AUDIT__SPOOL_DIR": str(tmp_path / "spool"),
            "GATEKEEPER_POLICIES": WARN_EVERYTHING,
            "GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY": TEST_KEY_ENCRYPTION_KEY,
            "GATEKEEPER_ADVISORIES__MIRROR_URL": "https://mirror.invalid/PyPI/all.zip",
        }
    )


def _running() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def test_a_clean_start_and_stop_closes_everything(
    fresh_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = Opened(monkeypatch)
    before = _running()
    runner = web.AppRunner(create_app(_settings(fresh_db, tmp_path)))
    await runner.setup()
    # What the failure tests look for is there while the app runs.
    assert len(opened.clients) == 4 and len(opened.sessions) == 1
    assert opened.connections > 0 and _running() - before
    await runner.cleanup()
    assert opened.left_open() == []
    assert _running() - before == set()
    assert not list((tmp_path / "spool").glob("*.lock")), "the spool let its lock go"


@pytest.mark.parametrize(
    "step",
    ["replay", "build_verifiers", "build_scheduler", "after_policy_change"],
)
async def test_a_start_that_fails_half_way_closes_what_it_opened(
    step: str, fresh_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = Opened(monkeypatch)

    def fail(*_: Any, **__: Any) -> Any:
        raise Injected(step)

    monkeypatch.setattr(proxy.app, step, fail)
    before = _running()
    runner = web.AppRunner(create_app(_settings(fresh_db, tmp_path)))
    with pytest.raises(Injected):
        await runner.setup()
    assert opened.left_open() == []
    assert _running() - before == set(), "no background task outlives the failed start"
    # The spool is closed too: another start takes its lock and replays what it holds.
    await runner.cleanup()
    monkeypatch.undo()
    again = web.AppRunner(create_app(_settings(fresh_db, tmp_path)))
    await again.setup()
    await again.cleanup()


async def test_a_start_builds_one_tls_context(
    fresh_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[ssl.SSLContext] = []
    original = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    verifying_context.cache_clear()
    runner = web.AppRunner(create_app(_settings(fresh_db, tmp_path)))
    await runner.setup()
    await runner.cleanup()
    # Its four httpx clients share one (upstream/tls.py); each built its own before.
    assert len(built) == 1, f"{len(built)} TLS contexts built at start"
