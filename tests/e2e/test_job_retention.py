"""Finished verification jobs are deleted once past ``verification.keep_finished_jobs_days``
(at start-up, then hourly), through a real gatekeeper and registry: the queue's table stays
bounded, while verdicts, their history and what may be pulled are untouched."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.support.fixtures import running_gatekeeper
from tests.support.gatekeeper import Gatekeeper
from tests.support.ocihttp import OCI_MANIFEST, push_image, tar_layer
from tests.support.registry import Registry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

POLICY = json.dumps([{"name": "sane", "repositories": ["keep/*"], "require": ["config-sanity"]}])


def _jobs(gk: Gatekeeper, digest: str) -> list[str]:
    """The states of the image's jobs, oldest first."""
    rows = gk.database.fetch("SELECT state FROM jobs WHERE digest = :d ORDER BY id", {"d": digest})
    return [str(row["state"]) for row in rows]


def test_old_finished_jobs_are_forgotten_and_the_image_stays_as_it_was(
    registry: Registry, tmp_path: Path
) -> None:
    env = {"GATEKEEPER_POLICIES": POLICY, "GATEKEEPER_VERIFICATION__KEEP_FINISHED_JOBS_DAYS": "7"}
    with running_gatekeeper(tmp_path, registry.url, env) as gk:
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            old, _ = push_image(http, "keep/old", "v1", [tar_layer({"a": b"old\n"})[0]])
            recent, _ = push_image(http, "keep/recent", "v1", [tar_layer({"b": b"new\n"})[0]])
            for digest in (old, recent):
                wait_until(partial(_done, gk, digest), 60, f"the verification of {digest}")
        history = gk.database.fetch(
            "SELECT new_state FROM verdict_events WHERE digest = :d ORDER BY id", {"d": old}
        )
        gk.stop()
        # The first image's job finished eight days ago, the second's six.
        for digest, days in ((old, 8), (recent, 6)):
            gk.database.execute(
                "UPDATE jobs SET updated_at = :t WHERE digest = :d",
                {"t": _days_ago(gk.database.path is None, days), "d": digest},
            )
        gk.start()
        wait_until(lambda: not _jobs(gk, old), 30, "the old job to be forgotten")
        assert _jobs(gk, recent) == ["done"]
        # Nothing else changed: the verdict, its history, the pull.
        after = gk.database.fetch(
            "SELECT new_state FROM verdict_events WHERE digest = :d ORDER BY id", {"d": old}
        )
        assert after == history and history[-1]["new_state"] == "passed"
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            pulled = http.get(f"/v2/keep/old/manifests/{old}", headers={"Accept": OCI_MANIFEST})
            assert pulled.status_code == 200, pulled.text
        assert "forgot 1 jobs finished before" in gk.log_path.read_text()


def _done(gk: Gatekeeper, digest: str) -> bool:
    return _jobs(gk, digest) == ["done"]


def _days_ago(postgres: bool, days: int) -> datetime | str:
    """That moment as the database's driver takes it: SQLite keeps UTC as text."""
    moment = datetime.now(UTC) - timedelta(days=days)
    return moment if postgres else moment.strftime("%Y-%m-%d %H:%M:%S.%f")
