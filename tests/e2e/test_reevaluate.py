"""Re-evaluation end to end, through the real registry, with a wiretap on the upstream side.

Images holding Debian 12's real ``cryptography`` 38.0.4 dist-info (and one holding a made-up
``nofix-demo``) pass while the advisory store is empty. ``gatekeeper advisories import`` of the
real PYSEC-2023-254 (fixed in 41.0.6) and a record with no fix then re-decides them from the
stored inventory: the upstream sees no request at all for them (no manifest, no blob), each
newly quarantined image is announced by a signed webhook, a ``notify`` policy keeps its image
pullable and sends ``image.new-findings``, and ``unfixed = "report"`` lets the no-fix finding
through. Restarting with another policy re-decides from stored findings, again without a
request upstream; the admin API serves the stored inventory as CycloneDX.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.layers import config_for, layer
from tests.support.ocihttp import OCI_MANIFEST, push_image
from tests.support.registry import Registry
from tests.support.tap import Tap
from tests.support.testdata import OSV_PYPI
from tests.support.webhooks import SECRET, Receiver, check_signature

DIST = Path("/usr/lib/python3/dist-packages/cryptography-38.0.4.dist-info")
RECORDS = OSV_PYPI
ADVISORY = "PYSEC-2023-254"  # cryptography >= 3.1, < 41.0.6; CVSS 7.5 (HIGH)
NOFIX = "TEST-NOFIX-1"
TOKEN = "e2e-reevaluate-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not DIST.exists(), reason="needs Debian 12's python3-cryptography"),
]


def policy(name: str, pattern: str, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "repositories": [pattern],
        "require": ["inventory", "vulnerabilities"],
        "severity_threshold": "high",
        **options,
    }


LENIENT = {"vulnerabilities": {"unfixed": "report"}}
POLICIES = [
    policy("quarantine", "reeval/q/*"),
    policy("notify", "reeval/n/*", on_new_findings="notify"),
    policy("fixed-only", "reeval/f/*", verifiers=LENIENT),
]


@pytest.fixture(scope="module")
def tapped(
    registry: Registry, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gatekeeper, Tap]]:
    tap = Tap(registry.port)
    webhook = {"url": receiver.url, "secret": SECRET, "retry_base_seconds": 0.2}
    env = {
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_VERIFIERS": json.dumps({"inventory": {}, "vulnerabilities": {}}),
        "GATEKEEPER_WEBHOOKS": json.dumps([webhook]),
        "GATEKEEPER_ADMIN_TOKEN": TOKEN,
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("reeval"), tap.url, extra_env=env)
    yield gatekeeper, tap
    gatekeeper.stop()
    tap.close()


def cryptography_layer(tar: tarfile.TarFile) -> None:
    tar.add(str(DIST), f"usr/lib/python3/dist-packages/{DIST.name}")


def nofix_layer(tar: tarfile.TarFile) -> None:
    metadata = b"Metadata-Version: 2.1\nName: nofix-demo\nVersion: 1.0\n\nA demo.\n"
    info = tarfile.TarInfo("usr/lib/python3/dist-packages/nofix_demo-1.0.dist-info/METADATA")
    info.size = len(metadata)
    tar.addfile(info, io.BytesIO(metadata))


def nofix_record() -> dict[str, Any]:
    return {
        "id": NOFIX,
        "modified": "2026-01-01T00:00:00Z",
        "summary": "nofix-demo leaks everything",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "nofix-demo"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
            }
        ],
        "database_specific": {"severity": "HIGH"},
    }


def upstream_requests(tap: Tap) -> list[str]:
    """Every request the gatekeeper made upstream for the test's repositories."""
    return [f"{e.method} {e.target}" for e in tap.exchanges() if "/reeval/" in e.target]


def state(gk: Gatekeeper, repository: str, digest: str) -> dict[str, Any]:
    (row,) = gk.database.fetch(
        "SELECT state, reasons, trigger, data_versions FROM verdicts "
        "WHERE repository = :r AND digest = :d",
        {"r": repository, "d": digest},
    )
    return row


def findings(gk: Gatekeeper, repository: str, digest: str) -> list[dict[str, Any]]:
    return gk.database.fetch(
        "SELECT verifier, rule_id, fix FROM findings WHERE repository = :r AND digest = :d",
        {"r": repository, "d": digest},
    )


def events_for(receiver: Receiver, subject: str, kind: str, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in receiver.for_subject(subject) if r.event["type"] == kind]
        if any(r.answered == 200 for r in found):
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {kind} delivered for {subject}: {receiver.for_subject(subject)}")


@pytest.fixture(scope="module")
def pushed(tapped: tuple[Gatekeeper, Tap]) -> dict[str, str]:
    """Both images in every repository they are tested in, all passed: no advisory yet."""
    gk, _ = tapped
    crypto, nofix = layer(cryptography_layer), layer(nofix_layer)
    digests = {}
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        for repository, (data, diff_id) in {
            "reeval/q/app": crypto,
            "reeval/n/app": crypto,
            "reeval/f/app": crypto,
            "reeval/q/lib": nofix,
            "reeval/f/lib": nofix,
        }.items():
            digest, _ = push_image(http, repository, "v1", [data], config_for([(data, diff_id)]))
            digests[repository] = digest
    for repository, digest in digests.items():  # the same digest is in several repositories
        assert wait_verdict(gk, repository, digest) == "passed", repository
    return digests


