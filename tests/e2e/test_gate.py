"""The gate end to end: verdicts decide every way out of the registry."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.fixtures import running_gatekeeper
from tests.support.gatekeeper import Gatekeeper, run_cli, wait_state
from tests.support.ocihttp import OCI_MANIFEST, digest_of, image_config, push_image
from tests.support.registry import Registry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

FAKES = "tests.fakes.verifiers"
# A verifier runs only where a policy requires it: the broken ones are required where the tests
# break them (they pass every image without their label).
POLICIES = [
    {
        "name": "gate",
        "repositories": ["gate/*"],
        "require": ["config-sanity", "labels", "raises", "hangs"],
        "pending": "hold",
        "hold_seconds": 20,
    },
    {
        "name": "fail-open",
        "repositories": ["failopen/*"],
        "require": ["config-sanity", "raises", "hangs"],
        "verifiers": {"raises": {"on_error": "pass"}, "hangs": {"on_error": "pass"}},
        "hold_seconds": 20,
    },
    {
        "name": "blocking",
        "repositories": ["blocking/*"],
        "require": ["config-sanity"],
        "pending": "block",
    },
]
VERIFIERS = {
    "config-sanity": {},
    "labels": {"plugin": f"{FAKES}:LabelFindings"},
    "raises": {"plugin": f"{FAKES}:Raises"},
    "hangs": {"plugin": f"{FAKES}:Hangs", "timeout_seconds": 1},
}


def gate_env(**extra: str) -> dict[str, str]:
    return {
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_VERIFIERS": json.dumps(VERIFIERS),
        "GATEKEEPER_ADMIN_TOKEN": "test-admin-token",
        **extra,
    }


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    with running_gatekeeper(tmp_path_factory.mktemp("gate"), registry.url, gate_env()) as started:
        yield started


def push_labelled(
    http: httpx.Client, repo: str, tag: str, labels: dict[str, str]
) -> tuple[str, bytes, bytes]:
    layer = os.urandom(2048)
    digest, manifest = push_image(http, repo, tag, [layer], image_config(labels, layers=1))
    return digest, manifest, layer


CRITICAL = {
    "test.findings": json.dumps(
        [
            {"rule_id": "CVE-2099-0001", "severity": "critical", "title": "remote code execution"},
            {"rule_id": "CVE-2099-0002", "severity": "critical", "title": "another one"},
        ]
    )
}


def denied(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 403, resp.text
    error = resp.json()["errors"][0]
    assert error["code"] == "DENIED"
    return dict(error)


def test_failing_image_cannot_leave_by_any_path(gk: Gatekeeper) -> None:
    accept = {"Accept": OCI_MANIFEST}
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        digest, manifest, layer = push_labelled(http, "gate/bad", "v1", CRITICAL)
        by_tag = denied(http.get("/v2/gate/bad/manifests/v1", headers=accept))
        assert digest in by_tag["message"] and "quarantined" in by_tag["message"]
        assert "2 critical (CVE-2099-0001, CVE-2099-0002)" in by_tag["message"]
        assert f"gatekeeper quarantine release gate/bad@{digest}" in by_tag["message"]
        assert by_tag["detail"]["state"] == "quarantined"
        assert by_tag["detail"]["digest"] == digest and by_tag["detail"]["policy"] == "gate"
        by_digest = denied(http.get(f"/v2/gate/bad/manifests/{digest}", headers=accept))
        assert by_digest == by_tag
        head = http.head("/v2/gate/bad/manifests/v1", headers=accept)
        assert head.status_code == 403
        denied(http.get(f"/v2/gate/bad/blobs/{digest_of(layer)}"))
        mount = http.post(
            f"/v2/gate/elsewhere/blobs/uploads/?mount={digest_of(layer)}&from=gate/bad"
        )
        denied(mount)
        retag = http.put(
            "/v2/gate/copy/manifests/v1", content=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert "cannot be pushed elsewhere" in denied(retag)["message"]
    rows = gk.wait_audit(1, "action = 'verdict.quarantined' AND digest = :d", {"d": digest})
    assert rows and "CVE-2099-0001" in rows[0]["reason"] and rows[0]["identity"] == "gatekeeper"
    pulls = gk.wait_audit(2, "repository = 'gate/bad' AND action = 'manifest.pull'")
    assert (
        len(pulls) == 2
        and {r["decision"] for r in pulls} == {"deny"}
        and all(r["status"] == 403 for r in pulls)
    )


def test_passing_image_with_hold_is_pullable_right_after_push(gk: Gatekeeper) -> None:
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        _, manifest, layer = push_labelled(http, "gate/good", "v1", {})
        pulled = http.get("/v2/gate/good/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert pulled.status_code == 200, pulled.text
        assert pulled.content == manifest
        assert http.get(f"/v2/gate/good/blobs/{digest_of(layer)}").content == layer
    (row,) = gk.wait_audit(1, "repository = 'gate/good' AND action = 'manifest.pull'")
    assert row["decision"] == "allow"


def test_pending_with_block_policy_is_denied_at_once(gk: Gatekeeper) -> None:
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        push_labelled(http, "blocking/app", "v1", {})
        resp = http.get("/v2/blocking/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    if resp.status_code == 403:
        assert "still being verified" in resp.json()["errors"][0]["message"]
    else:  # the worker was faster than the pull; the verdict decided
        assert resp.status_code == 200


@pytest.mark.parametrize("label", ["test.raise", "test.hang"])
def test_broken_verifier_fails_closed(gk: Gatekeeper, label: str) -> None:
    verifier = {"test.raise": "raises", "test.hang": "hangs"}[label]
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        push_labelled(http, "gate/broken", label, {label: "1"})
        message = denied(
            http.get(f"/v2/gate/broken/manifests/{label}", headers={"Accept": OCI_MANIFEST})
        )["message"]
    assert f"verifier {verifier} failed" in message
    if label == "test.hang":
        assert "timed out after 1s" in message


@pytest.mark.parametrize("label", ["test.raise", "test.hang"])
def test_broken_verifier_set_to_fail_open_passes_and_says_so(gk: Gatekeeper, label: str) -> None:
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        digest, _, _ = push_labelled(http, "failopen/app", label, {label: "1"})
        resp = http.get(f"/v2/failopen/app/manifests/{label}", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200, resp.text
    verifier = {"test.raise": "raises", "test.hang": "hangs"}[label]
    said = f"failopen/app@{digest} passed although verifier {verifier} failed"
    # The verifying process logs it as it announces the verdict, which the waiting pull may
    # hear of (the verdict's notification) a moment before the line is written.
    wait_until(lambda: said in gk.log_path.read_text(), 30, f"the log line {said!r}")


def test_a_verifier_the_policy_does_not_require_does_not_run(gk: Gatekeeper) -> None:
    """``raises`` is enabled, but the ``blocking`` policy requires only config-sanity: an image
    labelled to crash it passes there, and its verdict has no outcome of it, not even a skip."""
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        digest, _, _ = push_labelled(http, "blocking/norun", "v1", {"test.raise": "1"})
    assert wait_state(gk, digest) == "passed"
    (verdict,) = gk.database.fetch("SELECT outcomes FROM verdicts WHERE digest = :d", {"d": digest})
    outcomes = verdict["outcomes"]
    ran = {o["verifier"] for o in (json.loads(outcomes) if isinstance(outcomes, str) else outcomes)}
    assert "raises" not in ran and "hangs" not in ran and "config-sanity" in ran, ran


def test_unmatched_repository_is_denied(gk: Gatekeeper) -> None:
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        push_labelled(http, "nopolicy/app", "v1", {})
        error = denied(http.get("/v2/nopolicy/app/manifests/v1", headers={"Accept": OCI_MANIFEST}))
    assert "no policy allows repository nopolicy/app" in error["message"]


def test_skopeo_shows_the_denial(gk: Gatekeeper) -> None:
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        digest, _, _ = push_labelled(http, "gate/skopeo", "v1", CRITICAL)
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{gk.host}/gate/skopeo:v1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "quarantined" in out.stderr and digest in out.stderr


def test_enroll_verifies_images_pushed_around_the_gatekeeper(
    gk: Gatekeeper, registry: Registry
) -> None:
    with httpx.Client(base_url=registry.url, timeout=60) as direct:
        good, _ = push_image(direct, "gate/legacy", "v1", [os.urandom(500)], image_config({}))
        bad, _ = push_image(direct, "gate/legacy", "v2", [os.urandom(500)], image_config(CRITICAL))
    out = run_cli(gk, "enroll", "--repository", "gate/legacy", "--verify-now", timeout=120)
    assert out.returncode == 0, out.stderr
    # The running gatekeeper's workers share the queue with --verify-now, so which process
    # verified which image varies; what matters is that both verdicts land.
    assert "1 repositories, 2 images queued" in out.stdout

    def settled() -> dict[str, str]:
        rows = gk.database.fetch(
            "SELECT digest, state FROM verdicts WHERE repository = :r", {"r": "gate/legacy"}
        )
        return {r["digest"]: r["state"] for r in rows}

    deadline = time.monotonic() + 30
    while "pending" in settled().values() and time.monotonic() < deadline:
        time.sleep(0.1)
    states = settled()
    assert states == {good: "passed", bad: "quarantined"}
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        assert (
            http.get("/v2/gate/legacy/manifests/v1", headers={"Accept": OCI_MANIFEST}).status_code
            == 200
        )
        denied(http.get("/v2/gate/legacy/manifests/v2", headers={"Accept": OCI_MANIFEST}))


def test_first_pull_of_an_image_pushed_around_the_gatekeeper_is_verified(
    gk: Gatekeeper, registry: Registry
) -> None:
    with httpx.Client(base_url=registry.url, timeout=60) as direct:
        digest, manifest = push_image(direct, "gate/around", "v1", [os.urandom(500)])
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        resp = http.get("/v2/gate/around/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200, resp.text
    assert resp.content == manifest
    events = gk.database.fetch(
        "SELECT event, reason FROM verdict_events WHERE digest = :d ORDER BY id", {"d": digest}
    )
    assert events[0] == {"event": "pending", "reason": "first pull of an image not seen before"}
    assert events[-1]["event"] == "passed"


def test_an_index_is_pullable_only_while_its_platform_images_are(gk: Gatekeeper) -> None:
    """Each platform image has its own verdict; the index is quarantined with the quarantined
    child's reasons, and follows it when an admin releases that child."""
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        good, good_manifest, _ = push_labelled(http, "gate/multi", "amd64", {})
        bad, bad_manifest, _ = push_labelled(http, "gate/multi", "arm64", CRITICAL)
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": good,
                        "size": len(good_manifest),
                        "platform": {"os": "linux", "architecture": "amd64"},
                    },
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": bad,
                        "size": len(bad_manifest),
                        "platform": {"os": "linux", "architecture": "arm64"},
                    },
                ],
            }
        ).encode()
        put = http.put(
            "/v2/gate/multi/manifests/v1",
            content=index,
            headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
        )
        assert put.status_code == 201, put.text
        accept = {"Accept": "application/vnd.oci.image.index.v1+json, " + OCI_MANIFEST}
        error = denied(http.get("/v2/gate/multi/manifests/v1", headers=accept))
        assert f"platform image {bad} (linux/arm64) is quarantined" in error["message"]
        assert "2 critical (CVE-2099-0001, CVE-2099-0002)" in error["message"]
        assert http.get(f"/v2/gate/multi/manifests/{good}", headers=accept).status_code == 200
        denied(http.get(f"/v2/gate/multi/manifests/{bad}", headers=accept))
        released = http.post(
            f"/admin/api/v1/images/gate/multi@{bad}/release",
            json={"reason": "accepted for the test"},
            headers={"Authorization": "Bearer test-admin-token"},
        )
        assert released.status_code == 200, released.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pulled = http.get("/v2/gate/multi/manifests/v1", headers=accept)
            if pulled.status_code == 200:
                break
            time.sleep(0.1)
        assert pulled.status_code == 200 and pulled.content == index
