"""Admins release quarantined images: the admin API and the ``gatekeeper quarantine`` /
``gatekeeper policy`` CLI end to end, through a real gatekeeper in front of the real registry,
with fake verifiers deciding by the labels each test pushes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.admin.routes import ROUTES
from tests.support.fixtures import running_gatekeeper
from tests.support.gatekeeper import Gatekeeper, run_cli
from tests.support.ocihttp import OCI_MANIFEST, digest_of, image_config, push_image
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ACCEPT = {"Accept": OCI_MANIFEST}
API = "/admin/api/v1"
FAKES = "tests.fakes.verifiers"
POLICIES = [
    {
        "name": "adm",
        "repositories": ["adm/*"],
        # slow: a verifier runs only where it is required (it passes unless labelled to wait).
        "require": ["config-sanity", "labels", "slow"],
        "pending": "hold",
        "hold_seconds": 20,
    }
]


def findings(*items: tuple[str, str]) -> dict[str, str]:
    return {
        "test.findings": json.dumps(
            [{"rule_id": rule, "severity": sev, "title": f"{rule} title"} for rule, sev in items]
        )
    }


CRITICAL = findings(("CVE-2099-0001", "critical"), ("CVE-2099-0002", "critical"))
HIGH = findings(("CVE-2099-0100", "high"))


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the slow fake verifier marks each verification it starts."""
    return tmp_path_factory.mktemp("started")


@pytest.fixture(scope="module")
def gk(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory, started: Path
) -> Iterator[Gatekeeper]:
    verifiers = {
        "config-sanity": {},
        "labels": {"plugin": f"{FAKES}:LabelFindings"},
        "slow": {"plugin": f"{FAKES}:Slow", "options": {"started_dir": str(started)}},
    }
    env = {
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_VERIFIERS": json.dumps(verifiers),
        "GATEKEEPER_ADMIN_TOKEN": TOKEN,
    }
    with running_gatekeeper(tmp_path_factory.mktemp("admin"), registry.url, env) as gatekeeper:
        yield gatekeeper


@pytest.fixture
def http(gk: Gatekeeper) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gk.url, timeout=60) as client:
        yield client


