"""In-process admin API tests share these: who calls (Basic credentials of a seeded user), the
app's services, and verdicts stored as a verification would store them."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from proxy.state import SERVICES, Services
from storage import verdicts
from storage.verdicts import DecisionRecord, FindingRecord
from verifiers.lifecycle import State

PASSWORD = "correct horse battery staple"
"""Every seeded user's password."""

Client = TestClient[Any, Any]


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
