"""The cluster-wide scheduler end to end: ``gatekeeper rescan`` through a real gatekeeper in
front of the real registry (progress, resume after SIGKILL, cancel), two replicas on one
PostgreSQL queueing each image once, and the advisory mirror sync against a local server."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import pty
import signal
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.database import Database
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.ocihttp import image_config, push_image
from tests.support.registry import Registry
from tests.support.testdata import OSV_PYPI
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

FAKES = "tests.fakes.verifiers"
OSV = OSV_PYPI
# slow runs only because it is required (it passes at once unless labelled to take time).
POLICIES = [
    {"name": "all", "repositories": ["*"], "mode": "warn", "require": ["config-sanity", "slow"]}
]


def scheduler_env(started: Path, **extra: str) -> dict[str, str]:
    verifiers = {
        "config-sanity": {},
        "slow": {"plugin": f"{FAKES}:Slow", "options": {"started_dir": str(started)}},
    }
    return {
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_VERIFIERS": json.dumps(verifiers),
        "GATEKEEPER_VERIFICATION__WORKERS": "1",
        "GATEKEEPER_VERIFICATION__LEASE_SECONDS": "3",
        "GATEKEEPER_RESCAN__INTERVAL": "off",
        "GATEKEEPER_RESCAN__TICK": "0.2",
        "GATEKEEPER_RESCAN__MAX_PER_TICK": "1",
        # One waiting job at a time: the run advances as fast as the worker verifies, so a
        # kill lands mid-run.
        "GATEKEEPER_RESCAN__MAX_QUEUED_JOBS": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("started")


@pytest.fixture(scope="module")
def gk(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory, started: Path
) -> Iterator[Gatekeeper]:
    gatekeeper = make_gatekeeper(
        tmp_path_factory.mktemp("sched"), registry.url, extra_env=scheduler_env(started)
    )
    yield gatekeeper
    gatekeeper.stop()


def gatekeeper_cli(
    gk: Gatekeeper, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``gatekeeper ...`` in its own process, on the gatekeeper's settings (not a terminal)."""
    return run_cli(gk, *args, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def push_images(gk: Gatekeeper, repo: str, count: int, sleep: str) -> list[str]:
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        return [
            push_image(
                http,
                f"{repo}/app{n}",
                "v1",
                [bytes([n]) * 512],
                image_config({"test.sleep": sleep}),
            )[0]
            for n in range(count)
        ]


def verified(db: Database, pattern: str, count: int) -> bool:
    rows = db.fetch(
        "SELECT count(*) AS n FROM verdicts WHERE repository LIKE :p AND state != 'pending'",
        {"p": pattern},
    )
    return bool(rows[0]["n"] == count)


def run_row(db: Database, run_id: int) -> dict[str, Any]:
    (row,) = db.fetch("SELECT * FROM rescan_runs WHERE id = :id", {"id": run_id})
    return row


def jobs_of(db: Database, run_id: int) -> list[dict[str, Any]]:
    return db.fetch(
        "SELECT repository, digest, state FROM jobs WHERE reason = :r ORDER BY id",
        {"r": f"re-verification run {run_id}"},
    )


def clear(started: Path) -> None:
    for marker in started.iterdir():
        marker.unlink()


def test_rescan_wait_queues_every_image_and_shows_progress(gk: Gatekeeper, started: Path) -> None:
    digests = push_images(gk, "sched-wait", 3, "0.3")
    wait_until(lambda: verified(gk.database, "sched-wait/%", 3), 60, "the first verifications")
    clear(started)

    out = ok(gatekeeper_cli(gk, "rescan", "--repository", "sched-wait/*", "--wait"))
    lines = out.strip().splitlines()
    assert lines[0].startswith("started re-verification run") and "3 images" in lines[0]
    assert len(lines) > 2  # plain progress lines, one per change (stdout is not a terminal)
    assert "queued 3/3 images, 3/3 verifications finished" in lines[-1]
    assert "(manual, done)" in lines[-1]
    assert {m.name for m in started.iterdir()} == {d.replace(":", "-") for d in digests}

    status = json.loads(ok(gatekeeper_cli(gk, "rescan", "--status", "--json")))
    assert (status["state"], status["queued"], status["jobs"]) == ("done", 3, {"done": 3})
    assert status["requested_by"].startswith("cli:")


def test_rescan_wait_draws_a_progress_bar_on_a_terminal(gk: Gatekeeper) -> None:
    push_images(gk, "sched-tty", 2, "0")
    wait_until(lambda: verified(gk.database, "sched-tty/%", 2), 60, "the first verifications")
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "rescan", "-r", "sched-tty/*", "--wait"],
            env={**gk.env, "TERM": "xterm", "COLUMNS": "100"},
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=subprocess.PIPE,
        )
        os.close(terminal)
        screen = b""
        with contextlib.suppress(OSError):  # EIO once the process closed the terminal
            while chunk := os.read(controller, 4096):
                screen += chunk
        assert process.wait(timeout=60) == 0
    finally:
        os.close(controller)
    text = screen.decode(errors="replace")
    assert "queued" in text and "verified" in text and "2/2" in text
    assert "\x1b[" in text  # drawn with terminal control sequences, not plain lines
    assert "verifications finished" not in text


