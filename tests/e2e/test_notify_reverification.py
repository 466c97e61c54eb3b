"""``on_new_findings = "notify"`` on a full re-verification (a rescan, the periodic run): an
image that already passed stays pullable when new blocking findings appear, and the findings are
recorded and announced once; under the default policy the same image is quarantined."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import OCI_MANIFEST, image_config, push_image
from tests.support.registry import Registry
from tests.support.webhooks import Receiver

TOKEN = "notify-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAKES = "tests.fakes.verifiers"
NEW = "CVE-2099-0001"


@pytest.fixture(scope="module")
def findings_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("findings") / "findings.json"


@pytest.fixture(scope="module")
def gk(
    registry: Registry,
    receiver: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
    findings_file: Path,
) -> Iterator[Gatekeeper]:
    base = {"require": ["config-sanity", "file-findings"], "pending": "hold", "hold_seconds": 20}
    policies = [
        {"name": "notify", "repositories": ["notify/*"], "on_new_findings": "notify", **base},
        {"name": "strict", "repositories": ["strict/*"], **base},
    ]
    verifiers = {
        "config-sanity": {},
        "file-findings": {
            "plugin": f"{FAKES}:FileFindings",
            "options": {"path": str(findings_file)},
        },
    }
    webhook = {"url": receiver.url, "secret": "s" * 32, "retry_base_seconds": 0.2}
    env = {
        "GATEKEEPER_POLICIES": json.dumps(policies),
        "GATEKEEPER_VERIFIERS": json.dumps(verifiers),
        "GATEKEEPER_WEBHOOKS": json.dumps([webhook]),
        "GATEKEEPER_ADMIN_TOKEN": TOKEN,
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("gk-notify"), registry.url, extra_env=env)
    yield gatekeeper
    gatekeeper.stop()


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def verdict(http: httpx.Client, repo: str, digest: str) -> dict[str, object]:
    resp = http.get(f"/admin/api/v1/images/{repo}@{digest}", headers=AUTH)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def settled(gk: Gatekeeper) -> bool:
    """Every queued verification has run."""
    return not gk.database.fetch("SELECT id FROM jobs WHERE state IN ('queued', 'running')")


def test_notify_keeps_a_passed_image_pullable_on_reverification(
    gk: Gatekeeper, receiver: Receiver, findings_file: Path
) -> None:
    findings_file.unlink(missing_ok=True)
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        pushed = {}
        for repo in ("notify/app", "strict/app"):
            config = image_config(labels={"nonce": os.urandom(8).hex()})
            digest, _ = push_image(http, repo, "v1", [os.urandom(512)], config)
            pushed[repo] = digest
            pull = http.get(f"/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
            assert pull.status_code == 200, pull.text
        findings_file.write_text(
            json.dumps([{"rule_id": NEW, "severity": "critical", "title": "published today"}])
        )
        for _ in range(2):  # the second rescan finds nothing new: no second announcement
            for repo, digest in pushed.items():
                resp = http.post(f"/admin/api/v1/images/{repo}@{digest}/rescan", headers=AUTH)
                assert resp.status_code == 202, resp.text
            wait_for(lambda: settled(gk))
        strict = verdict(http, "strict/app", pushed["strict/app"])
        assert strict["state"] == "quarantined", strict
        notified = verdict(http, "notify/app", pushed["notify/app"])
        assert notified["state"] == "passed", notified
        assert NEW in json.dumps(notified["findings"])
        assert "notify only" in json.dumps(notified["reasons"])
        ok = http.get(
            f"/v2/notify/app/manifests/{pushed['notify/app']}", headers={"Accept": OCI_MANIFEST}
        )
        assert ok.status_code == 200, ok.text
        denied = http.get(
            f"/v2/strict/app/manifests/{pushed['strict/app']}", headers={"Accept": OCI_MANIFEST}
        )
        assert denied.status_code == 403, denied.text
    subject = f"notify/app@{pushed['notify/app']}"

    def delivered() -> list[str]:
        return [r.event["type"] for r in receiver.for_subject(subject) if r.answered == 200]

    wait_for(lambda: "image.new-findings" in delivered())
    time.sleep(1)  # a second announcement would be on its way by now
    kinds = delivered()
    got = receiver.for_subject(subject)
    assert kinds.count("image.new-findings") == 1, kinds
    assert NEW in json.dumps([r.event for r in got])
