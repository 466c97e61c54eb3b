"""Scoped administration and waivers end to end, through a real gatekeeper in front of the
real registry (with a wiretap on the upstream side): a team admin (``team/*=admin``) sees and
releases only ``team/`` images, an auditor reads and never acts, a waiver made over the API
lets a quarantined image out without a single upstream request (no layer is read) and its
withdrawal quarantines it again, and nobody waives outside their scope. Over the admin API and
the CLI; every action is an access-log row with the identity and reason."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.ocihttp import OCI_MANIFEST, digest_of, image_config, push_image
from tests.support.registry import Registry
from tests.support.tap import Tap

pytestmark = pytest.mark.e2e

TOKEN = "e2e-scoped-admin-token"
API = "/admin/api/v1"
ACCEPT = {"Accept": OCI_MANIFEST}
FAKES = "tests.fakes.verifiers"
POLICIES = [
    {
        "name": "strict",
        "repositories": ["*"],
        "require": ["config-sanity", "labels"],
        "pending": "hold",
        "hold_seconds": 20,
    }
]
CRITICAL = {
    "test.findings": json.dumps(
        [{"rule_id": "CVE-2099-0001", "severity": "critical", "title": "bad"}]
    )
}
GRANTS = {
    "ci": ["*=pull,push"],
    "tina": ["team/*=admin"],
    "audrey": ["team/*=auditor"],
}


@pytest.fixture(scope="module")
def tapped(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gatekeeper, Tap]]:
    tap = Tap(registry.port)
    env = {
        "GATEKEEPER_AUTH__ENABLED": "true",
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_VERIFIERS": json.dumps(
            {"config-sanity": {}, "labels": {"plugin": f"{FAKES}:LabelFindings"}}
        ),
        "GATEKEEPER_ADMIN_TOKEN": TOKEN,
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("scoped"), tap.url, extra_env=env)
    yield gatekeeper, tap
    gatekeeper.stop()
    tap.close()


@pytest.fixture(scope="module")
def gk(tapped: tuple[Gatekeeper, Tap]) -> Gatekeeper:
    return tapped[0]


def run(
    gk: Gatekeeper, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(gk, *args, env=env)


@pytest.fixture(scope="module")
def secrets(gk: Gatekeeper) -> dict[str, str]:
    """Each identity's password, as ``users create`` printed it once."""
    made = {}
    for name, grants in GRANTS.items():
        args = [a for g in grants for a in ("--grant", g)]
        done = run(gk, "users", "create", name, *args)
        assert done.returncode == 0, done.stderr
        made[name] = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)[1]
    return made


