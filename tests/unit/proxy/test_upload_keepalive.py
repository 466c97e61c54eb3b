"""A chunk keeps its upload session alive while it streams (``kept_alive``), at no cost to the
chunks that end sooner than a third of the idle time, which are nearly all of them: each used
to wait a turn of the serving loop for the keep-alive task it had started to be cancelled."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp import web

from proxy import upload_sessions
from proxy.state import SERVICES
from proxy.upload_sessions import LastUse, kept_alive
from storage.replicas import Holder


def _request(idle: float) -> web.Request:
    uploads = SimpleNamespace(session_idle_seconds=idle)
    svc = SimpleNamespace(
        settings=SimpleNamespace(uploads=uploads),
        presence=SimpleNamespace(holder=Holder("replica-1", timedelta(seconds=30))),
    )
    return cast(web.Request, SimpleNamespace(config_dict={SERVICES: svc}))


@pytest.fixture
def touches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The touches the keep-alive makes (``bookkeep`` of ``storage.uploads.touch``)."""
    made: list[str] = []

    async def bookkeep(_request: Any, step: Any, *args: Any, **_kw: Any) -> None:
        made.append(step.__name__)

    monkeypatch.setattr(upload_sessions, "bookkeep", bookkeep)
    return made


async def test_a_short_chunk_ends_without_a_turn_of_the_loop(touches: list[str]) -> None:
    fresh = LastUse(0.0, 0.0)
    turned: list[bool] = []
    async with kept_alive(_request(900.0), "team/app", "u1", fresh):
        asyncio.get_running_loop().call_soon(turned.append, True)
    assert not turned  # the exit did not wait for the loop to run anything else
    assert touches == []


async def test_a_long_chunk_is_touched_until_it_ends(touches: list[str]) -> None:
    fresh = LastUse(0.0, 0.0)
    async with kept_alive(_request(0.06), "team/app", "u1", fresh):
        await asyncio.sleep(0.3)  # five times the third of the idle time: two touches at least
    made = len(touches)
    assert made >= 2 and set(touches) == {"touch"}
    await asyncio.sleep(0.1)
    assert len(touches) == made  # none after the chunk ended


async def test_a_session_not_used_lately_is_touched_first(touches: list[str]) -> None:
    async with kept_alive(_request(900.0), "team/app", "u1", LastUse(None, 0.0)):
        assert touches == ["touch"]
