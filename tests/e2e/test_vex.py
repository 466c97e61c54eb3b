"""VEX at the gate, end to end through the real registry.

An image holding Debian 12's real ``cryptography`` 38.0.4 passes, then ``gatekeeper advisories
import`` of the real PYSEC-2023-254 (alias CVE-2023-49083) quarantines it. VEX attestations
are then pushed as OCI 1.1 referrers of it, in cosign's format (a Sigstore bundle holding a DSSE
in-toto statement with an OpenVEX predicate), each declaring CVE-2023-49083 ``not_affected``:

- one signed by a key the policy does not trust changes nothing: the image is still DENIED and
  the referrer carries a ``vex.untrusted-key`` finding;
- one signed by the key the policy trusts for VEX releases the image (a ``passed`` verdict
  decided again from stored findings, announced by a signed ``image.passed`` webhook; skopeo
  copies it), with the document's author, time and justification as the waiver's reason;
- that one does not travel: the same image in another repository stays DENIED, and the trusted
  signature on a statement naming another repository is refused there (``vex.wrong-subject``);
- deleting the referrer withdraws it, and the image is quarantined again;
- an admin adds a document for the other repository with ``gatekeeper quarantine vex add``,
  which lets the image out there, and ``vex withdraw`` quarantines it again;
- cosign's older layout (the envelope as a layer under the ``sha256-<hex>.att`` tag) works too.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clients import Skopeo
from tests.support.cosign import new_key, public_pem
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.layers import config_for, layer
from tests.support.ocihttp import OCI_MANIFEST, push_image
from tests.support.registry import Registry
from tests.support.testdata import OSV_PYPI
from tests.support.vex import (
    bundle,
    document,
    in_toto,
    push_attestation_tag,
    push_referrer,
    statement,
)
from tests.support.webhooks import SECRET, Receiver, check_signature

DIST = Path("/usr/lib/python3/dist-packages/cryptography-38.0.4.dist-info")
ADVISORY = "PYSEC-2023-254"
CVE = "CVE-2023-49083"
ACCEPT = {"Accept": OCI_MANIFEST}
TOKEN = "e2e-vex-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
TRUSTED = new_key()
REPOS = ("vex/app", "vex/copy")
WRITTEN = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
"""When the test's VEX documents say they were written (they lapse after ``expire_days``)."""

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.testdata,
    pytest.mark.skipif(not DIST.exists(), reason="needs Debian 12's python3-cryptography"),
]


@pytest.fixture(scope="module")
def gk(
    registry: Registry, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gatekeeper]:
    policy = {
        "name": "vex-trusting",
        "repositories": ["vex/*"],
        "require": ["inventory", "vulnerabilities"],
        "vex": {"keys": [public_pem(TRUSTED).decode()], "expire_days": 365},
    }
    env = {
        "GATEKEEPER_POLICIES": json.dumps([policy]),
        "GATEKEEPER_VERIFIERS": json.dumps({"inventory": {}, "vulnerabilities": {}}),
        "GATEKEEPER_ADMIN_TOKEN": TOKEN,
        "GATEKEEPER_WEBHOOKS": json.dumps(
            [{"url": receiver.url, "secret": SECRET, "retry_base_seconds": 0.2}]
        ),
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("vex"), registry.url, extra_env=env)
    yield gatekeeper
    gatekeeper.stop()


def one(gk: Gatekeeper, sql: str, **params: str) -> dict[str, Any] | None:
    rows = gk.database.fetch(sql, params)
    return rows[0] if rows else None


