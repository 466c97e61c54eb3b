"""Schemathesis against the admin API, in process: requests generated from the OpenAPI document
(valid and invalid ones) never cause a server error, and every answer has a status, content
type and body the document describes. The document is generated from the models the handlers
answer through, so this also exercises the handlers with inputs no hand-written test thought
of (paths with odd references, bodies at the edge of each field's limits)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.settings import load_settings
from proxy.admin.openapi import build
from proxy.app import create_app
from tests.support import database
from tests.support.gatekeeper import TEST_KEY_ENCRYPTION_KEY

TOKEN = "fuzz-admin-token"
POLICIES = [{"name": "all", "repositories": ["*"], "require": ["scan"]}]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_dict(build())


def _serve(
    app: web.Application, loop: asyncio.AbstractEventLoop, ready: list[str], up: threading.Event
) -> None:
    asyncio.set_event_loop(loop)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    host, port = runner.addresses[0][:2]
    ready.append(f"http://{host}:{port}")
    up.set()
    loop.run_forever()
    loop.run_until_complete(runner.cleanup())
    loop.close()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gatekeeper on a loopback port, served from its own thread and event loop (the
    generated requests are synchronous); its upstream is a closed port."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    values = {
        "GATEKEEPER_UPSTREAM_URL": "http://127.0.0.1:9",
        "GATEKEEPER_DATABASE_URL": database.fresh(tmp).url,
        "GATEKEEPER_AUDIT__SPOOL_DIR": str(tmp / "audit-spool"),
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_AUTH__ENABLED": "false",
        "GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY": TEST_KEY_ENCRYPTION_KEY,
        "GATEKEEPER_ADMIN_TOKEN": TOKEN,
        "GATEKEEPER_VERIFICATION__WORKERS": "0",
    }
    loop, ready, up = asyncio.new_event_loop(), list[str](), threading.Event()
    app = create_app(load_settings(env=values))
    thread = threading.Thread(target=_serve, args=(app, loop, ready, up), daemon=True)
    thread.start()
    assert up.wait(30), "the gatekeeper did not start"
    yield ready[0]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_the_admin_api_answers_as_documented(case: schemathesis.Case[Any], base_url: str) -> None:
    case.call_and_validate(
        base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS
    )
