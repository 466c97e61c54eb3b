"""An in-process gatekeeper with the console, users of every role, and browsers: each
:class:`Browser` is a cookie jar of its own, so several people can be signed in at once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.state import SERVICES, Services
from storage import verdicts
from storage.audit import AccessRecord, AuditQuery, query_records
from storage.verdicts import DecisionRecord, FindingRecord
from tests.support.admin_app import admin_client, seed_users
from verifiers.lifecycle import State

PASSWORD = "correct horse battery staple"
DIGEST = "sha256:" + "a" * 64
LAYER = "sha256:" + "b" * 64
POLICIES = [{"name": "all", "repositories": ["*"], "require": ["scan"]}]
USERS = {
    "tina": ["team/*=admin", "team/*=pull"],
    "gale": ["*=admin"],
    "audrey": ["team/*=auditor"],
    "quinn": ["team/*=quarantine-reader,pull"],
    "paul": ["*=pull,push"],
}
CSRF = re.compile(r'name="csrf" value="([^"]*)"')

Client = TestClient[Any, Any]


def services_of(client: Client) -> Services:
    server = client.server
    assert isinstance(server, TestServer)
    return server.app[SERVICES]


class Browser:
    """A person at the console: their own cookies, following no redirect unless asked."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    def url(self, path: str) -> str:
        return str(self.client.make_url(path))

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        kwargs.setdefault("allow_redirects", False)
        resp = await self.http.get(self.url(path), **kwargs)
        await resp.read()
        return resp

    async def post(
        self, path: str, data: dict[str, str], *, csrf: bool = True
    ) -> aiohttp.ClientResponse:
        form = {**data, "csrf": self.csrf} if csrf else data
        resp = await self.http.post(self.url(path), data=form, allow_redirects=False)
        await resp.read()
        return resp

    async def sign_in(self, name: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
        form = await self.get("/ui/login")
        match = CSRF.search(await form.text())
        assert match is not None, await form.text()
        resp = await self.http.post(
            self.url("/ui/login"),
            data={"username": name, "password": password, "csrf": match.group(1)},
            allow_redirects=False,
        )
        await resp.read()
        if resp.status == 303:
            page = await self.get("/ui/")
            found = CSRF.search(await page.text())
            self.csrf = found.group(1) if found else ""
        return resp

    async def close(self) -> None:
        await self.http.close()


async def seed(
    client: Client,
    repository: str,
    state: str = "quarantined",
    *,
    digest: str = DIGEST,
    findings: tuple[FindingRecord, ...] = (),
    reasons: tuple[str, ...] | None = None,
) -> None:
    record = DecisionRecord(
        state=State(state),
        reasons=reasons
        if reasons is not None
        else (("1 critical (CVE-1)",) if state == "quarantined" else ()),
        policy="all",
        policy_version="v",
        data_versions={"scan": "1"},
        outcomes=(
            {"verifier": "scan", "version": "1", "status": "ok", "detail": "", "findings": 1},
        ),
        findings=findings,
    )
    async with services_of(client).db() as session, session.begin():
        await verdicts.record_decision(session, repository, digest, record)


CRITICAL = FindingRecord(
    "scan",
    "CVE-1",
    "critical",
    "a bad package (fix: 1.2.3)",
    "usr/lib/libbad.so",
    "",
    "1.2.3",
    LAYER,
)


@pytest.fixture
async def console(
    fake_upstream: tuple[Any, TestServer], gatekeeper_client: Callable[..., Any]
) -> Client:
    client = await admin_client(gatekeeper_client, fake_upstream[1], POLICIES)
    await seed_users(client, USERS)
    for repository in ("team/app", "other/app"):
        await seed(client, repository, findings=(CRITICAL,))
    return client


@pytest.fixture
async def browser(console: Client) -> AsyncIterator[Callable[[], Browser]]:
    """Open browsers; each call is another person's."""
    opened: list[Browser] = []

    def make() -> Browser:
        opened.append(Browser(console))
        return opened[-1]

    yield make
    for b in opened:
        await b.close()


async def wait_rows(db: Any, count: int, **filters: Any) -> list[AccessRecord]:
    """Access-log rows matching ``filters`` (AuditQuery fields), once ``count`` are written
    (the writer batches); newest last."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        async with db() as session:
            rows = await query_records(session, AuditQuery(limit=1000, **filters))
        if len(rows) >= count or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.05)