def wait_for(what: str, probe: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def busy(gk: Gatekeeper, repository: str, digest: str) -> bool:
    """A verification of the image is queued or running."""
    return bool(
        gk.database.fetch(
            "SELECT id FROM jobs WHERE repository = :r AND digest = :d "
            "AND state IN ('queued', 'running')",
            {"r": repository, "d": digest},
        )
    )


def states_after_first_pass(gk: Gatekeeper, repository: str, digest: str, since: int) -> list[str]:
    """The states the image's verdict took after it first passed (events after ``since``)."""
    rows = gk.database.fetch(
        "SELECT new_state FROM verdict_events WHERE repository = :r AND digest = :d "
        "AND id > :since ORDER BY id",
        {"r": repository, "d": digest, "since": since},
    )
    states = [row["new_state"] for row in rows]
    return states[states.index("passed") :] if "passed" in states else []


def last_event(gk: Gatekeeper, repository: str, digest: str) -> int:
    rows = gk.database.fetch(
        "SELECT max(id) AS last FROM verdict_events WHERE repository = :r AND digest = :d",
        {"r": repository, "d": digest},
    )
    return int(rows[0]["last"] or 0)


def verdict(gk: Gatekeeper, repository: str, digest: str) -> dict[str, Any] | None:
    return one(
        gk,
        "SELECT state, trigger FROM verdicts WHERE repository = :r AND digest = :d",
        r=repository,
        d=digest,
    )


def decided(gk: Gatekeeper, repository: str, digest: str) -> str:
    row = wait_for(
        f"a verdict on {repository}@{digest}",
        lambda: (v := verdict(gk, repository, digest)) and v["state"] != "pending" and v,
    )
    return str(row["state"])


def vex_findings(gk: Gatekeeper, repository: str, digest: str) -> dict[str, str]:
    rows = gk.database.fetch(
        "SELECT rule_id, title FROM findings WHERE repository = :r AND digest = :d "
        "AND verifier = 'vex'",
        {"r": repository, "d": digest},
    )
    return {row["rule_id"]: row["title"] for row in rows}


def findings_of(gk: Gatekeeper, repository: str, digest: str) -> list[dict[str, Any]]:
    return gk.database.fetch(
        "SELECT verifier, rule_id FROM findings WHERE repository = :r AND digest = :d",
        {"r": repository, "d": digest},
    )


def passed_events(receiver: Receiver, subject: str) -> list[Any]:
    return [
        r
        for r in receiver.for_subject(subject)
        if r.event["type"] == "image.passed" and r.answered == 200
    ]


def pull(gk: Gatekeeper, repository: str, digest: str) -> httpx.Response:
    return httpx.get(f"{gk.url}/v2/{repository}/manifests/{digest}", headers=ACCEPT, timeout=30)


def denied(resp: httpx.Response) -> str:
    assert resp.status_code == 403, resp.text
    (error,) = resp.json()["errors"]
    assert error["code"] == "DENIED"
    return str(error["message"])


@pytest.fixture(scope="module")
def quarantined(gk: Gatekeeper, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image in both repositories, quarantined by the advisory import only."""
    data, diff_id = layer(
        lambda tar: tar.add(str(DIST), f"usr/lib/python3/dist-packages/{DIST.name}")
    )
    with httpx.Client(base_url=gk.url, timeout=120) as http:
        for repository in REPOS:
            digest, _ = push_image(http, repository, "v1", [data], config_for([(data, diff_id)]))
    for repository in REPOS:
        assert decided(gk, repository, digest) == "passed"
    records = tmp_path_factory.mktemp("advisories")
    (records / f"{ADVISORY}.json").write_bytes((OSV_PYPI / f"{ADVISORY}.json").read_bytes())
    done = run_cli(gk, "advisories", "import", str(records), timeout=120)
    assert done.returncode == 0, done.stderr
    for repository in REPOS:
        row = verdict(gk, repository, digest)
        assert row is not None and row["state"] == "quarantined", row
        assert row["trigger"].startswith("advisory-import"), row
        assert ADVISORY in denied(pull(gk, repository, digest))
    return digest


def vex_for(digest: str, repository: str, author: str) -> dict[str, Any]:
    purl = f"pkg:oci/app@{urllib.parse.quote(digest)}"
    return document(
        statement(
            CVE,
            [purl],
            justification="vulnerable_code_not_in_execute_path",
            impact_statement="the PKCS12 parser is never called",
        ),
        author=author,
        timestamp=WRITTEN,
    )


def test_an_untrusted_key_changes_nothing_and_is_recorded(gk: Gatekeeper, quarantined: str) -> None:
    digest, repository = quarantined, "vex/app"
    statement_bytes = in_toto(
        vex_for(digest, repository, "Mallory"), digest, f"{gk.host}/{repository}"
    )
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        referrer = push_referrer(http, repository, digest, bundle(new_key(), statement_bytes))
    found = wait_for("the untrusted VEX finding", lambda: vex_findings(gk, repository, referrer))
    assert set(found) == {"vex.untrusted-key"}
    assert "no key policy vex-trusting trusts for VEX" in found["vex.untrusted-key"]
    assert ADVISORY in denied(pull(gk, repository, digest))
    assert verdict(gk, repository, digest)["state"] == "quarantined"  # type: ignore[index]
    assert gk.database.fetch("SELECT id FROM vex_documents", {}) == []


def assert_waiver_reason_names_the_author(gk: Gatekeeper) -> None:
    """The waiver the VEX made shows its author, time and justification as its reason."""
    effective = httpx.get(
        f"{gk.url}/admin/api/v1/policies?repository=vex/app", headers=ADMIN, timeout=30
    ).json()
    reasons = {w["finding"]: w["reason"] for w in effective["policy"]["waivers"]}
    assert reasons[CVE].endswith(
        f"by ACME PSIRT, {WRITTEN}: not_affected "
        "(vulnerable_code_not_in_execute_path: the PKCS12 parser is never called)"
    ), reasons


def assert_a_copy_elsewhere_changes_nothing(gk: Gatekeeper, digest: str, copy: str) -> None:
    """The same signed VEX attached in another repository is a finding there, not a waiver."""
    found = wait_for("the copy's finding", lambda: vex_findings(gk, "vex/copy", copy))
    assert set(found) == {"vex.wrong-subject"}, found
    assert "not repository vex/copy" in found["vex.wrong-subject"]
    assert ADVISORY in denied(pull(gk, "vex/copy", digest))


def test_a_trusted_key_releases_the_image_it_names_and_only_there(
    gk: Gatekeeper, quarantined: str, receiver: Receiver, tmp_path: Path
) -> None:
    digest = quarantined
    statement_bytes = in_toto(
        vex_for(digest, "vex/app", "ACME PSIRT"), digest, f"{gk.host}/vex/app"
    )
    signed = bundle(TRUSTED, statement_bytes)
    before = len(passed_events(receiver, f"vex/app@{digest}"))
    since = last_event(gk, "vex/app", digest)
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        trusted = push_referrer(http, "vex/app", digest, signed)
        # The same signed statement, attached to the same image in another repository.
        elsewhere = push_referrer(http, "vex/copy", digest, signed)

    wait_for(
        "the release",
        lambda: (v := verdict(gk, "vex/app", digest)) and v["state"] == "passed" and v,
    )
    # Pullable from the moment it passed: the re-verification the referrer push queued, begun
    # under the policy before the VEX, does not store its stale decision over the VEX's
    # (whichever of the two decided first).
    assert pull(gk, "vex/app", digest).status_code == 200
    wait_for("the re-verification", lambda: not busy(gk, "vex/app", digest))
    assert set(states_after_first_pass(gk, "vex/app", digest, since)) == {"passed"}
    # The finding is still there: the VEX waived it.
    rules = {f["rule_id"] for f in findings_of(gk, "vex/app", digest)}
    assert ADVISORY in rules, rules
    assert pull(gk, "vex/app", digest).status_code == 200
    Skopeo(tmp_path, [gk.host]).copy(
        f"docker://{gk.host}/vex/app@{digest}", f"oci:{tmp_path / 'out'}:app"
    )
    (sent, *_) = wait_for(
        "the image.passed webhook after the VEX",
        lambda: passed_events(receiver, f"vex/app@{digest}")[before:],
    )
    check_signature(sent)

    assert_waiver_reason_names_the_author(gk)
    assert_a_copy_elsewhere_changes_nothing(gk, digest, elsewhere)
    (stored,) = gk.database.fetch("SELECT scope, subject, author FROM vex_documents", {})
    assert (stored["scope"], stored["subject"], stored["author"]) == (
        "vex/app",
        digest,
        "ACME PSIRT",
    )

    # Deleting the referrer withdraws its VEX: the image is quarantined again.
    deleted = httpx.delete(f"{gk.url}/v2/vex/app/manifests/{trusted}", timeout=30)
    assert deleted.status_code == 202, deleted.text
    wait_for(
        "the withdrawal",
        lambda: (v := verdict(gk, "vex/app", digest)) and v["state"] == "quarantined" and v,
    )
    (withdrawn,) = gk.database.fetch("SELECT withdraw_reason FROM vex_documents", {})
    assert withdrawn["withdraw_reason"] == "its referrer manifest was deleted"
    assert ADVISORY in denied(pull(gk, "vex/app", digest))


def cli(gk: Gatekeeper, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        gk, "quarantine", "vex", *args, env={"GATEKEEPER_ADMIN_URL": gk.url}, timeout=120
    )


def test_an_admin_adds_and_withdraws_vex_from_the_command_line(
    gk: Gatekeeper, quarantined: str, tmp_path: Path
) -> None:
    """The image in vex/copy, still quarantined, is let out by a document an admin adds for
    that repository, and quarantined again when it is withdrawn."""
    digest = quarantined
    path = tmp_path / "copy.openvex.json"
    path.write_text(json.dumps(vex_for(digest, "vex/copy", "Platform team")))
    added = cli(gk, "add", str(path), "--scope", "vex/copy", "--reason", "reviewed")
    assert added.returncode == 0, added.stderr
    assert "by Platform team in vex/copy; " in added.stdout
    assert "(1 changed, 0 newly quarantined)" in added.stdout, added.stdout
    assert pull(gk, "vex/copy", digest).status_code == 200
    row = verdict(gk, "vex/copy", digest)
    assert row is not None and row["trigger"].startswith("VEX "), row
    vex_id = added.stdout.split(":", 1)[0].removeprefix("VEX ")

    listed = cli(gk, "list")
    assert listed.returncode == 0 and "vex/copy" in listed.stdout, listed.stdout
    gone = cli(gk, "withdraw", vex_id, "--reason", "the parser is reachable after all")
    assert gone.returncode == 0, gone.stderr
    assert "(1 changed, 1 newly quarantined)" in gone.stdout, gone.stdout
    assert ADVISORY in denied(pull(gk, "vex/copy", digest))


def test_cosigns_attestation_tag_layout_is_read_too(gk: Gatekeeper, quarantined: str) -> None:
    """The envelope as a layer of the ``sha256-<hex>.att`` manifest (cosign before bundles),
    signed by the trusted key, lets the image out of vex/copy (quarantined again above)."""
    digest = quarantined
    assert ADVISORY in denied(pull(gk, "vex/copy", digest))
    payload = in_toto(vex_for(digest, "vex/copy", "ACME PSIRT"), digest, f"{gk.host}/vex/copy")
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        push_attestation_tag(http, "vex/copy", digest, TRUSTED, payload)
    wait_for("the release", lambda: pull(gk, "vex/copy", digest).status_code == 200)
    (stored,) = gk.database.fetch(
        "SELECT subject, source FROM vex_documents WHERE scope = 'vex/copy' "
        "AND withdrawn_at IS NULL",
        {},
    )
    assert (stored["subject"], stored["source"]) == (digest, "referrer")
