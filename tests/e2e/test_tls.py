"""TLS on the gatekeeper's own port: plain HTTP sent to it gets a readable answer (not an empty
reply), blobs from the registry's storage go out correct over TLS, and the admin commands
trust a private CA with ``--ca-file`` or ``GATEKEEPER_CA_FILE``."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.ocihttp import push_blob
from tests.support.rawhttp import send_raw
from tests.support.registry import Registry
from tests.support.tlscert import self_signed

pytestmark = pytest.mark.e2e
ADMIN_TOKEN = "tls-admin-token-0123456789"


@pytest.fixture(scope="module")
def tls_gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    workdir = tmp_path_factory.mktemp("tls")
    gk = make_gatekeeper(
        workdir,
        registry.url,
        storage_root=registry.storage_root,
        tls=self_signed(workdir / "tls"),
        extra_env={"GATEKEEPER_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    yield gk
    gk.stop()


def _ca(gk: Gatekeeper) -> Path:
    return Path(gk.env["GATEKEEPER_TLS_CERT"])


def _client(gk: Gatekeeper) -> httpx.Client:
    assert isinstance(gk.verify, ssl.SSLContext)
    return httpx.Client(base_url=gk.url, verify=gk.verify, timeout=60)


def test_plain_http_on_the_tls_port_gets_a_readable_400(tls_gk: Gatekeeper) -> None:
    answer = send_raw(tls_gk.port, f"GET /v2/ HTTP/1.1\r\nHost: {tls_gk.host}\r\n\r\n".encode())
    assert answer.status == 400, answer.raw[:300]
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["connection"] == "close"
    assert b'"code":"UNSUPPORTED"' in answer.body and b"https://" in answer.body
    request_id = answer.headers["x-request-id"]
    (row,) = tls_gk.wait_audit(1, "request_id = :id", {"id": request_id})
    assert row["action"] == "request.plain-http" and row["status"] == 400
    # TLS on the same port still works, on a fresh connection.
    with _client(tls_gk) as http:
        assert http.get("/v2/").status_code == 200


def test_blobs_from_storage_go_out_whole_over_tls(tls_gk: Gatekeeper) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    with _client(tls_gk) as http:
        digest = push_blob(http, "tls/blob", data)
        full = http.get(f"/v2/tls/blob/blobs/{digest}")
        part = http.get(f"/v2/tls/blob/blobs/{digest}", headers={"Range": "bytes=1048570-1048589"})
    assert full.status_code == 200 and full.content == data
    assert part.status_code == 206 and part.content == data[1048570:1048590]
    pulls = tls_gk.wait_audit(2, "action = 'blob.pull'")
    assert all(r["decision"].endswith(":sendfile") for r in pulls)
    assert sorted(r["bytes_out"] for r in pulls) == [20, len(data)]


@pytest.mark.parametrize("how", ["option", "environment"])
def test_admin_commands_trust_a_private_ca(tls_gk: Gatekeeper, how: str) -> None:
    base = {"GATEKEEPER_ADMIN_URL": tls_gk.url, "GATEKEEPER_ADMIN_TOKEN": ADMIN_TOKEN}
    untrusted = run_cli(tls_gk, "quarantine", "list", env=base)
    assert untrusted.returncode == 3, untrusted.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr or "certificate" in untrusted.stderr
    if how == "option":
        done = run_cli(tls_gk, "quarantine", "list", "--ca-file", str(_ca(tls_gk)), env=base)
    else:
        done = run_cli(
            tls_gk, "quarantine", "list", env={**base, "GATEKEEPER_CA_FILE": str(_ca(tls_gk))}
        )
    assert done.returncode == 0, done.stderr


def test_an_unreadable_ca_file_is_a_usage_error(tls_gk: Gatekeeper, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    done = run_cli(
        tls_gk,
        "quarantine",
        "list",
        "--ca-file",
        str(missing),
        env={"GATEKEEPER_ADMIN_URL": tls_gk.url, "GATEKEEPER_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    assert done.returncode == 2 and "cannot use the CA file" in done.stderr, done.stderr
