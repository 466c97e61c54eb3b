"""Injected faults through a real gatekeeper and a real registry: the gatekeeper fails closed and
loses nothing.

- the access-log database stops taking writes: requests are served until the bounded buffer is
  full, then refused with 503; every served request has exactly one row once it is back;
- the upstream registry is killed mid-push: the client sees an error, the retried push works;
- the gatekeeper is SIGKILLed mid-upload, mid-manifest-PUT and with verification pending, and
  during a bulk advisory import: no job lost, nothing pullable without a verdict, the import
  all or nothing;
- the disk under SQLite fills up: clear 503s, an intact database, service back when space is.

Faults that need SQLite's file (a held write lock, a full file system) run on SQLite whatever
the session's backend; the same code paths on PostgreSQL are covered by test_postgres.py.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.database import sqlite_database
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import (
    OCI_MANIFEST,
    digest_of,
    image_config,
    image_manifest,
    push_blob,
    push_image,
)
from tests.support.registry import Registry, make_registry
from tests.support.testdata import GO_VULNDB, zip_members
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e
BLOCK_PENDING = json.dumps(
    [{"name": "all", "repositories": ["*"], "require": ["config-sanity"], "pending": "block"}]
)


def envelope(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json"), resp.text
    error: dict[str, Any] = resp.json()["errors"][0]
    assert error["code"] == code, error
    return error


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Registry]:
    """A registry of the test's own: these tests kill it."""
    reg = make_registry(tmp_path / "registry")
    yield reg
    reg.stop()


# 1. The access log cannot be written -------------------------------------------------------


