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
