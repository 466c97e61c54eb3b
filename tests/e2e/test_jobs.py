"""Verification jobs survive crashes, are shared by replicas, and read shared layers once."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.support.database import Database
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import OCI_MANIFEST, image_config, push_image
from tests.support.registry import Registry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e
FAKES = "tests.fakes.verifiers"


def env(
    policies: list[dict[str, object]], verifiers: dict[str, object], **extra: str
) -> dict[str, str]:
    return {
        "GATEKEEPER_POLICIES": json.dumps(policies),
        "GATEKEEPER_VERIFIERS": json.dumps(verifiers),
        **extra,
    }


def test_killed_gatekeeper_finishes_the_job_after_restart(
    registry: Registry, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    started.mkdir()
    settings = env(
        [
            {
                "name": "slow",
                "repositories": ["crash/*"],
                "require": ["slow"],
                "hold_seconds": 0,
                "pending": "block",
            }
        ],
        {"slow": {"plugin": f"{FAKES}:Slow", "options": {"started_dir": str(started)}}},
        GATEKEEPER_VERIFICATION__LEASE_SECONDS="2",
    )
    gk = make_gatekeeper(tmp_path / "gk", registry.url, extra_env=settings)
    try:
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            config = image_config({"test.sleep": "30"}, layers=1)
            digest, _ = push_image(http, "crash/app", "v1", [os.urandom(100)], config)
            marker = started / digest.replace(":", "-")
            wait_until(marker.exists, what="the verifier to start")
            gk.stop(signal.SIGKILL)
        # Same database; the rerun is capped at half a second so the test need not wait 30 s.
        gk.env["GATEKEEPER_VERIFIERS"] = json.dumps(
            {"slow": {"plugin": f"{FAKES}:Slow", "options": {"cap_seconds": 0.5}}}
        )
        gk.start()
        with httpx.Client(base_url=gk.url, timeout=120) as http:
            resp = http.get(f"/v2/crash/app/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
        # pending=block: the answer depends on timing; the job's fate does not.
        assert resp.status_code in (200, 403), resp.text
        jobs = wait_until(
            lambda: [r for r in _jobs(gk) if r["state"] == "done"], 30, "the job to finish"
        )
        (job,) = jobs
        assert job["digest"] == digest and job["attempts"] == 2
    finally:
        gk.stop()


def _jobs(gk: Gatekeeper) -> list[dict[str, object]]:
    return gk.database.fetch("SELECT * FROM jobs ORDER BY id")


@pytest.mark.own_database(reason="its gatekeepers share postgres_db whatever --db says")
def test_two_replicas_on_one_postgres_run_each_job_once(
    registry: Registry, postgres_db: Database, tmp_path: Path
) -> None:
    log = tmp_path / "layers.log"
    settings = env(
        [
            {
                "name": "replicas",
                "repositories": ["replica/*"],
                "require": ["counting-layers"],
                "hold_seconds": 30,
            }
        ],
        {"counting-layers": {"plugin": f"{FAKES}:CountingLayers", "options": {"log": str(log)}}},
        GATEKEEPER_VERIFICATION__WORKERS="3",
    )
    first = make_gatekeeper(tmp_path / "a", registry.url, extra_env=settings, database=postgres_db)
    second = make_gatekeeper(tmp_path / "b", registry.url, extra_env=settings, database=postgres_db)
    try:
        digests = []
        with httpx.Client(base_url=first.url, timeout=60) as http:
            for n in range(12):
                digest, _ = push_image(http, f"replica/app{n}", "v1", [os.urandom(500)])
                digests.append(digest)
        with httpx.Client(base_url=second.url, timeout=60) as http:
            for n, digest in enumerate(digests):
                resp = http.get(
                    f"/v2/replica/app{n}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
                )
                assert resp.status_code == 200, resp.text
        done = postgres_db.fetch(
            "SELECT digest, attempts, lease_owner FROM jobs WHERE state = 'done'"
        )
        assert sorted(r["digest"] for r in done) == sorted(digests)
        assert all(r["attempts"] == 1 for r in done)
        reads = Counter(line.split()[0] for line in log.read_text().splitlines())
        assert all(count == 1 for count in reads.values()), reads
        assert len(reads) == 12
    finally:
        first.stop()
        second.stop()


def test_shared_layers_are_read_once(registry: Registry, tmp_path: Path) -> None:
    log = tmp_path / "layers.log"
    settings = env(
        [
            {
                "name": "layers",
                "repositories": ["layers/*"],
                "require": ["counting-layers"],
                "hold_seconds": 30,
            }
        ],
        {"counting-layers": {"plugin": f"{FAKES}:CountingLayers", "options": {"log": str(log)}}},
    )
    gk = make_gatekeeper(tmp_path / "gk", registry.url, extra_env=settings)
    try:
        base = os.urandom(300_000)
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            for n in range(3):
                push_image(http, f"layers/svc{n}", "v1", [base, os.urandom(1000 + n)])
                resp = http.get(f"/v2/layers/svc{n}/manifests/v1", headers={"Accept": OCI_MANIFEST})
                assert resp.status_code == 200, resp.text
        reads = Counter(line.split()[0] for line in log.read_text().splitlines())
        assert len(reads) == 4  # the shared base plus three own layers
        assert set(reads.values()) == {1}
        sizes = {line.split()[1] for line in log.read_text().splitlines()}
        assert str(len(base)) in sizes  # it really streamed the layer
    finally:
        gk.stop()
