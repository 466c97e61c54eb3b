"""The same proxy on PostgreSQL (asyncpg): migrations, manifest index, access log."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storage.db import head_revision
from tests.support import postgres
from tests.support.gatekeeper import make_gatekeeper
from tests.support.ocihttp import OCI_MANIFEST, push_image
from tests.support.registry import Registry

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not postgres.available(), reason="PostgreSQL is not installed"),
]


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[postgres.Postgres]:
    cluster = postgres.start_postgres(tmp_path_factory.mktemp("pg"))
    yield cluster
    cluster.stop()


def test_push_pull_and_access_log_on_postgres(
    registry: Registry, pg: postgres.Postgres, tmp_path: Path
) -> None:
    gk = make_gatekeeper(
        tmp_path / "gk", registry.url, extra_env={"GATEKEEPER_DATABASE_URL": pg.url}
    )
    try:
        with httpx.Client(base_url=gk.url) as http:
            digest, manifest = push_image(http, "pg/app", "v1", [os.urandom(1000)])
            pulled = http.get("/v2/pg/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
            assert pulled.content == manifest
            ids = [pulled.headers["X-Request-Id"]]
            ids.append(http.get(f"/v2/pg/app/referrers/{digest}").headers["X-Request-Id"])
    finally:
        gk.stop()
    assert pg.fetch("SELECT version_num FROM alembic_version") == [{"version_num": head_revision()}]
    (indexed,) = pg.fetch("SELECT digest, media_type FROM manifests WHERE repository = 'pg/app'")
    assert indexed == {"digest": digest, "media_type": OCI_MANIFEST}
    rows = pg.fetch(
        "SELECT request_id, action, digest FROM access_log WHERE request_id = ANY($1::text[])",
        ids,
    )
    assert sorted((r["action"], r["digest"]) for r in rows) == [
        ("manifest.pull", digest),
        ("referrers.list", digest),
    ]
    pushes = pg.fetch("SELECT count(*) AS n FROM access_log WHERE action = 'manifest.push'")
    assert pushes == [{"n": 1}]


def test_database_outage_fails_closed_and_recovers(
    registry: Registry, pg: postgres.Postgres, tmp_path: Path
) -> None:
    """Without its database the gatekeeper cannot know a verdict: pulls are denied with a clear
    503 DENIED (never served unverified, never a traceback), pushes fail cleanly, and both work
    again once the database is back."""
    policies = '[{"name": "all", "repositories": ["*"], "require": ["config-sanity"]}]'
    gk = make_gatekeeper(
        tmp_path / "gk",
        registry.url,
        extra_env={
            "GATEKEEPER_DATABASE_URL": pg.url,
            "GATEKEEPER_POLICIES": policies,
            # A verdict cached in the last second would still be served; this test is about
            # what happens without one.
            "GATEKEEPER_VERIFICATION__VERDICT_CACHE_SECONDS": "0",
        },
    )
    accept = {"Accept": OCI_MANIFEST}
    try:
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            digest, _ = push_image(http, "outage/app", "v1", [os.urandom(100)])
            assert http.get("/v2/outage/app/manifests/v1", headers=accept).status_code == 200
            pg.stop()
            try:
                pull = http.get(f"/v2/outage/app/manifests/{digest}", headers=accept)
                assert pull.status_code == 503, pull.text
                error = pull.json()["errors"][0]
                assert error["code"] == "DENIED" and digest in error["message"]
                assert "database is unavailable" in error["message"]
                push = http.put(
                    "/v2/outage/app/manifests/v2",
                    content=b'{"schemaVersion": 2}',
                    headers={"Content-Type": OCI_MANIFEST},
                )
                assert push.status_code in (400, 503)
                assert http.get("/readyz").status_code == 503
                # Referrers are gated like their subject: the gate cannot decide, so it denies.
                listing = http.get(f"/v2/outage/app/referrers/{digest}")
                assert listing.status_code == 503
                refused = listing.json()["errors"][0]
                assert refused["code"] == "DENIED" and digest in refused["message"]
                assert "database is unavailable" in refused["message"]
            finally:
                pg.start()
            assert http.get(f"/v2/outage/app/manifests/{digest}", headers=accept).status_code == 200
    finally:
        gk.stop()