def wait_verdict(gk: Gatekeeper, repository: str, digest: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = gk.database.fetch(
            "SELECT state FROM verdicts WHERE repository = :r AND digest = :d",
            {"r": repository, "d": digest},
        )
        if found and found[0]["state"] != "pending":
            return str(found[0]["state"])
        time.sleep(0.2)
    raise AssertionError(f"no verdict for {repository}@{digest}")


def run_gatekeeper(gk: Gatekeeper, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(gk, *args, timeout=120)


@pytest.mark.testdata
def test_import_reevaluates_without_any_upstream_request(
    tapped: tuple[Gatekeeper, Tap],
    pushed: dict[str, str],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    gk, tap = tapped
    (tmp_path / f"{ADVISORY}.json").write_bytes((RECORDS / f"{ADVISORY}.json").read_bytes())
    (tmp_path / f"{NOFIX}.json").write_text(json.dumps(nofix_record()))
    tap.clear()

    done = run_gatekeeper(gk, "advisories", "import", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "2 added" in done.stdout and "5 images re-evaluated" in done.stdout, done.stdout
    assert "0 images queued" in done.stdout, done.stdout

    expected = {
        "reeval/q/app": "quarantined",
        "reeval/n/app": "passed",  # notify: stays pullable
        "reeval/f/app": "quarantined",  # a fix exists, so it blocks even under fixed-only
        "reeval/q/lib": "quarantined",
        "reeval/f/lib": "passed",  # no fix known: reported, not blocking
    }
    for repository, wanted in expected.items():
        row = state(gk, repository, pushed[repository])
        assert row["state"] == wanted, (repository, row)
        assert row["trigger"].startswith("advisory-import (data version "), row
    lib = findings(gk, "reeval/f/lib", pushed["reeval/f/lib"])
    assert {(f["rule_id"], f["fix"]) for f in lib if f["verifier"] == "vulnerabilities"} == {
        (NOFIX, "")
    }
    app = findings(gk, "reeval/q/app", pushed["reeval/q/app"])
    assert (ADVISORY, "41.0.6") in {(f["rule_id"], f["fix"]) for f in app}

    for repository in ("reeval/q/app", "reeval/f/app", "reeval/q/lib"):
        (sent, *_) = events_for(receiver, f"{repository}@{pushed[repository]}", "image.quarantined")
        check_signature(sent)
        assert sent.event["data"]["reason"].startswith("advisory-import (data version ")
    subject = f"reeval/n/app@{pushed['reeval/n/app']}"
    (notified, *_) = events_for(receiver, subject, "image.new-findings")
    assert notified.event["data"]["new_state"] == "passed"
    assert ADVISORY in notified.event["data"]["reason"]

    assert upstream_requests(tap) == []  # no manifest, no blob: the stored inventory only

    accept = {"Accept": OCI_MANIFEST}
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        denied = http.get(f"/v2/reeval/q/app/manifests/{pushed['reeval/q/app']}", headers=accept)
        assert denied.status_code == 403 and ADVISORY in denied.json()["errors"][0]["message"]
        for repository in ("reeval/n/app", "reeval/f/lib"):
            pulled = http.get(f"/v2/{repository}/manifests/{pushed[repository]}", headers=accept)
            assert pulled.status_code == 200, (repository, pulled.text)


def test_policy_change_at_restart_redecides_from_stored_findings(
    tapped: tuple[Gatekeeper, Tap], pushed: dict[str, str], receiver: Receiver
) -> None:
    gk, tap = tapped
    gk.stop()
    tap.clear()
    changed = [
        policy("quarantine", "reeval/q/*"),
        policy("notify", "reeval/n/*"),  # now quarantines new findings
        policy("fixed-only", "reeval/f/*", verifiers=LENIENT, severity_threshold="critical"),
    ]
    gk.env["GATEKEEPER_POLICIES"] = json.dumps(changed)
    gk.start()

    notify = state(gk, "reeval/n/app", pushed["reeval/n/app"])
    assert notify["state"] == "quarantined", notify
    assert notify["trigger"].startswith("policy-change (policy notify version "), notify
    fixed = state(gk, "reeval/f/app", pushed["reeval/f/app"])
    assert fixed["state"] == "passed"  # HIGH is under the new "critical" threshold
    assert state(gk, "reeval/q/app", pushed["reeval/q/app"])["trigger"].startswith(
        "advisory-import"
    )  # its policy did not change: not re-decided
    assert upstream_requests(tap) == []  # no manifest, no blob: stored findings only
    events_for(receiver, f"reeval/n/app@{pushed['reeval/n/app']}", "image.quarantined")

    again = run_gatekeeper(gk, "policy", "reevaluate", "--url", gk.url, "--token", TOKEN)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("0 verdicts"), again.stdout  # all current already


def test_sbom_from_the_admin_api(tapped: tuple[Gatekeeper, Tap], pushed: dict[str, str]) -> None:
    gk, _ = tapped
    digest = pushed["reeval/q/app"]
    path = f"/admin/api/v1/repositories/reeval/q/app/manifests/{digest}/sbom"
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        resp = http.get(path, headers=ADMIN)
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"].startswith("application/vnd.cyclonedx+json")
        bom = resp.json()
        assert bom["bomFormat"] == "CycloneDX"
        names = {(c["name"], c.get("version")) for c in bom["components"]}
        assert ("cryptography", "38.0.4") in names
        printed = json.loads(run_gatekeeper(gk, "sbom", f"reeval/q/app@{digest}").stdout)
        assert bom["components"] == printed["components"]  # the document `gatekeeper sbom` prints
        assert http.get(path).status_code == 401
        missing = path.replace(digest, "sha256:" + "0" * 64)
        assert http.get(missing, headers=ADMIN).json()["error"]["code"] == "NOT_FOUND"
