"""The load balancer of docker-compose.yml, for real: nginx with ``deploy/nginx/gatekeeper.conf``
in front of two gatekeeper replicas sharing one PostgreSQL database.

There is no container engine here, so the compose file itself is only checked with
``docker-compose config``; the nginx file it mounts is run as is, with only the replicas'
host names and the listen port rewritten to loopback ports. Requests alternate between the
replicas (nginx's access log names the replica of each), so an upload started on one is
finished on the other, an image pushed on one is verified and pulled on either, and the shared
access log holds one row per request. With one replica gone, pulls still succeed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.audited import assert_one_row_each, audited_client
from tests.support.database import Database
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import OCI_MANIFEST, push_image
from tests.support.procs import free_port, wait_http
from tests.support.rawhttp import send_raw
from tests.support.registry import Registry

pytestmark = [
    pytest.mark.own_database(reason="its replicas share postgres_db whatever --db says"),
    pytest.mark.e2e,
    pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is not installed"),
]
ROOT = Path(__file__).resolve().parents[2]
LB_CONFIG = ROOT / "deploy" / "nginx" / "gatekeeper.conf"
REPLICAS = ("gatekeeper-1:5000", "gatekeeper-2:5000")
POLICY = json.dumps([{"name": "lb", "repositories": ["lb/*"], "require": ["config-sanity"]}])

_MAIN = """\
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format replica '$request_method $uri $status $upstream_addr';
    access_log {prefix}/access.log replica;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/gatekeeper.conf;
}}
"""


def loopback_config(text: str, replicas: list[Gatekeeper], port: int) -> str:
    """The deployment's file with each replica's service name and the listen port pointed at
    loopback; each rewrite must hit exactly once, so a changed file fails here, not later."""
    rewrites = [(name, gk.host) for name, gk in zip(REPLICAS, replicas, strict=True)]
    rewrites.append(("listen 5000;", f"listen 127.0.0.1:{port};"))
    for old, new in rewrites:
        assert text.count(old) == 1, f"{LB_CONFIG} should mention {old!r} once"
        text = text.replace(old, new)
    return text


@pytest.fixture
def replicas(
    registry: Registry, postgres_db: Database, tmp_path: Path
) -> Iterator[list[Gatekeeper]]:
    env = {"GATEKEEPER_POLICIES": POLICY}
    started: list[Gatekeeper] = []
    try:
        for n in (1, 2):
            started.append(
                make_gatekeeper(
                    tmp_path / f"gk{n}", registry.url, database=postgres_db, extra_env=env
                )
            )
        yield started
    finally:
        for gk in started:
            gk.stop()


@pytest.fixture
def balancer(replicas: list[Gatekeeper], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """nginx running the deployment's config; yields its URL and its access log."""
    prefix = (tmp_path / "nginx").resolve()
    prefix.mkdir()
    port = free_port()
    (prefix / "gatekeeper.conf").write_text(loopback_config(LB_CONFIG.read_text(), replicas, port))
    user = "user root;" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(_MAIN.format(user=user, prefix=prefix))
    command = ["nginx", "-e", str(prefix / "error.log"), "-p", str(prefix)]
    command += ["-c", str(prefix / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", timeout=10)
        yield url, prefix / "access.log"
    finally:
        process.send_signal(3)  # SIGQUIT: graceful stop, the access log is flushed
        process.wait(10)


def test_compose_file_is_valid_and_only_the_balancer_is_exposed() -> None:
    """What docs/deployment.md promises, read from the resolved compose file: one published
    port (the balancer's), registry and database on the internal network only, two replicas
    alike on one database with the registry's storage read-only, migrations run once first."""
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.skip("docker-compose is not installed (scripts/test installs it)")
    done = subprocess.run(
        [docker_compose, "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load(done.stdout)["services"]
    assert {name for name, s in services.items() if s.get("ports")} == {"lb"}
    for internal in ("registry", "postgres"):
        assert set(services[internal]["networks"]) == {"internal"}, internal
    replicas = [services["gatekeeper-1"], services["gatekeeper-2"]]
    assert replicas[0]["environment"] == replicas[1]["environment"]
    assert replicas[0]["environment"]["GATEKEEPER_DATABASE_URL"].startswith("postgresql")
    for replica in replicas:
        assert "registry-data:/var/lib/registry:ro" in replica["volumes"]
        assert replica["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Each replica's access-log spool outlives its container, and is its own.
    spool = replicas[0]["environment"]["GATEKEEPER_AUDIT__SPOOL_DIR"]
    mounts = [{v.split(":")[0] for v in r["volumes"] if f":{spool}" in v} for r in replicas]
    assert all(len(m) == 1 for m in mounts) and not mounts[0] & mounts[1], mounts
    assert services["migrate"]["command"] == ["db", "upgrade"]


def test_the_s3_override_keeps_the_gate_in_front() -> None:
    """docker-compose.s3.yml (docs/deployment.md, "The registry on object storage"): the
    registry on S3 with redirects on and a way out to the store, the replicas without a
    sendfile root, and still only the balancer published."""
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.skip("docker-compose is not installed (scripts/test installs it)")
    done = subprocess.run(
        [docker_compose, "-f", "docker-compose.yml", "-f", "docker-compose.s3.yml", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "S3_BUCKET": "registry",
            "S3_ACCESS_KEY": "key",
            "S3_SECRET_KEY": "secret",
        },
    )
    assert done.returncode == 0, done.stderr
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load(done.stdout)["services"]
    assert {name for name, s in services.items() if s.get("ports")} == {"lb"}
    registry = services["registry"]
    assert registry["environment"]["REGISTRY_STORAGE"] == "s3"
    assert registry["environment"]["REGISTRY_STORAGE_REDIRECT_DISABLE"] == "false"
    assert set(registry["networks"]) == {"internal", "objects"}
    assert set(services["postgres"]["networks"]) == {"internal"}
    for name in ("gatekeeper-1", "gatekeeper-2"):
        env = services[name]["environment"]
        assert env["GATEKEEPER_UPSTREAM_STORAGE_ROOT"] == ""
        assert env["GATEKEEPER_BLOB_REDIRECTS"] == "client"
        assert env["GATEKEEPER_DATABASE_URL"].startswith("postgresql")


def test_push_and_pull_through_the_load_balancer(
    replicas: list[Gatekeeper], balancer: tuple[str, Path]
) -> None:
    url, access_log = balancer
    accept = {"Accept": OCI_MANIFEST}
    client, recorder = audited_client(replicas[0])
    client.base_url = httpx.URL(url)
    with client:
        layer = os.urandom(300_000)
        digest, manifest = push_image(client, "lb/app", "v1", [layer])
        # Both replicas share the verdict: pulls alternate and each one is served.
        for _ in range(4):
            pulled = client.get("/v2/lb/app/manifests/v1", headers=accept)
            assert pulled.status_code == 200, pulled.text
            assert pulled.content == manifest
        layer_digest = json.loads(manifest)["layers"][0]["digest"]
        blob = client.get(f"/v2/lb/app/blobs/{layer_digest}")
        assert blob.status_code == 200 and blob.content == layer
        # One row per request in the shared access log, whichever replica wrote it.
        assert_one_row_each(replicas[0], recorder)

        lines = [line.split() for line in access_log.read_text().splitlines()]
        assert {line[3] for line in lines} == {gk.host for gk in replicas}, lines
        # Upload sessions are not tied to a replica: some upload was started on one replica
        # and finished on the other (round robin alternates them request by request).
        uploads = [line for line in lines if "/blobs/uploads/" in line[1]]
        pairs = zip(uploads[::2], uploads[1::2], strict=True)
        assert any(start[3] != end[3] for start, end in pairs), uploads

        # One replica gone: nginx sends the pulls to the other one.
        replicas[0].stop()
        for _ in range(3):
            pulled = client.get(f"/v2/lb/app/manifests/{digest}", headers=accept)
            assert pulled.status_code == 200, pulled.text


@pytest.mark.parametrize(
    ("size", "answered_by_gatekeeper"), [(12 * 1024, True), (64 * 1024, False)]
)
def test_oversized_headers_get_the_oci_envelope_through_the_balancer(
    replicas: list[Gatekeeper], balancer: tuple[str, Path], size: int, answered_by_gatekeeper: bool
) -> None:
    """Over the gatekeeper's limit but within nginx's, the gatekeeper answers (and records);
    over nginx's, nginx answers with the same envelope, not its HTML error page."""
    url, _ = balancer
    request = b"GET /v2/ HTTP/1.1\r\nHost: lb\r\nConnection: close\r\nX-Big: "
    answer = send_raw(httpx.URL(url).port or 80, request + b"b" * size + b"\r\n\r\n")
    status, headers, body = answer.status, answer.headers, answer.body
    assert status == 431, body[:300]
    assert headers["content-type"].startswith("application/json")
    assert headers["docker-distribution-api-version"] == "registry/2.0"
    (error,) = json.loads(body)["errors"]
    assert error["code"] == "UNSUPPORTED"
    assert ("x-request-id" in headers) is answered_by_gatekeeper
    if answered_by_gatekeeper:
        (row,) = replicas[0].wait_audit(1, "request_id = :id", {"id": headers["x-request-id"]})
        assert row["action"] == "request.unparsed"