def cli(gk: Gatekeeper, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    """``gatekeeper ...`` as an operator runs it: a separate process, settings from its env."""
    env = {
        "PATH": gk.env["PATH"],
        "PYTHONPATH": gk.env["PYTHONPATH"],
        "HOME": gk.env["HOME"],
        "GATEKEEPER_ADMIN_URL": gk.url,
        "GATEKEEPER_ADMIN_TOKEN": token,
    }
    return run_cli(gk, *args, env=env, replace_env=True)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def push(http: httpx.Client, repo: str, labels: dict[str, str]) -> tuple[str, bytes]:
    layer = os.urandom(2048)
    digest, _ = push_image(http, repo, "v1", [layer], image_config(labels, layers=1))
    return digest, layer


def pull_status(http: httpx.Client, repo: str, digest: str, layer: bytes) -> list[int]:
    """Status of a pull by tag, by digest, and of the layer blob by digest."""
    return [
        http.get(f"/v2/{repo}/manifests/v1", headers=ACCEPT).status_code,
        http.get(f"/v2/{repo}/manifests/{digest}", headers=ACCEPT).status_code,
        http.get(f"/v2/{repo}/blobs/{digest_of(layer)}").status_code,
    ]


def audit(
    http: httpx.Client, count: int, timeout: float = 10.0, **filters: str
) -> list[dict[str, Any]]:
    """Access-log rows through the admin API, waiting for the batched writer."""
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        resp = http.get(f"{API}/audit", params=filters, headers=AUTH)
        assert resp.status_code == 200, resp.text
        rows = resp.json()["records"]
        if len(rows) >= count:
            break
        time.sleep(0.05)
    return rows


def show(gk: Gatekeeper, ref: str) -> dict[str, Any]:
    return dict(json.loads(ok(cli(gk, "quarantine", "show", ref, "--json"))))


def test_release_lets_the_image_out_and_requarantine_takes_it_back(
    gk: Gatekeeper, http: httpx.Client
) -> None:
    digest, layer = push(http, "adm/release", CRITICAL)
    ref = f"adm/release@{digest}"
    assert pull_status(http, "adm/release", digest, layer) == [403, 403, 403]

    why = "false positive: the vulnerable code is not shipped"
    out = ok(cli(gk, "quarantine", "release", ref, "--reason", why, "--actor", "alice"))
    assert f"released {ref}" in out
    assert pull_status(http, "adm/release", digest, layer) == [200, 200, 200]

    ok(cli(gk, "quarantine", "requarantine", ref, "--reason", "the vendor says it is shipped"))
    assert pull_status(http, "adm/release", digest, layer) == [403, 403, 403]

    (request_row,) = audit(http, 1, action="admin.release", digest=digest)
    assert request_row["identity"] == "admin-token:alice" and request_row["reason"] == why
    assert request_row["status"] == 200 and request_row["repository"] == "adm/release"
    (event_row,) = audit(http, 1, action="verdict.released", digest=digest)
    assert event_row["identity"] == "admin-token:alice" and event_row["reason"] == why
    (request_row,) = audit(http, 1, action="admin.requarantine", digest=digest)
    assert request_row["identity"] == "admin-token"
    (event_row,) = audit(http, 1, action="verdict.requarantined", digest=digest)
    assert event_row["reason"] == "the vendor says it is shipped"

    history = show(gk, ref)["history"]
    assert [(h["event"], h["new_state"], h["actor"]) for h in history] == [
        ("pending", "pending", "gatekeeper"),
        ("quarantined", "quarantined", "gatekeeper"),
        ("released", "released", "admin-token:alice"),
        ("requarantined", "quarantined", "admin-token"),
    ]
    assert history[2]["reason"] == why
    table = ok(cli(gk, "quarantine", "show", ref))
    assert "CVE-2099-0001" in table and "quarantined" in table
    events = [line.split()[2] for line in table.split("history:")[1].splitlines()[2:]]
    assert events == ["pending", "quarantined", "released", "requarantined"]


def test_release_expires_and_the_image_is_quarantined_again(
    gk: Gatekeeper, http: httpx.Client
) -> None:
    digest, layer = push(http, "adm/expiry", CRITICAL)
    ref = f"adm/expiry@{digest}"
    assert pull_status(http, "adm/expiry", digest, layer) == [403, 403, 403]
    released = json.loads(
        ok(
            cli(
                gk,
                "quarantine",
                "release",
                ref,
                "--reason",
                "hotfix window",
                "--expires-in",
                "8s",
                "--json",
            )
        )
    )
    assert http.get(f"/v2/adm/expiry/manifests/{digest}", headers=ACCEPT).status_code == 200
    # The 200 above must come from the release, not from a slow machine's late clock: it was
    # answered before the release's end (the end the gatekeeper set, so a CLI slow to start
    # on a loaded machine does not count against the eight seconds).
    answered = datetime.now(UTC)
    assert answered < datetime.fromisoformat(released["release_expires"]), (
        "too slow to tell the release from its expiry"
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and pull_status(http, "adm/expiry", digest, layer) != [
        403,
        403,
        403,
    ]:
        time.sleep(0.2)
    assert pull_status(http, "adm/expiry", digest, layer) == [403, 403, 403]
    (expired,) = audit(http, 1, action="verdict.release-expired", digest=digest)
    assert expired["identity"] == "gatekeeper" and "expired" in expired["reason"]
    (release,) = audit(http, 1, action="admin.release", digest=digest)
    assert release["identity"] == "admin-token" and release["reason"] == "hotfix window"
    detail = show(gk, ref)
    assert detail["state"] == "quarantined" and detail["release_expires"] is None
    assert [h["event"] for h in detail["history"]][-2:] == ["released", "release-expired"]


def test_a_release_end_with_an_offset_is_that_instant_and_the_cap_holds_in_every_form(
    gk: Gatekeeper, http: httpx.Client
) -> None:
    """Ten minutes from now written with -10:00 is ten minutes from now (it once counted as ten
    hours ago, so the image stayed quarantined); 9999-12-31 is refused like 400 days are."""
    digest, layer = push(http, "adm/offset", CRITICAL)
    ref = f"adm/offset@{digest}"
    assert pull_status(http, "adm/offset", digest, layer) == [403, 403, 403]
    url = f"{API}/images/{ref}/release"
    for body, words in (
        ({"reason": "forever", "expires_at": "9999-12-31T00:00:00Z"}, "at most 366 days"),
        ({"reason": "forever", "expires_at": "9999-12-31T23:00:00-10:00"}, "out of range"),
        ({"reason": "forever", "expires_at": "9999-12-31"}, "zone offset"),
        ({"reason": "forever", "expires_in_seconds": 400 * 86400}, "expires_in_seconds"),
    ):
        refused = http.post(url, json=body, headers=AUTH)
        assert refused.status_code == 422, refused.text
        assert words in refused.json()["error"]["message"]
    too_long = cli(gk, "quarantine", "release", ref, "--reason", "r", "--expires-in", "400d")
    assert too_long.returncode == 2 and "at most 366 days" in too_long.stderr
    assert pull_status(http, "adm/offset", digest, layer) == [403, 403, 403]

    end = (datetime.now(UTC) + timedelta(minutes=10)).replace(microsecond=0)
    hawaii = end.astimezone(timezone(timedelta(hours=-10))).isoformat()
    ok(cli(gk, "quarantine", "release", ref, "--reason", "hotfix", "--expires-at", hawaii))
    assert pull_status(http, "adm/offset", digest, layer) == [200, 200, 200]
    detail = show(gk, ref)
    assert detail["effective_state"] == "released"
    assert datetime.fromisoformat(detail["release_expires"]) == end


def test_rescan_of_a_passed_image_never_makes_it_unpullable(
    gk: Gatekeeper, http: httpx.Client, started: Path
) -> None:
    digest, layer = push(http, "adm/rescan", {"test.sleep": "3"})
    assert pull_status(http, "adm/rescan", digest, layer) == [200, 200, 200]  # held, then passed
    before = show(gk, f"adm/rescan@{digest}")["decided_at"]
    marker = started / digest.replace(":", "-")
    marker.unlink()

    out = ok(cli(gk, "quarantine", "rescan", f"adm/rescan@{digest}", "--reason", "new feed"))
    assert "queued 1" in out
    statuses: list[int] = []
    rescan_started: float | None = None
    while rescan_started is None or time.monotonic() - rescan_started < 3.5:
        statuses.append(http.get("/v2/adm/rescan/manifests/v1", headers=ACCEPT).status_code)
        if rescan_started is None and marker.exists():
            rescan_started = time.monotonic()
        assert len(statuses) < 5000, "the rescan never started"
    assert set(statuses) == {200}, f"{statuses.count(403)} of {len(statuses)} pulls denied"
    deadline = time.monotonic() + 10
    while show(gk, f"adm/rescan@{digest}")["decided_at"] == before:
        assert time.monotonic() < deadline, "the rescan never finished"
        time.sleep(0.2)
    (row,) = audit(http, 1, action="verdict.rescan-requested", digest=digest)
    assert row["identity"] == "admin-token" and "new feed" in row["reason"]

    by_repo = json.loads(
        ok(cli(gk, "quarantine", "rescan", "--repository", "adm/rescan", "--json"))
    )
    assert by_repo["queued"] == 1
    everything = json.loads(ok(cli(gk, "quarantine", "rescan", "--all", "--json")))
    assert everything["queued"] >= 1


def test_policy_dry_run_reports_changes_and_changes_nothing(
    gk: Gatekeeper, http: httpx.Client, tmp_path: Path
) -> None:
    crit, crit_layer = push(http, "adm/dry-crit", CRITICAL)
    high, high_layer = push(http, "adm/dry-high", HIGH)
    assert pull_status(http, "adm/dry-crit", crit, crit_layer) == [403, 403, 403]
    assert pull_status(http, "adm/dry-high", high, high_layer) == [403, 403, 403]
    rows_before = len(audit(http, 0, digest=crit)) + len(audit(http, 0, digest=high))

    threshold = tmp_path / "threshold.toml"
    threshold.write_text(
        '[[policies]]\nname = "adm-critical-only"\nrepositories = ["adm/*"]\n'
        'require = ["config-sanity", "labels"]\nseverity_threshold = "critical"\n'
    )
    result = json.loads(ok(cli(gk, "policy", "test", "--file", str(threshold), "--json")))
    changed = {c["digest"]: c for c in result["changes"]}
    assert changed[high]["current"] == "quarantined" and changed[high]["would_be"] == "passed"
    assert changed[high]["policy"] == "adm-critical-only"
    assert crit not in changed

    waiver = tmp_path / "waiver.toml"
    waiver.write_text(
        '[[policies]]\nname = "adm-waived"\nrepositories = ["adm/*"]\n'
        'require = ["config-sanity", "labels"]\n'
        + "".join(
            f'[[policies.waivers]]\nfinding = "{cve}"\nreason = "not reachable"\n'
            'author = "security"\nexpires = 2099-01-01T00:00:00Z\n'
            for cve in ("CVE-2099-0001", "CVE-2099-0002")
        )
    )
    table = ok(cli(gk, "policy", "test", "--file", str(waiver)))
    assert "nothing was changed" in table
    line = next(line for line in table.splitlines() if crit in line)
    assert line.split()[1:3] == ["quarantined", "passed"]
    assert high not in table  # the waiver covers only the critical ones; the high still blocks
    current = json.loads(ok(cli(gk, "policy", "test", "--json")))
    assert {crit, high}.isdisjoint(c["digest"] for c in current["changes"])

    assert pull_status(http, "adm/dry-crit", crit, crit_layer) == [403, 403, 403]
    assert pull_status(http, "adm/dry-high", high, high_layer) == [403, 403, 403]
    assert show(gk, f"adm/dry-crit@{crit}")["state"] == "quarantined"
    assert show(gk, f"adm/dry-high@{high}")["state"] == "quarantined"
    verdict_rows = [
        r
        for d in (crit, high)
        for r in audit(http, 0, digest=d)
        if r["action"].startswith("verdict.") and r["action"] != "verdict.quarantined"
    ]
    assert verdict_rows == [] and rows_before > 0


def test_requests_without_the_token_are_refused(gk: Gatekeeper, http: httpx.Client) -> None:
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        resp = http.get(f"{API}/images", headers=headers)
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] == "UNAUTHORIZED"
    refused = cli(gk, "quarantine", "list", token="not-the-token")
    assert refused.returncode == 1 and "the admin token is not valid" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert "not-the-token" not in gk.log_path.read_text()
    rows = gk.audit_rows("action = 'admin.images' AND status = 401")
    assert len(rows) >= 2 and {r["identity"] for r in rows} == {"anonymous"}


def test_cli_reports_an_unreachable_gatekeeper(gk: Gatekeeper) -> None:
    result = run_cli(
        gk,
        "quarantine",
        "list",
        "--url",
        "http://127.0.0.1:9",
        env={"GATEKEEPER_ADMIN_TOKEN": TOKEN},
    )
    assert result.returncode == 3 and "cannot reach the gatekeeper" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_by_state_and_repository(gk: Gatekeeper, http: httpx.Client) -> None:
    digest, _ = push(http, "adm/listed", CRITICAL)
    http.get(f"/v2/adm/listed/manifests/{digest}", headers=ACCEPT)  # held until decided
    listed = json.loads(
        ok(
            cli(
                gk,
                "quarantine",
                "list",
                "--repository",
                "adm/listed",
                "--state",
                "quarantined",
                "--json",
            )
        )
    )
    assert [(v["digest"], v["state"]) for v in listed] == [(digest, "quarantined")]
    table = ok(cli(gk, "quarantine", "list", "--repository", "adm/listed"))
    assert f"adm/listed@{digest}" in table and "2 critical" in table


def test_openapi_lists_every_route(http: httpx.Client) -> None:
    resp = http.get(f"{API}/openapi.json", headers=AUTH)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    doc = resp.json()
    assert doc["openapi"].startswith("3.1")
    served = {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert served == {(route.method, route.template) for route in ROUTES}


def test_an_admin_hold_survives_passing_rescans(gk: Gatekeeper, http: httpx.Client) -> None:
    """A re-quarantine is an admin's decision (say, a compromise no verifier can see): a
    re-scan that passes must not quietly undo it; only a release does."""
    digest, layer = push(http, "adm/hold", {})
    ref = f"adm/hold@{digest}"
    assert pull_status(http, "adm/hold", digest, layer) == [200, 200, 200]
    ok(cli(gk, "quarantine", "requarantine", ref, "--reason", "signing key leaked"))
    before = show(gk, ref)["decided_at"]
    ok(cli(gk, "quarantine", "rescan", ref, "--reason", "routine"))
    deadline = time.monotonic() + 20
    while show(gk, ref)["decided_at"] == before:
        assert time.monotonic() < deadline, "the rescan never finished"
        time.sleep(0.2)
    verdict = show(gk, ref)
    assert verdict["state"] == "quarantined"
    assert "held in quarantine by admin-token" in verdict["reasons"][0]
    assert pull_status(http, "adm/hold", digest, layer) == [403, 403, 403]
    ok(cli(gk, "quarantine", "release", ref, "--reason", "new key rotated in"))
    assert pull_status(http, "adm/hold", digest, layer) == [200, 200, 200]
