"""In-process admin API tests share these: the app with client authentication on and no
verification workers, who calls (Basic credentials of a seeded user), the app's services, and
verdicts stored as a verification would store them."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import bcrypt
from aiohttp.test_utils import TestClient, TestServer

from proxy.state import SERVICES, Services
from storage import identities, verdicts
from storage.verdicts import DecisionRecord, FindingRecord
from verifiers.lifecycle import State

PASSWORD = "correct horse battery staple"
"""Every seeded user's password."""

Client = TestClient[Any, Any]


async def admin_client(
    gatekeeper_client: Callable[..., Awaitable[Client]],
    upstream: TestServer,
    policies: list[dict[str, Any]],
    admin_token: str | None = None,
) -> Client:
    """The app in front of ``upstream``: client authentication on, no verification workers
    (verdicts are seeded), ``policies``, and the admin token if given."""
    options = {"auth__enabled": "true", "verification__workers": "0"}
    if admin_token is not None:
        options["admin_token"] = admin_token
    return await gatekeeper_client(
        str(upstream.make_url("")), policies=json.dumps(policies), **options
    )


async def seed_users(client: Client, users: Mapping[str, Iterable[str]]) -> None:
    """Users with :data:`PASSWORD`, each bound by its grants, ``"pattern=action,action"``."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    async with svc(client).db() as session, session.begin():
        for name, grants in users.items():
            made = await identities.create(session, name, "user", hashed, [], None)
            for grant in grants:
                pattern, actions = grant.split("=")
                await identities.grant(session, made.subject, pattern, actions.split(","), made.id)


def as_user(name: str) -> dict[str, str]:
    raw = base64.b64encode(f"{name}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def svc(client: Client) -> Services:
    server = client.server
    assert isinstance(server, TestServer)
    return server.app[SERVICES]


async def seed_verdict(
    client: Client, repository: str, digest: str, *findings: FindingRecord
) -> None:
    """A verdict decided under the policy in force by one ``scan`` verifier: quarantined for
    the findings given, passed without any."""
    policy = svc(client).policies.match(repository)
    record = DecisionRecord(
        state=State.QUARANTINED if findings else State.PASSED,
        reasons=("1 critical (CVE-1)",) if findings else (),
        policy=policy.name,
        policy_version=policy.version,
        data_versions={"scan": "1"},
        outcomes=({"verifier": "scan", "version": "1", "status": "ok", "detail": ""},),
        findings=findings,
    )
    async with svc(client).db() as session, session.begin():
        await verdicts.record_decision(session, repository, digest, record)


async def effective_state(client: Client, repository: str, digest: str) -> State:
    async with svc(client).db() as session:
        found = await verdicts.get(session, repository, digest)
    assert found is not None
    return found.effective_state()
