"""Work follows the replica that does it: two gatekeepers on one database, one stopped while
it verifies or holds an upload session, the other takes over in seconds (short job leases
renewed while the work runs, a heartbeat per replica; where a test waits for one to run out,
shorter than the defaults, 15 s and 5 s, so that it waits less).

- SIGTERM (a rolling restart): the stopping replica hands its running job back at once; the
  verdict comes from the other replica within 10 s of the stop.
- SIGKILL (a crash): the job's lease runs out; the verdict comes within seconds of it.
- SIGKILL with an upload session open: with a cap of one session, the same identity can start
  again on the other replica within seconds, not after the 15-minute idle timeout.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import database as databases
from tests.support.database import Database
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import image_config, push_image
from tests.support.registry import Registry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e
SLOW = "tests.fakes.verifiers:Slow"
POLICY = [{"name": "slow", "repositories": ["handover/*"], "require": ["slow"], "pending": "block"}]
LEASE = 4
"""Seconds of the crashing replica's job lease (the default is 15)."""
HEARTBEAT = 1
"""Seconds between a replica's heartbeats where a test waits for a crash to be noticed (5)."""


def _verifier(**options: object) -> dict[str, str]:
    return {
        "GATEKEEPER_POLICIES": json.dumps(POLICY),
        "GATEKEEPER_VERIFIERS": json.dumps({"slow": {"plugin": SLOW, "options": options}}),
    }


@pytest.fixture
def shared(tmp_path: Path) -> Database:
    """One database for both replicas, on the session's backend."""
    return databases.fresh(tmp_path / "db")


@pytest.fixture
def stopping(
    request: pytest.FixtureRequest, registry: Registry, shared: Database, tmp_path: Path
) -> Iterator[Gatekeeper]:
    """The replica that takes the job and is then stopped: its verifier would take 60 s. Its
    job lease is the default, or the seconds the test gives as the fixture's parameter."""
    started = tmp_path / "started"
    started.mkdir()
    env = _verifier(started_dir=str(started))
    lease = getattr(request, "param", None)
    if lease is not None:
        env["GATEKEEPER_VERIFICATION__LEASE_SECONDS"] = str(lease)
    gk = make_gatekeeper(tmp_path / "a", registry.url, database=shared, extra_env=env)
    yield gk
    gk.stop(signal.SIGKILL)


def _start_other(registry: Registry, shared: Database, tmp_path: Path) -> Gatekeeper:
    """The replica that takes over: the same verifier, capped at half a second."""
    return make_gatekeeper(
        tmp_path / "b", registry.url, database=shared, extra_env=_verifier(cap_seconds=0.5)
    )


def _verdict(gk: Gatekeeper, digest: str) -> str | None:
    rows = gk.database.fetch("SELECT state FROM verdicts WHERE digest = :d", {"d": digest})
    return str(rows[0]["state"]) if rows else None


def _stop_during_verification(
    sig: int, stopping: Gatekeeper, registry: Registry, shared: Database, tmp_path: Path
) -> float:
    """Push through ``stopping``, wait until its verifier runs, start the other replica, stop
    ``stopping`` with ``sig``: seconds from the signal to the other replica's verdict."""
    with httpx.Client(base_url=stopping.url, timeout=60) as http:
        config = image_config({"test.sleep": "60"}, layers=1)
        digest, _ = push_image(http, "handover/app", "v1", [os.urandom(100)], config)
    marker = tmp_path / "started" / digest.replace(":", "-")
    wait_until(marker.exists, 30, "the first replica's verifier to start")
    other = _start_other(registry, shared, tmp_path)
    try:
        assert _verdict(other, digest) == "pending"
        signalled = time.monotonic()
        assert stopping.process is not None
        stopping.process.send_signal(sig)
        wait_until(lambda: _verdict(other, digest) == "passed", 60, "the verdict")
        took = time.monotonic() - signalled
        stopping.stop()
        # The job is marked done just after the verdict is stored.
        wait_until(lambda: shared.fetch("SELECT id FROM jobs WHERE state = 'done'"), 10, "done")
        assert len(shared.fetch("SELECT id FROM jobs")) == 1
        return took
    finally:
        other.stop()


def test_sigterm_hands_the_job_to_the_other_replica_at_once(
    stopping: Gatekeeper, registry: Registry, shared: Database, tmp_path: Path
) -> None:
    took = _stop_during_verification(signal.SIGTERM, stopping, registry, shared, tmp_path)
    assert took < 10, f"verdict {took:.1f}s after SIGTERM"
    (job,) = shared.fetch("SELECT attempts FROM jobs")
    assert job["attempts"] == 1, "the handed-back attempt is not counted"


@pytest.mark.parametrize("stopping", [LEASE], indirect=True)
def test_sigkill_leaves_the_job_to_the_other_replica_within_a_lease(
    stopping: Gatekeeper, registry: Registry, shared: Database, tmp_path: Path
) -> None:
    took = _stop_during_verification(signal.SIGKILL, stopping, registry, shared, tmp_path)
    # The lease runs out LEASE s after its last renewal; the other replica claims the job
    # within a poll. Far less than the verifier's 60 s, or the 900 s idle timeout.
    assert took < LEASE + 15, f"verdict {took:.1f}s after SIGKILL"


def test_a_crashed_replicas_upload_session_stops_counting_in_seconds(
    registry: Registry, shared: Database, tmp_path: Path
) -> None:
    cap = {
        "GATEKEEPER_UPLOADS__MAX_SESSIONS_PER_IDENTITY": "1",
        "GATEKEEPER_REPLICAS__HEARTBEAT_SECONDS": str(HEARTBEAT),
    }
    first = make_gatekeeper(tmp_path / "a", registry.url, database=shared, extra_env=cap)
    second = make_gatekeeper(tmp_path / "b", registry.url, database=shared, extra_env=cap)
    try:
        with httpx.Client(base_url=first.url, timeout=60) as http:
            assert http.post("/v2/handover/up/blobs/uploads/").status_code == 202
        with httpx.Client(base_url=second.url, timeout=60) as http:
            refused = http.post("/v2/handover/up/blobs/uploads/")
            assert refused.status_code == 429, refused.text  # the first one's session counts
            first.stop(signal.SIGKILL)
            killed = time.monotonic()
            wait_until(
                lambda: http.post("/v2/handover/up/blobs/uploads/").status_code == 202,
                60,
                "a new upload session on the other replica",
            )
            took = time.monotonic() - killed
        # Three missed heartbeats: gone after 3 s, not after the 900 s idle timeout.
        assert took < 3 * HEARTBEAT + 10, f"a new session {took:.1f}s after the crash"
    finally:
        first.stop()
        second.stop()