def test_a_run_resumes_after_the_gatekeeper_is_killed(gk: Gatekeeper, started: Path) -> None:
    images = 5
    digests = push_images(gk, "sched-kill", images, "1")
    wait_until(lambda: verified(gk.database, "sched-kill/%", images), 90, "first verifications")
    clear(started)
    run_id = json.loads(ok(gatekeeper_cli(gk, "rescan", "-r", "sched-kill/*", "--json")))["id"]

    wait_until(lambda: run_row(gk.database, run_id)["queued"] >= 2, 60, "the run to get going")
    gk.stop(signal.SIGKILL)
    killed = run_row(gk.database, run_id)
    assert killed["state"] == "running" and 2 <= killed["queued"] < images

    gk.start()
    out = ok(gatekeeper_cli(gk, "rescan", "--status", "--wait"))
    assert f"queued {images}/{images} images" in out.strip().splitlines()[-1]
    jobs = jobs_of(gk.database, run_id)
    # Each image exactly once: none skipped, none queued twice (the job killed mid-run was
    # taken over after its lease expired, not queued again).
    assert sorted(j["digest"] for j in jobs) == sorted(digests)
    assert {j["state"] for j in jobs} == {"done"}
    assert run_row(gk.database, run_id)["state"] == "done"


def test_cancel_stops_a_run_and_a_second_run_is_refused_meanwhile(
    gk: Gatekeeper, started: Path
) -> None:
    push_images(gk, "sched-cancel", 2, "0")
    wait_until(lambda: verified(gk.database, "sched-cancel/%", 2), 60, "first verifications")
    # Spread over an hour: nothing is queued before the cancel comes.
    out = ok(gatekeeper_cli(gk, "rescan", "-r", "sched-cancel/*", "--spread", "1h"))
    run_id = int(out.split()[3].rstrip(":"))
    waiter = subprocess.Popen(
        [sys.executable, "-m", "proxy", "rescan", "--status", "--wait"],
        env=gk.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The waiter follows the run (its first progress line) before the cancel comes: a
        # waiter that started after it would only report a finished run.
        lines = waiter.stdout
        assert lines is not None
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(lines.readline()))
        reader.start()
        reader.join(60)
        assert first and f"run {run_id}" in first[0], f"the waiter printed {first}"
        refused = gatekeeper_cli(gk, "rescan")
        assert refused.returncode == 2 and "still running" in refused.stderr
        cancelled = ok(gatekeeper_cli(gk, "rescan", "--cancel", "--actor", "ops"))
        assert f"cancelled run {run_id}" in cancelled and "verdicts unchanged" in cancelled
        stdout, _ = waiter.communicate(timeout=60)
    finally:
        waiter.kill()
    assert waiter.returncode == 1 and "cancelled" in (first[0] + stdout).splitlines()[-1]
    row = run_row(gk.database, run_id)
    assert (row["state"], row["note"]) == ("cancelled", "cancelled by cli:ops")
    assert ok(gatekeeper_cli(gk, "rescan", "--cancel")).strip() == (
        "no re-verification run is running"
    )


