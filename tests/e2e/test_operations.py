"""Operating the gatekeeper: clean stop keeps every row, CLI, health and metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from storage.db import head_revision
from tests.support.database import Database
from tests.support.gatekeeper import make_gatekeeper
from tests.support.ocihttp import OCI_MANIFEST, push_image
from tests.support.registry import Registry
from tests.support.tlscert import self_signed

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def gatekeeper_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )


def test_clean_stop_writes_every_served_request(registry: Registry, tmp_path: Path) -> None:
    # A long flush interval: rows would still be queued in memory when SIGTERM arrives.
    gk = make_gatekeeper(
        tmp_path / "gk",
        registry.url,
        extra_env={"GATEKEEPER_AUDIT__FLUSH_INTERVAL_SECONDS": "60"},
    )
    ids = []
    with httpx.Client(base_url=gk.url) as http:
        for _ in range(40):
            ids.append(http.get("/v2/stop/manifests/missing").headers["X-Request-Id"])
    gk.stop()
    rows = gk.audit_rows("repository = 'stop'")
    assert sorted(r["request_id"] for r in rows) == sorted(ids)


def test_audit_cli_filters_and_formats(registry: Registry, tmp_path: Path) -> None:
    gk = make_gatekeeper(tmp_path / "gk", registry.url)
    try:
        with httpx.Client(base_url=gk.url) as http:
            digest, _ = push_image(http, "cli/app", "v1", [os.urandom(100)])
            http.get("/v2/cli/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
            http.get("/v2/cli/other/manifests/v1")
        gk.wait_audit(1, "repository = 'cli/other'")
    finally:
        gk.stop()
    env = {**gk.env}
    out = gatekeeper_cli(
        "audit", "--repository", "cli/app", "--action", "manifest.pull", "--json", env=env
    )
    assert out.returncode == 0, out.stderr
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert (row["repository"], row["digest"], row["status"]) == ("cli/app", digest, 200)
    table = gatekeeper_cli("audit", "--status", "404", env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["TIME", "IDENTITY", "METHOD", "ACTION"]
    assert len(lines) == 2 and "cli/other" in lines[1]
    bad = gatekeeper_cli("audit", "--since", "yesterday", env=env)
    assert bad.returncode == 2 and "not an ISO 8601 time" in bad.stderr


def test_check_config_names_the_bad_field_and_hides_secrets(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    good = tmp_path / "good.toml"
    good.write_text('upstream_url = "http://r:5000"\nupstream_password = "s3cr3t-value"\n')
    ok = gatekeeper_cli("check-config", str(good), env=env)
    assert ok.returncode == 0, ok.stderr
    assert "s3cr3t-value" not in ok.stdout + ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('listen = "everywhere"\n')
    failed = gatekeeper_cli("check-config", str(bad), env=env)
    assert failed.returncode == 2
    assert "listen" in failed.stderr and "host:port" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_db_upgrade_is_idempotent(fresh_db: Database) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "GATEKEEPER_DATABASE_URL": fresh_db.url,
    }
    for _ in range(2):
        out = gatekeeper_cli("db", "upgrade", env=env)
        assert out.returncode == 0, out.stderr
        assert f"revision {head_revision()}" in out.stdout


def test_health_readiness_and_metrics(registry: Registry, tmp_path: Path) -> None:
    gk = make_gatekeeper(tmp_path / "gk", registry.url)
    try:
        with httpx.Client(base_url=gk.url) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            ready = http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"] == {"upstream": "ok", "database": "ok"}
            http.get("/v2/")
            http.get("/v2/metrics/manifests/nope")
            text = http.get("/metrics").text
        assert 'gatekeeper_requests_total{action="api.version",status="200"} 1.0' in text
        assert 'gatekeeper_requests_total{action="manifest.pull",status="404"} 1.0' in text
        assert "gatekeeper_request_duration_seconds_bucket" in text
        # Operational endpoints are not registry access and stay out of the access log.
        assert gk.wait_audit(2) and all(
            not r["path"].startswith(("/healthz", "/readyz", "/metrics")) for r in gk.audit_rows()
        )
    finally:
        gk.stop()


def test_json_access_lines_on_the_log_stream(registry: Registry, tmp_path: Path) -> None:
    gk = make_gatekeeper(tmp_path / "gk", registry.url)
    try:
        with httpx.Client(base_url=gk.url) as http:
            rid = http.get("/v2/jsonlog/manifests/x").headers["X-Request-Id"]
    finally:
        gk.stop()
    lines = [
        json.loads(line.split("gatekeeper.access ", 1)[1])
        for line in gk.log_path.read_text().splitlines()
        if "gatekeeper.access " in line
    ]
    assert [line["request_id"] for line in lines] == [rid]
    assert lines[0]["action"] == "manifest.pull" and lines[0]["status"] == 404


def test_serves_https_with_configured_certificate(registry: Registry, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "tls")
    gk = make_gatekeeper(tmp_path / "gk", registry.url, tls=(cert, key))
    try:
        assert gk.url.startswith("https://")
        with httpx.Client(base_url=gk.url, verify=gk.verify) as http:  # type: ignore[arg-type]
            start = http.post("/v2/tls/app/blobs/uploads/")
            assert start.status_code == 202
            # Upload URLs point back at the gatekeeper over https.
            assert start.headers["Location"].startswith(f"{gk.url}/v2/tls/app/blobs/uploads/")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{gk.url}/v2/", verify=True)  # not a publicly trusted certificate
    finally:
        gk.stop()
