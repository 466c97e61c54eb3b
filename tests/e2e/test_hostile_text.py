"""Hostile text through a real gatekeeper and registry, read back by the CLI an admin uses.

An image's verifier findings and the requests' own text end up in the access log and on the
verdict; ``gatekeeper audit`` and ``gatekeeper quarantine list|show`` print them. An escape
sequence there would clear the admin's terminal, an encoded newline forge a table line, and
U+202E turn "passed" around. Each is shown escaped; admins' reasons and actors refuse them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.fixtures import raw_request
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli, wait_state
from tests.support.ocihttp import OCI_MANIFEST, image_config, push_image
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

TOKEN = "hostile-text-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLEAR_SCREEN = "\x1b[2J\x1b[H\x1bc"
RLO = "\u202e"
HOSTILE = [
    ("CVE-1" + CLEAR_SCREEN, "critical", "clears the screen" + CLEAR_SCREEN),
    ("CVE-2\n2030-01-01T00:00:00.000  admin", "critical", "forged\r\nline"),
    (f"CVE-3{RLO}dessap", "critical", f"all checks {RLO}deliaf"),
]
RAW = ("\x1b", "\x9b", RLO, "\r", "\x07")


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    policies = [{"name": "texts", "repositories": ["*"], "require": ["config-sanity", "labels"]}]
    verifiers = {"config-sanity": {}, "labels": {"plugin": "tests.fakes.verifiers:LabelFindings"}}
    env = {
        "GATEKEEPER_ADMIN_TOKEN": TOKEN,
        "GATEKEEPER_POLICIES": json.dumps(policies),
        "GATEKEEPER_VERIFIERS": json.dumps(verifiers),
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("texts"), registry.url, extra_env=env)
    yield gatekeeper
    gatekeeper.stop()


def admin(gk: Gatekeeper) -> dict[str, str]:
    """The environment of ``gatekeeper quarantine ...`` aimed at this gatekeeper."""
    return {"GATEKEEPER_ADMIN_TOKEN": TOKEN, "GATEKEEPER_ADMIN_URL": gk.url}


def push_hostile(gk: Gatekeeper, repo: str) -> str:
    found = [{"rule_id": r, "severity": s, "title": t} for r, s, t in HOSTILE]
    labels = {"test.findings": json.dumps(found), "test.repository": repo}  # one digest each
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        digest, _ = push_image(http, repo, "v1", [b"layer"], image_config(labels, layers=1))
    assert wait_state(gk, digest) == "quarantined"
    return digest


def assert_shown_escaped(out: str, rows: int | None = None) -> None:
    """Nothing that acts on a terminal is printed; what was there is visible as an escape."""
    assert not any(char in out for char in RAW), out
    assert "\\x1b[2J\\x1b[H\\x1bc" in out and "\\u202e" in out, out
    if rows is not None:
        assert len(out.splitlines()) == rows, out


def test_gatekeeper_audit_shows_request_and_image_text_escaped(gk: Gatekeeper) -> None:
    digest = push_hostile(gk, "texts/audit")
    # A request of its own, whose path carries the same bytes, percent-encoded.
    resp = raw_request(gk.port, "GET", "/v2/texts/audit/manifests/v1%1b[2J%1b[H%1bc%0a%E2%80%AE")
    assert resp.status == 400
    deadline = time.monotonic() + 10
    while not gk.audit_rows("action = 'verdict.quarantined' AND digest = :d", {"d": digest}):
        assert time.monotonic() < deadline, "no verdict row"
        time.sleep(0.1)
    rows = gk.audit_rows()
    quarantined = [r for r in rows if r["action"] == "verdict.quarantined"]
    assert RLO in quarantined[0]["reason"]  # stored as it came: the display escapes it

    table = run_cli(gk, "audit", "-n", str(len(rows)))
    assert table.returncode == 0, table.stderr
    assert_shown_escaped(table.stdout, rows=1 + len(rows))  # no forged line
    assert all(re.match(r"\d{4}-\d\d-\d\dT", line) for line in table.stdout.splitlines()[1:])
    # --json stays one JSON document per row, with the raw text in it (escaped by JSON).
    lines = run_cli(gk, "audit", "--json", "-n", str(len(rows))).stdout.splitlines()
    assert len(lines) == len(rows) and not any(char in "".join(lines) for char in RAW)
    assert any(RLO in (json.loads(line)["reason"] or "") for line in lines)
    paths = [json.loads(line)["path"] for line in lines]
    assert "/v2/texts/audit/manifests/v1\x1b[2J\x1b[H\x1bc\n\u202e" in paths


def test_quarantine_list_and_show_print_findings_escaped(gk: Gatekeeper) -> None:
    digest = push_hostile(gk, "texts/show")
    shown = run_cli(gk, "quarantine", "show", f"texts/show@{digest}", env=admin(gk))
    assert shown.returncode == 0, shown.stderr
    assert_shown_escaped(shown.stdout)
    assert "\\x0a2030-01-01T00:00:00.000  admin" in shown.stdout  # the would-be forged line
    listed = run_cli(gk, "quarantine", "list", "-r", "texts/show", env=admin(gk))
    assert listed.returncode == 0, listed.stderr
    assert not any(char in listed.stdout for char in RAW)
    assert len(listed.stdout.splitlines()) == 2, listed.stdout  # the header and one image


@pytest.mark.parametrize(
    "body",
    [
        {"reason": f"all checks {RLO}deliaf"},
        {"reason": "ok" + CLEAR_SCREEN},
        {"reason": "line one\nline two"},
        {"reason": "ok", "actor": f"alice{RLO}"},
        {"reason": "ok", "actor": "alice\x9b2J"},
    ],
)
def test_admin_reasons_and_actors_refuse_control_characters(
    gk: Gatekeeper, body: dict[str, str]
) -> None:
    digest = push_hostile(gk, "texts/refuse")
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        resp = http.post(
            f"/admin/api/v1/images/texts/refuse@{digest}/release", json=body, headers=AUTH
        )
        assert resp.status_code == 422, resp.text
        error = resp.json()["error"]
        field = "actor" if "actor" in body else "reason"
        assert error["code"] == "INVALID_FIELD" and error["message"].startswith(f"{field}:")
        assert "control" in error["message"]
        still = http.get(f"/admin/api/v1/images/texts/refuse@{digest}", headers=AUTH).json()
    assert still["state"] == "quarantined"


def test_the_cli_refuses_them_before_asking(gk: Gatekeeper) -> None:
    digest = push_hostile(gk, "texts/cli")
    ref = f"texts/cli@{digest}"
    for args in (("--reason", f"fine {RLO}"), ("--reason", "ok", "--actor", "a\x1b[2J")):
        done = run_cli(gk, "quarantine", "release", ref, *args, env=admin(gk))
        assert done.returncode == 2, done.stdout
        assert "control or bidirectional-control characters" in done.stderr
        assert "Traceback" not in done.stderr and not any(c in done.stderr for c in RAW)
    assert gk.audit_rows("action = 'admin.release' AND digest = :d", {"d": digest}) == []
    detail = json.loads(run_cli(gk, "quarantine", "show", ref, "--json", env=admin(gk)).stdout)
    assert detail["state"] == "quarantined"


def test_a_nul_in_a_media_type_or_filter_is_refused_before_the_database(gk: Gatekeeper) -> None:
    """PostgreSQL cannot store or compare text holding a NUL: such a manifest was stored by the
    registry and then answered 503 ("could not record it; push it again", forever), and such a
    referrers filter 503. Now the manifest is invalid before it goes upstream, the filter
    matches nothing, and the same on SQLite."""
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        subject, manifest = push_image(http, "nul/app", "v1", [b"a layer"], image_config({}))
        doc = json.loads(manifest)
        for field, value in (("artifactType", "application/a\x00b"), ("config", None)):
            bad = dict(doc)
            if value is None:
                bad["config"] = dict(doc["config"], mediaType="application/x\x00y")
            else:
                bad[field] = value
            body = json.dumps(bad).encode()
            resp = http.put(
                "/v2/nul/app/manifests/bad", content=body, headers={"Content-Type": OCI_MANIFEST}
            )
            assert resp.status_code == 400, resp.text
            error = resp.json()["errors"][0]
            assert error["code"] == "MANIFEST_INVALID" and "RFC 6838" in error["message"]
        tags = http.get("/v2/nul/app/tags/list")
        assert tags.status_code == 200 and tags.json()["tags"] == ["v1"], tags.text
        assert wait_state(gk, subject) == "passed"
        listed = http.get(f"/v2/nul/app/referrers/{subject}", params={"artifactType": "a\x00b"})
        assert listed.status_code == 200, listed.text
        assert listed.json()["manifests"] == []
        assert listed.headers["OCI-Filters-Applied"] == "artifactType"