@pytest.mark.own_database(reason="its gatekeepers share postgres_db whatever --db says")
def test_two_replicas_on_postgresql_queue_each_image_once(
    registry: Registry, postgres_db: Database, tmp_path: Path
) -> None:
    env = {
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_RESCAN__INTERVAL": "off",
        "GATEKEEPER_RESCAN__SPREAD": "0",
        "GATEKEEPER_RESCAN__TICK": "0.05",
        "GATEKEEPER_RESCAN__MAX_PER_TICK": "1",
    }
    replicas = [
        make_gatekeeper(tmp_path / f"gk{n}", registry.url, extra_env=env, database=postgres_db)
        for n in range(2)
    ]
    try:
        digests = push_images(replicas[0], "sched-pg", 6, "0")
        wait_until(lambda: verified(postgres_db, "sched-pg/%", 6), 60, "first verifications")
        # Both replicas tick every 50 ms and may queue one image per tick: without the lock
        # (and the guarded cursor) they would queue images twice.
        run_id = json.loads(ok(gatekeeper_cli(replicas[1], "rescan", "--json")))["id"]
        out = ok(gatekeeper_cli(replicas[0], "rescan", "--status", "--wait"))
        assert "queued 6/6 images" in out.splitlines()[-1]
        jobs = jobs_of(postgres_db, run_id)
        assert sorted(j["digest"] for j in jobs) == sorted(digests)

        # Scheduled runs: one per due time, not one per replica.
        for gk in replicas:
            gk.stop()
            gk.env["GATEKEEPER_RESCAN__INTERVAL"] = "3s"
            gk.start()
        wait_until(
            lambda: (
                len(postgres_db.fetch("SELECT id FROM rescan_runs WHERE trigger = 'schedule'")) >= 2
            ),
            30,
            "two scheduled runs",
        )
    finally:
        for gk in replicas:
            gk.stop()
    scheduled = postgres_db.fetch(
        "SELECT id, created_at FROM rescan_runs WHERE trigger = 'schedule' ORDER BY id"
    )
    starts = [row["created_at"] for row in scheduled]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert all(gap >= 2.5 for gap in gaps), gaps
    for row in scheduled:
        queued = jobs_of(postgres_db, row["id"])
        assert len(queued) == len({j["digest"] for j in queued})


# -- advisory mirror ---------------------------------------------------------------------------


class MirrorServer:
    """A local mirror serving one zip with an ETag, honouring If-None-Match."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests: list[dict[str, str]] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requests.append(dict(self.headers))
                if self.headers.get("If-None-Match") == '"osv-1"':
                    self.send_response(304)
                    self.send_header("ETag", '"osv-1"')
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(mirror.body)))
                self.send_header("ETag", '"osv-1"')
                self.end_headers()
                self.wfile.write(mirror.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/PyPI/all.zip"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.testdata
def test_mirror_sync_imports_once_then_gets_304(registry: Registry, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in ("PYSEC-2023-117.json", "PYSEC-2023-135.json", "PYSEC-2023-192.json"):
            zf.write(OSV / name, name)
    mirror = MirrorServer(buffer.getvalue())
    gk = make_gatekeeper(
        tmp_path / "gk",
        registry.url,
        extra_env={
            "GATEKEEPER_ADVISORIES__MIRROR_URL": mirror.url,
            "GATEKEEPER_ADVISORIES__SYNC_INTERVAL": "1h",
            "GATEKEEPER_RESCAN__TICK": "0.2",
        },
    )
    try:
        db = gk.database
        wait_until(
            lambda: db.fetch("SELECT data_version FROM advisory_mirrors WHERE data_version > 0"),
            30,
            "the first scheduled sync",
        )
        assert db.fetch("SELECT count(*) AS n FROM advisories") == [{"n": 3}]
        versions = db.fetch("SELECT count(*) AS n FROM advisory_data_versions")

        out = ok(gatekeeper_cli(gk, "advisories", "sync"))
        assert "unchanged since the last sync (304), nothing downloaded" in out
        assert mirror.requests[-1].get("If-None-Match") == '"osv-1"'
        assert db.fetch("SELECT count(*) AS n FROM advisory_data_versions") == versions
        metrics = httpx.get(f"{gk.url}/metrics").text
        assert 'gatekeeper_advisory_syncs_total{result="imported"} 1.0' in metrics
    finally:
        gk.stop()
        mirror.close()