def basic(name: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


def push(gk: Gatekeeper, ci: str, repository: str, labels: dict[str, str]) -> tuple[str, bytes]:
    layer = os.urandom(2048)
    with httpx.Client(base_url=gk.url, headers=basic("ci", ci), timeout=60) as http:
        digest, _ = push_image(http, repository, "v1", [layer], image_config(labels, layers=1))
    return digest, layer


def pulls(gk: Gatekeeper, ci: str, repository: str, digest: str, layer: bytes) -> list[int]:
    """A pull by digest, manifest then layer, as the pushing robot."""
    with httpx.Client(base_url=gk.url, headers=basic("ci", ci), timeout=60) as http:
        return [
            http.get(f"/v2/{repository}/manifests/{digest}", headers=ACCEPT).status_code,
            http.get(f"/v2/{repository}/blobs/{digest_of(layer)}").status_code,
        ]


def quarantined(gk: Gatekeeper, secrets: dict[str, str], repository: str) -> tuple[str, bytes]:
    digest, layer = push(gk, secrets["ci"], repository, CRITICAL)
    assert pulls(gk, secrets["ci"], repository, digest, layer) == [403, 403]
    return digest, layer


def audit_rows(gk: Gatekeeper, count: int, **filters: str) -> list[dict[str, Any]]:
    """Access-log rows through the admin API (as a global admin), waiting for the writer."""
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        resp = httpx.get(
            f"{gk.url}{API}/audit", params=filters, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        rows = resp.json()["records"]
        if len(rows) >= count:
            break
        time.sleep(0.05)
    return rows


def user_token(gk: Gatekeeper, name: str, secret: str) -> str:
    """A token from the gatekeeper's token endpoint, as a team admin gets one for the CLI."""
    resp = httpx.get(f"{gk.url}/auth/token", headers=basic(name, secret))
    assert resp.status_code == 200, resp.text
    return str(resp.json()["token"])


def test_a_team_admin_releases_in_its_repositories_and_is_refused_elsewhere(
    gk: Gatekeeper, secrets: dict[str, str]
) -> None:
    team, team_layer = quarantined(gk, secrets, "team/app")
    other, other_layer = quarantined(gk, secrets, "other/app")
    tina = basic("tina", secrets["tina"])

    listed = httpx.get(f"{gk.url}{API}/images", headers=tina)
    assert listed.status_code == 200, listed.text
    repositories = {v["repository"] for v in listed.json()["images"]}
    assert repositories == {"team/app"}
    everything = httpx.get(f"{gk.url}{API}/images", headers={"Authorization": f"Bearer {TOKEN}"})
    assert {"team/app", "other/app"} <= {v["repository"] for v in everything.json()["images"]}

    why = "the team accepts it until the fix ships"
    refused = httpx.post(
        f"{gk.url}{API}/images/other/app@{other}/release", json={"reason": why}, headers=tina
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["message"] == (
        "other/app is outside what you may administer: tina may administer team/*"
    )
    assert pulls(gk, secrets["ci"], "other/app", other, other_layer) == [403, 403]

    released = httpx.post(
        f"{gk.url}{API}/images/team/app@{team}/release", json={"reason": why}, headers=tina
    )
    assert released.status_code == 200, released.text
    assert released.json()["released_by"] == "tina"
    assert pulls(gk, secrets["ci"], "team/app", team, team_layer) == [200, 200]

    (done,) = audit_rows(gk, 1, action="admin.release", digest=team)
    assert (done["identity"], done["reason"], done["status"]) == ("tina", why, 200)
    (denied,) = audit_rows(gk, 1, action="admin.release", digest=other)
    assert denied["identity"] == "tina" and denied["status"] == 403
    assert "tina may administer team/*" in denied["reason"]


def test_a_team_admin_uses_the_cli_with_a_token_of_its_own(
    gk: Gatekeeper, secrets: dict[str, str]
) -> None:
    team, _ = quarantined(gk, secrets, "team/cli")
    other, _ = quarantined(gk, secrets, "other/cli")
    env = {"GATEKEEPER_ADMIN_URL": gk.url}
    env["GATEKEEPER_ADMIN_TOKEN"] = user_token(gk, "tina", secrets["tina"])
    listed = run(gk, "quarantine", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert {v["repository"] for v in json.loads(listed.stdout)} <= {"team/app", "team/cli"}
    refused = run(gk, "quarantine", "release", f"other/cli@{other}", "--reason", "r", env=env)
    assert refused.returncode == 1
    assert "tina may administer team/*" in refused.stderr and "HTTP 403" in refused.stderr
    done = run(gk, "quarantine", "release", f"team/cli@{team}", "--reason", "ok", env=env)
    assert done.returncode == 0, done.stderr
    assert f"released team/cli@{team} (by tina)" in done.stdout


def test_an_auditor_reads_and_cannot_release(gk: Gatekeeper, secrets: dict[str, str]) -> None:
    digest, layer = quarantined(gk, secrets, "team/audited")
    audrey = basic("audrey", secrets["audrey"])
    shown = httpx.get(f"{gk.url}{API}/images/team/audited@{digest}", headers=audrey)
    assert shown.status_code == 200, shown.text
    detail = shown.json()
    assert detail["state"] == "quarantined"
    assert [f["rule_id"] for f in detail["findings"]] == ["CVE-2099-0001"]
    assert [h["event"] for h in detail["history"]] == ["pending", "quarantined"]

    refused = httpx.post(
        f"{gk.url}{API}/images/team/audited@{digest}/release",
        json={"reason": "looks fine to me"},
        headers=audrey,
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["message"] == (
        "admin.release needs the admin role; audrey administers nothing (it may read team/*)"
    )
    assert pulls(gk, secrets["ci"], "team/audited", digest, layer) == [403, 403]

    rows = httpx.get(f"{gk.url}{API}/audit", params={"limit": 1000}, headers=audrey)
    assert rows.status_code == 200
    seen = {r["repository"] for r in rows.json()["records"]}
    assert "team/audited" in seen and all(r.startswith("team/") for r in seen)
    elsewhere = httpx.get(f"{gk.url}{API}/images/other/app@{digest}", headers=audrey)
    assert elsewhere.status_code == 403
    (row,) = audit_rows(gk, 1, action="admin.release", digest=digest)
    assert row["identity"] == "audrey" and row["status"] == 403


def upstream_requests(tap: Tap, repository: str) -> list[str]:
    """Every request the gatekeeper made upstream about ``repository``."""
    return [f"{e.method} {e.target}" for e in tap.exchanges() if f"/{repository}/" in e.target]


def test_a_waiver_lets_an_image_out_without_reading_a_layer_until_it_is_withdrawn(
    tapped: tuple[Gatekeeper, Tap], secrets: dict[str, str]
) -> None:
    gk, tap = tapped
    digest, layer = quarantined(gk, secrets, "team/waived")
    env = {"GATEKEEPER_ADMIN_URL": gk.url}
    env["GATEKEEPER_ADMIN_TOKEN"] = user_token(gk, "tina", secrets["tina"])
    why = "CVE-2099-0001 is not reachable: the parser is never called"
    tap.clear()

    made = run(
        gk,
        "quarantine",
        "waive",
        "labels:CVE-2099-0001",
        "--scope",
        "team/waived",
        "--reason",
        why,
        "--expires-in",
        "1d",
        "--json",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    waiver_id = result["waiver"]["id"]
    assert result["waiver"]["author"] == "tina" and result["reevaluation"]["changed"] == 1
    assert upstream_requests(tap, "team/waived") == []  # decided from stored findings only
    assert pulls(gk, secrets["ci"], "team/waived", digest, layer) == [200, 200]

    listed = run(gk, "quarantine", "waivers", "list", "--repository", "team/waived", env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = listed.stdout.splitlines()[1:]
    assert row.split()[:4] == [str(waiver_id), "labels:CVE-2099-0001", "team/waived", "active"]

    tap.clear()
    gone = run(
        gk, "quarantine", "waivers", "withdraw", str(waiver_id), "--reason", "reachable", env=env
    )
    assert gone.returncode == 0, gone.stderr
    assert "1 changed, 1 newly quarantined" in gone.stdout
    assert upstream_requests(tap, "team/waived") == []
    assert pulls(gk, secrets["ci"], "team/waived", digest, layer) == [403, 403]

    (waived,) = audit_rows(gk, 1, action="admin.waive", repository="team/waived")
    assert (waived["identity"], waived["reason"], waived["status"]) == ("tina", why, 201)
    (withdrawn,) = audit_rows(gk, 1, action="admin.waiver-withdraw", repository="team/waived")
    assert (withdrawn["identity"], withdrawn["reason"]) == ("tina", "reachable")
    changes = audit_rows(gk, 2, digest=digest, identity="gatekeeper")
    events = [(r["action"], r["reason"].split(" (policy ")[0]) for r in changes][-2:]
    assert events == [
        ("verdict.passed", f"waiver {waiver_id} of labels:CVE-2099-0001 made by tina"),
        ("verdict.quarantined", f"waiver {waiver_id} of labels:CVE-2099-0001 withdrawn by tina"),
    ]


def test_nobody_waives_outside_their_scope(gk: Gatekeeper, secrets: dict[str, str]) -> None:
    digest, layer = quarantined(gk, secrets, "other/unwaived")
    tina = basic("tina", secrets["tina"])
    for scope in ("*", "other/*", "other/unwaived", "t*"):
        body = {"finding": "CVE-2099-0001", "scope": scope, "reason": "mine now"}
        refused = httpx.post(f"{gk.url}{API}/waivers", json=body, headers=tina)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["message"] == (
            f"{scope} is outside what you may administer: tina may administer team/*"
        )
    body = {"finding": "CVE-2099-0001", "scope": "team/*", "reason": "I only read"}
    audrey = httpx.post(
        f"{gk.url}{API}/waivers", json=body, headers=basic("audrey", secrets["audrey"])
    )
    assert audrey.status_code == 403
    env = {"GATEKEEPER_ADMIN_URL": gk.url}
    env["GATEKEEPER_ADMIN_TOKEN"] = user_token(gk, "tina", secrets["tina"])
    cli = run(gk, "quarantine", "waive", "CVE-2099-0001", "-s", "*", "--reason", "r", env=env)
    assert cli.returncode == 1 and "tina may administer team/*" in cli.stderr
    assert pulls(gk, secrets["ci"], "other/unwaived", digest, layer) == [403, 403]
    (row,) = audit_rows(gk, 1, action="admin.waive", repository="other/*")
    assert row["identity"] == "tina" and row["status"] == 403
    everything = httpx.get(
        f"{gk.url}{API}/waivers",
        params={"all": "true"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert all(w["scope"].startswith("team/") for w in everything.json()["waivers"])