def test_full_audit_buffer_refuses_requests_and_loses_no_row(
    upstream: Registry, tmp_path: Path
) -> None:
    gk = make_gatekeeper(
        tmp_path / "gk",
        upstream.url,
        database=sqlite_database(tmp_path / "gk"),
        extra_env={"GATEKEEPER_AUDIT__MAX_BUFFERED": "20"},
    )
    served: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            for _ in range(n):
                resp = http.get("/v2/")
                with lock:
                    if resp.status_code == 200:
                        served.append(resp.headers["X-Request-Id"])
                    else:
                        error = envelope(resp, 503, "UNAVAILABLE")
                        assert "access log" in error["message"]
                        assert resp.headers["Retry-After"] == "5"
                        refused.append(resp.headers["X-Request-Id"])

    try:
        # Another connection holds SQLite's write lock: every access-log write now waits (and
        # after the busy timeout fails); reads, and so the requests themselves, still work.
        holder = sqlite3.connect(gk.db_path, isolation_level=None, timeout=30)
        holder.execute("BEGIN IMMEDIATE")
        try:
            threads = [threading.Thread(target=client, args=(15,)) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(served) >= 20 and len(refused) >= 10, (len(served), len(refused))
            metrics = httpx.get(f"{gk.url}/metrics").text
            assert metric(metrics, "gatekeeper_audit_buffered_rows") >= 20
            assert metric(metrics, "gatekeeper_audit_buffer_limit_rows") == 20
            assert metric(metrics, "gatekeeper_audit_refused_requests_total") == len(refused)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        # The database is back: the buffer drains and requests are served again.
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            after = wait_until(lambda: _served(http), 60, "requests to be served again")
        served.append(str(after))
        rows = gk.wait_audit(len(served), "action = 'api.version'", timeout=30)
        ids = [row["request_id"] for row in rows]
        assert sorted(ids) == sorted(served), "every served request has exactly one row"
        assert not set(refused) & set(ids)
    finally:
        gk.stop()


def _served(http: httpx.Client) -> str | None:
    resp = http.get("/v2/")
    return resp.headers["X-Request-Id"] if resp.status_code == 200 else None


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


# 2. The upstream dies mid-push --------------------------------------------------------------


def test_upstream_killed_mid_push_is_an_error_and_the_retry_succeeds(
    upstream: Registry, tmp_path: Path
) -> None:
    gk = make_gatekeeper(
        tmp_path / "gk", upstream.url, extra_env={"GATEKEEPER_UPLOADS__SESSION_IDLE_SECONDS": "2"}
    )
    layer = os.urandom(3 * 1024 * 1024)
    try:
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            start = http.post("/v2/killed/app/blobs/uploads/")
            assert start.status_code == 202, start.text

            def body() -> Iterator[bytes]:
                for offset in range(0, len(layer), 64 * 1024):
                    if offset == 1024 * 1024:
                        assert upstream.process is not None
                        upstream.process.kill()  # SIGKILL: no goodbye to the gatekeeper
                        upstream.process.wait()
                    yield layer[offset : offset + 64 * 1024]
                    time.sleep(0.005)

            try:
                patch = http.patch(
                    start.headers["Location"],
                    content=body(),
                    headers={"Content-Type": "application/octet-stream"},
                )
            except httpx.TransportError:
                pass  # the gatekeeper gave up on the request while it was being sent
            else:
                assert patch.status_code in (502, 503), patch.text
                envelope(patch, patch.status_code, "UNAVAILABLE")
            manifest = http.put(
                "/v2/killed/app/manifests/v1",
                content=image_manifest(image_config(layers=1), [layer]),
                headers={"Content-Type": OCI_MANIFEST},
            )
            assert manifest.status_code in (502, 503), manifest.text
            envelope(manifest, manifest.status_code, "UNAVAILABLE")

            upstream.start()
            digest, sent = push_image(http, "killed/app", "v1", [layer])
            pulled = http.get(f"/v2/killed/app/manifests/{digest}", headers=_accept())
            assert pulled.status_code == 200 and pulled.content == sent
            assert http.get(f"/v2/killed/app/blobs/{digest_of(layer)}").content == layer
            # No upload stays stuck: the broken session goes idle and stops counting.
            time.sleep(2.2)
            probe = http.post("/v2/killed/app/blobs/uploads/")
            assert probe.status_code == 202
            assert http.delete(probe.headers["Location"]).status_code == 204
        wait_until(
            lambda: not gk.database.fetch("SELECT id FROM upload_sessions"), 10, "no sessions"
        )
    finally:
        gk.stop()


def _accept() -> dict[str, str]:
    return {"Accept": OCI_MANIFEST}


# 3. The gatekeeper is SIGKILLed --------------------------------------------------------------


def verdict(gk: Gatekeeper, digest: str) -> str | None:
    rows = gk.database.fetch(
        "SELECT state FROM verdicts WHERE digest = :digest", {"digest": digest}
    )
    return str(rows[0]["state"]) if rows else None


def passed(gk: Gatekeeper, digest: str) -> bool:
    return verdict(gk, digest) == "passed"


def test_sigkill_mid_upload_then_the_push_is_retried(upstream: Registry, tmp_path: Path) -> None:
    gk = make_gatekeeper(
        tmp_path / "gk", upstream.url, extra_env={"GATEKEEPER_POLICIES": BLOCK_PENDING}
    )
    try:
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            location = httpx.URL(http.post("/v2/crash/patch/blobs/uploads/").headers["Location"])
        with socket.create_connection(("127.0.0.1", gk.port)) as sock:
            sock.sendall(
                (
                    f"PATCH {location.raw_path.decode()} HTTP/1.1\r\nHost: {gk.host}\r\n"
                    "Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n"
                ).encode()
                + os.urandom(1_000_000)
            )
            time.sleep(0.3)
            gk.stop(signal.SIGKILL)
        gk.start()
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            digest, _ = push_image(http, "crash/patch", "v1", [os.urandom(2_000_000)])
            wait_until(lambda: verdict(gk, digest) == "passed", 30, "a verdict")
            assert (
                http.get(f"/v2/crash/patch/manifests/{digest}", headers=_accept()).status_code
                == 200
            )
    finally:
        gk.stop()


def test_sigkill_with_verification_pending_loses_no_job(upstream: Registry, tmp_path: Path) -> None:
    # No workers: the job is queued by the push and nobody runs it before the kill.
    gk = make_gatekeeper(
        tmp_path / "gk",
        upstream.url,
        extra_env={"GATEKEEPER_POLICIES": BLOCK_PENDING, "GATEKEEPER_VERIFICATION__WORKERS": "0"},
    )
    try:
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            digest, _ = push_image(http, "crash/pending", "v1", [os.urandom(1000)])
            pending = http.get(f"/v2/crash/pending/manifests/{digest}", headers=_accept())
            envelope(pending, 403, "DENIED")
        gk.stop(signal.SIGKILL)
        assert verdict(gk, digest) == "pending"
        gk.env["GATEKEEPER_VERIFICATION__WORKERS"] = "2"
        gk.start()
        wait_until(lambda: verdict(gk, digest) == "passed", 30, "the queued job to run")
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            assert (
                http.get(f"/v2/crash/pending/manifests/{digest}", headers=_accept()).status_code
                == 200
            )
    finally:
        gk.stop()


def test_sigkill_during_manifest_put_leaves_nothing_pullable_without_a_verdict(
    upstream: Registry, tmp_path: Path
) -> None:
    gk = make_gatekeeper(
        tmp_path / "gk",
        upstream.url,
        extra_env={
            "GATEKEEPER_POLICIES": BLOCK_PENDING,
            "GATEKEEPER_VERIFICATION__FIRST_PULL_HOLD_SECONDS": "15",
            # A job the killed process was running is taken over once its lease runs out.
            "GATEKEEPER_VERIFICATION__LEASE_SECONDS": "2",
        },
    )
    digests: list[str] = []
    try:
        for delay in (0.0, 0.005, 0.02, 0.05):
            config = image_config({"attempt": str(delay)}, layers=1)
            layer = os.urandom(500)
            manifest = image_manifest(config, [layer])
            digests.append(digest_of(manifest))
            with httpx.Client(base_url=gk.url, timeout=60) as http:
                push_blob(http, "crash/put", config)
                push_blob(http, "crash/put", layer)
            with socket.create_connection(("127.0.0.1", gk.port)) as sock:
                sock.sendall(
                    (
                        f"PUT /v2/crash/put/manifests/{digests[-1]} HTTP/1.1\r\n"
                        f"Host: {gk.host}\r\nContent-Type: {OCI_MANIFEST}\r\n"
                        f"Content-Length: {len(manifest)}\r\n\r\n"
                    ).encode()
                    + manifest
                )
                time.sleep(delay)
                gk.stop(signal.SIGKILL)
            gk.start()
        with httpx.Client(base_url=gk.url, timeout=60) as http:
            for digest in digests:
                upstream_has = httpx.head(
                    f"{upstream.url}/v2/crash/put/manifests/{digest}", headers=_accept()
                )
                pull = http.get(f"/v2/crash/put/manifests/{digest}", headers=_accept())
                if upstream_has.status_code != 200:
                    assert pull.status_code == 404, pull.text
                    continue
                # Stored upstream, whether or not the gatekeeper recorded the push: it is
                # served only with a passing verdict, and it does get one.
                if pull.status_code == 200:
                    assert verdict(gk, digest) == "passed"
                else:
                    envelope(pull, 403, "DENIED")
                    http.get(f"/v2/crash/put/manifests/{digest}", headers=_accept())
                    wait_until(partial(passed, gk, digest), 30, "a verdict")
    finally:
        gk.stop()


@pytest.mark.testdata
def test_sigkill_during_advisory_import_is_all_or_nothing(tmp_path: Path) -> None:
    """Kill ``gatekeeper advisories import`` of 4,291 OSV records while its transaction is open
    (SQLite has started spilling it into the WAL) and at fixed times: afterwards the store holds
    either the whole import under one data version or nothing of it."""
    expected = len(zip_members(GO_VULNDB))
    outcomes: list[int] = []
    # None: as soon as the transaction spills into the WAL; else after that many seconds.
    triggers: tuple[float | None, ...] = (None, 1.0, 2.5)
    for attempt, trigger in enumerate(triggers):
        database = sqlite_database(tmp_path / f"import{attempt}")
        env = _cli_env(database.url)
        subprocess.run([sys.executable, "-m", "proxy", "db", "upgrade"], env=env, check=True)
        wal = Path(f"{database.path}-wal")
        baseline = wal.stat().st_size if wal.exists() else 0
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "advisories", "import", str(GO_VULNDB)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            if trigger is None:
                wait_until(partial(_writing, proc, wal, baseline), 60, "the import to write")
            else:
                time.sleep(trigger)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert database.path is not None
        with sqlite3.connect(database.path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            versions = conn.execute("SELECT count(*) FROM advisory_data_versions").fetchone()[0]
            stored = conn.execute("SELECT count(*) FROM advisories").fetchone()[0]
            indexed = conn.execute("SELECT count(*) FROM advisory_packages").fetchone()[0]
        assert (versions, stored) in ((0, 0), (1, expected)), (trigger, versions, stored)
        assert (indexed == 0) == (versions == 0)
        outcomes.append(versions)
    assert 0 in outcomes, "no kill landed inside the import's transaction"
    # And an import after the crash completes.
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "advisories", "import", str(GO_VULNDB)],
        env=_cli_env(sqlite_database(tmp_path / "import0").url),
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{expected} added" in done.stdout


def _writing(proc: subprocess.Popen[bytes], wal: Path, baseline: int) -> bool:
    """The import has exited, or spilled more than a MiB of its transaction into the WAL."""
    return proc.poll() is not None or (wal.exists() and wal.stat().st_size > baseline + 2**20)


def _cli_env(url: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "GATEKEEPER_DATABASE_URL": url,
    }


# 4. The disk fills up -----------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(where: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of its own (root only): filling it is a real ENOSPC for SQLite."""
    where.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system is full."""
    block = b"\0" * 65536
    with path.open("wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(block)
        for size in (4096, 512, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


def test_disk_full_for_sqlite_is_a_clear_503_and_no_corruption(
    upstream: Registry, tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        database = sqlite_database(disk)
        gk = make_gatekeeper(tmp_path / "gk", upstream.url, database=database)
        served: list[str] = []
        try:
            with httpx.Client(base_url=gk.url, timeout=60) as http:
                push_image(http, "full/app", "v1", [os.urandom(1000)])
                fill(disk / "filler")
                for _ in range(5):
                    resp = http.get("/v2/")  # its row waits in the buffer
                    assert resp.status_code == 200
                    served.append(resp.headers["X-Request-Id"])
                # SQLite may still fit a write into WAL space it already owns; the next one
                # that needs a new block fails.
                for _ in range(50):
                    refused = http.post("/v2/full/app/blobs/uploads/")
                    if refused.status_code != 202:
                        break
                error = envelope(refused, 503, "UNAVAILABLE")
                assert "database is full" in error["message"], error
                assert "Traceback" not in refused.text
                (disk / "filler").unlink()
                # Space is back: pushes work and the buffered rows are written.
                push_image(http, "full/app", "v2", [os.urandom(1000)])
            rows = gk.wait_audit(len(served), "action = 'api.version'", timeout=30)
            assert sorted(r["request_id"] for r in rows) == sorted(served)
        finally:
            gk.stop()
            with contextlib.suppress(FileNotFoundError):
                (disk / "filler").unlink()
        with sqlite3.connect(database.path) as conn:  # type: ignore[arg-type]
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
