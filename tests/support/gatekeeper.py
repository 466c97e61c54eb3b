"""Run the gatekeeper as a real process, exactly as an operator would (``gatekeeper serve``).

Tests talk to it over loopback with httpx, skopeo and podman, and read its database (SQLite or
PostgreSQL, see :mod:`tests.support.database`) to check the access log. Settings arrive through
the environment, never through process globals of the test runner.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import database as databases
from tests.support import zygote as zygotes
from tests.support.database import Database, QueryError
from tests.support.procs import free_port, wait_http
from tests.support.zygote import Forked

# Protocol-level tests exercise the proxy, not the gate: a warn-mode policy verifies and logs
# everything but never blocks. Gate tests pass their own GATEKEEPER_POLICIES.
WARN_EVERYTHING = json.dumps(
    [
        {
            "name": "warn-everything",
            "repositories": ["*"],
            "mode": "warn",
            "require": ["config-sanity"],
        }
    ]
)


TEST_KEY_ENCRYPTION_KEY = base64.b64encode(b"gatekeeper e2e key-encryption k.").decode()
"""Seals the token signing key in every test gatekeeper's database (32 bytes, base64). A
constant: tests that look for the key's bytes at rest open it with this
(tests/e2e/test_token_keys.py)."""


@dataclass
class Gatekeeper:
    """A running ``gatekeeper serve`` process."""

    url: str
    port: int
    database: Database
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | Forked | None = None
    extra_args: list[str] = field(default_factory=list)
    verify: object = True
    """What httpx should verify the gatekeeper's certificate against (a CA file for TLS)."""

    @property
    def db_path(self) -> Path:
        """The SQLite file, for tests about SQLite itself (mark them ``sqlite_only``)."""
        if self.database.path is None:
            raise RuntimeError(
                "this gatekeeper runs on PostgreSQL: read it with gk.database.fetch(), or mark "
                "the test @pytest.mark.sqlite_only(reason=...)"
            )
        return self.database.path

    @property
    def host(self) -> str:
        """``host:port`` as podman and skopeo want it in image references."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = ["serve", *self.extra_args]
        zygote = zygotes.usable(self.env, argv)
        if zygote is not None:
            self.process = zygote.spawn(argv, self.env, self.log_path, self.log_path)
        else:
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "proxy", *argv],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                )
        try:
            # Generous: on a loaded 2-core CI machine a cold start can take a while.
            wait_http(f"{self.url}/healthz", timeout=60.0, ok=(200,), verify=self.verify)
        except RuntimeError as exc:
            self.stop()
            tail = self.log_path.read_text()[-4000:]
            raise RuntimeError(f"gatekeeper did not start:\n{tail}") from exc

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process; SIGTERM is a clean stop that flushes the access log."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def audit_rows(
        self, where: str = "1=1", params: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Rows of the access log, oldest first, straight from the database (``where`` takes
        ``:name`` parameters from ``params``)."""
        return self.database.fetch(f"SELECT * FROM access_log WHERE {where} ORDER BY id", params)

    def wait_audit(
        self,
        count: int,
        where: str = "1=1",
        params: Mapping[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Wait until at least ``count`` matching rows are written (writes are batched)."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                rows = self.audit_rows(where, params)
            except QueryError:  # no database or table yet
                rows = []
            if len(rows) >= count:
                return rows
            time.sleep(0.05)
        return rows


def make_gatekeeper(
    workdir: Path,
    upstream_url: str,
    *,
    storage_root: Path | None = None,
    extra_env: dict[str, str] | None = None,
    start: bool = True,
    tls: tuple[Path, Path] | None = None,
    database: Database | None = None,
) -> Gatekeeper:
    """Configure (and by default start) a gatekeeper in front of ``upstream_url``.

    Its database is ``database`` (replicas share one), else ``GATEKEEPER_DATABASE_URL`` from
    ``extra_env``, else a fresh one on the session's backend.
    """
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    database = database or _database_from(extra_env) or databases.fresh(workdir)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "GATEKEEPER_UPSTREAM_URL": upstream_url,
        "GATEKEEPER_LISTEN": f"127.0.0.1:{port}",
        "GATEKEEPER_DATABASE_URL": database.url,
        "GATEKEEPER_AUDIT__FLUSH_INTERVAL_SECONDS": "0.05",
        # The replica's own disk, as in a deployment: not the checkout's ./var, which every
        # gatekeeper a test run starts would share.
        "GATEKEEPER_AUDIT__SPOOL_DIR": str(workdir / "audit-spool"),
        "GATEKEEPER_POLICIES": WARN_EVERYTHING,
        # Likewise client authentication: tests/e2e/test_auth.py turns it on.
        "GATEKEEPER_AUTH__ENABLED": "false",
        "GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY": TEST_KEY_ENCRYPTION_KEY,
        # The verification poll stays at its default (0.5 s): jobs wake workers at once, and an
        # idle test gatekeeper polling every 0.1 s (two workers) cost 8% of a core, 2% at 0.5 s.
        # Off by default, as tests were written without them: the verification summaries
        # pushed beside passing images (issue 18). Each is one more manifest, referrer and
        # verification job in the repository, which tests counting those would see.
        # tests/e2e/test_vsa.py turns them on.
        "GATEKEEPER_ATTESTATIONS__SUMMARIES": "false",
        # One process, as the tests were written for (signals, pids, a crash kills the server);
        # tests/e2e/test_workers.py runs several.
        "GATEKEEPER_WORKERS": "1",
    }
    if storage_root is not None:
        env["GATEKEEPER_UPSTREAM_STORAGE_ROOT"] = str(storage_root)
    if tls is not None:
        env["GATEKEEPER_TLS_CERT"], env["GATEKEEPER_TLS_KEY"] = str(tls[0]), str(tls[1])
    env.update(extra_env or {})
    gatekeeper = Gatekeeper(
        url=f"{'https' if tls else 'http'}://127.0.0.1:{port}",
        verify=ssl.create_default_context(cafile=str(tls[0])) if tls else True,
        port=port,
        database=database,
        log_path=workdir / "gatekeeper.log",
        env=env,
    )
    if start:
        gatekeeper.start()
    return gatekeeper


def _database_from(extra_env: Mapping[str, str] | None) -> Database | None:
    """The database a test chose by URL (``GATEKEEPER_DATABASE_URL`` in ``extra_env``)."""
    url = (extra_env or {}).get("GATEKEEPER_DATABASE_URL")
    if url is None:
        return None
    if url.startswith("sqlite"):
        return Database(url=url, backend="sqlite", path=Path(url.split(":///", 1)[1]))
    return Database(url=url, backend="postgresql")


def wait_state(gk: Gatekeeper, digest: str, timeout: float = 60) -> str:
    """The state ``digest`` leaves ``pending`` for: verification finishes after the push."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = gk.database.fetch("SELECT state FROM verdicts WHERE digest = :d", {"d": digest})
        if rows and rows[0]["state"] != "pending":
            return str(rows[0]["state"])
        time.sleep(0.2)
    raise AssertionError(f"no verdict for {digest}")


def run_cli(
    gk: Gatekeeper,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    input: str | None = None,
    replace_env: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``gatekeeper ARGS`` as an operator runs it beside this gatekeeper: a separate process
    with the gatekeeper's settings (its database) plus ``env`` (or ``env`` alone with
    ``replace_env``), output as text, ``input`` on its standard input.

    Forked from the test zygote when it can be (tests/support/zygote.py): a fresh interpreter
    costs about 1.3 s of CPU in imports, and the suite runs hundreds of these."""
    merged = dict(env or {}) if replace_env else {**gk.env, **(env or {})}
    zygote = zygotes.usable(merged, args)
    if zygote is not None:
        workdir = gk.log_path.parent / "cli"
        return zygotes.run(zygote, args, merged, workdir, timeout=timeout, input=input)
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        env=merged,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def sbom(gk: Gatekeeper, reference: str) -> dict[str, Any]:
    """The CycloneDX JSON ``gatekeeper sbom`` prints for ``reference``, run as operators do."""
    done = run_cli(gk, "sbom", reference)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # a normal run prints no library warnings (issue 16)
    return dict(json.loads(done.stdout))
