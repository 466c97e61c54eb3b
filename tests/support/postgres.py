"""A private PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` on a free loopback port.

PostgreSQL refuses to run as root, so when the tests run as root (CI does) the cluster belongs
to the ``postgres`` system user that Debian's package creates.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.procs import free_port


def _bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def available() -> bool:
    return _bin_dir() is not None


@dataclass
class Postgres:
    """A running cluster with one database for the gatekeeper."""

    port: int
    data_dir: Path
    bin_dir: Path
    user: str | None
    pid: int | None = None
    options: str = ""

    @property
    def url(self) -> str:
        return self.url_for("gatekeeper")

    def url_for(self, database: str) -> str:
        """The async SQLAlchemy URL of one database in this cluster."""
        return f"postgresql+asyncpg://gatekeeper@127.0.0.1:{self.port}/{database}"

    def admin(self, statement: str) -> None:
        """Run one statement outside any transaction (``CREATE DATABASE`` needs that) with
        ``psql``: synchronous, so it works from async tests and fixtures as well."""
        command = [
            str(self.bin_dir / "psql"),
            *("-h", "127.0.0.1", "-p", str(self.port), "-U", "gatekeeper", "-d", "postgres"),
            *("-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", statement),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"psql {statement!r} failed: {done.stderr.strip()}")

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Start the cluster again (after ``stop``) on the same port and data."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-o",
            self.options,
            "-l",
            str(self.data_dir.parent / "pg.log"),
            "-w",
            "start",
        )
        self.pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        """Stop the cluster; if pg_ctl cannot (its directory was removed under it, say by a
        concurrent pytest pruning old temp dirs), end the postmaster directly."""
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            if self.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGQUIT)

    def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        """Run one query synchronously (tests are synchronous; the driver is async)."""
        import asyncpg

        async def run() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(
                host="127.0.0.1", port=self.port, user="gatekeeper", database="gatekeeper"
            )
            try:
                return [dict(row) for row in await conn.fetch(query, *args)]
            finally:
                await conn.close()

        return asyncio.run(run())


_WATCHDOG = """
import os, signal, sys, time
parent, pidfile = int(sys.argv[1]), sys.argv[2]
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
try:
    with open(pidfile) as f:
        postmaster = int(f.read().split()[0])
    os.kill(postmaster, signal.SIGQUIT)
except (OSError, ValueError, IndexError):
    pass
"""


def _watch(pg: Postgres) -> None:
    """Stop the cluster when the process that started it dies without stopping it (pytest
    killed with SIGKILL, say): ``pg_ctl`` daemonizes the postmaster, so nothing else would.
    The watchdog reads ``postmaster.pid`` at that moment, so a restarted cluster is found too;
    after a clean stop the file is gone and it does nothing."""
    subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(pg.data_dir / "postmaster.pid")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_postgres(workdir: Path) -> Postgres:
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
    user = "postgres" if os.geteuid() == 0 else None
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "pgdata"
    if user:
        entry = pwd.getpwnam(user)
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
        # The postgres user must be able to reach the directory through its parents.
        for parent in workdir.parents:
            if parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    pg = Postgres(port=free_port(), data_dir=data, bin_dir=bin_dir, user=user)
    pg._run("initdb", "-D", str(data), "-A", "trust", "-U", "gatekeeper", "--no-sync", "-E", "UTF8")
    options = (
        f"-p {pg.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={workdir} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    pg.options = options
    pg._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(workdir / "pg.log"), "-w", "start")
    pg.pid = int((data / "postmaster.pid").read_text().split()[0])
    _watch(pg)
    pg._run("createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "gatekeeper", "gatekeeper")
    return pg


def cluster_url(stack: contextlib.ExitStack, workdir: Path) -> str:
    """The URL of a private cluster started in ``workdir`` and stopped when ``stack`` closes:
    what a benchmark's ``--database postgres`` runs on."""
    cluster = start_postgres(workdir)
    stack.callback(cluster.stop)
    return cluster.url
