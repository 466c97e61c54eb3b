"""The four things measured, all in front of the same registry and the same stored blob.

- ``direct``: the registry itself, the ceiling and the main baseline.
- ``nginx``: an unbuffered nginx reverse proxy, what a well-built proxy costs.
- ``gatekeeper-stream``: the gatekeeper copying blob bodies through Python.
- ``gatekeeper-sendfile``: the gatekeeper given the registry's storage root, serving blobs that
  pass the gate with sendfile.
- ``gatekeeper-tls-stream`` and ``gatekeeper-tls-sendfile``: the same two serving HTTPS (a
  certificate made for the run): what TLS on the gatekeeper's own port costs, and which path
  the storage root gives a TLS connection (``proxy/sendfile.py``).

Starting a target either yields a running :class:`Target` or raises TargetUnavailable with the
reason; the benchmark records that as a skip and carries on with the others.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from bench.errors import TargetUnavailable
from bench.nginx import start_nginx
from tests.support.gatekeeper import make_gatekeeper
from tests.support.registry import Registry
from tests.support.zygote import Forked

DIRECT = "direct"
NGINX = "nginx"
NGINX_DEFAULT = "nginx-default"
GATEKEEPER_STREAM = "gatekeeper-stream"
GATEKEEPER_SENDFILE = "gatekeeper-sendfile"
GATEKEEPER_TLS_STREAM = "gatekeeper-tls-stream"
GATEKEEPER_TLS_SENDFILE = "gatekeeper-tls-sendfile"
ALL_TARGETS = (
    DIRECT,
    NGINX,
    NGINX_DEFAULT,
    GATEKEEPER_STREAM,
    GATEKEEPER_SENDFILE,
    GATEKEEPER_TLS_STREAM,
    GATEKEEPER_TLS_SENDFILE,
)
TLS_TARGETS = frozenset({GATEKEEPER_TLS_STREAM, GATEKEEPER_TLS_SENDFILE})
SENDFILE_TARGETS = frozenset({GATEKEEPER_SENDFILE, GATEKEEPER_TLS_SENDFILE})
BENCH_POLICY = {"name": "bench", "repositories": ["bench/*"], "require": ["config-sanity"]}
"""An enforcing policy requiring the built-in, cheap verifier (which the bench image passes): an
unmatched repository is denied and a policy requiring nothing allows nothing, and enforcing is
the path whose per-request cost matters."""
GATEKEEPER_ENV = {"GATEKEEPER_POLICIES": json.dumps([BENCH_POLICY])}


@dataclass(frozen=True)
class TargetSetup:
    """What every target is started with."""

    workdir: Path
    """Each target gets a subdirectory for its config, database and logs."""
    registry: Registry
    gatekeeper_env: Mapping[str, str]
    """Extra environment for both gatekeepers (``GATEKEEPER_ENV`` plus ``--gatekeeper-env``)."""
    tls: tuple[Path, Path]
    """Certificate and key of the TLS targets (the certificate is its own CA)."""


@dataclass(frozen=True)
class Target:
    """A running server the measurements are pointed at."""

    name: str
    url: str
    """Base URL, ``http://127.0.0.1:<port>``."""
    process: subprocess.Popen[bytes] | Forked | None
    """The server process: its tree's RSS is reported, and its death explains failures."""
    log_path: Path | None
    """Where the server writes its log, quoted when it dies."""
    cacert: Path | None = None
    """The CA clients must trust for an https target; None: plain HTTP."""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def death(self) -> str | None:
        """Why the target cannot answer any more (exit status, end of log), or None if alive.

        Distinguishes "the target crashed" (or was killed) from "the target answered wrongly"
        in the report.
        """
        if self.process is None or self.process.poll() is None:
            return None
        tail = ""
        if self.log_path is not None:
            try:
                tail = self.log_path.read_text(errors="replace")[-1500:]
            except OSError:
                tail = "(log unreadable)"
        return f"{self.name} exited with status {self.process.returncode}; log ends:\n{tail}"


def start_target(name: str, stack: ExitStack, setup: TargetSetup) -> Target:
    """Start ``name`` in front of the registry; ``stack`` stops it when the benchmark ends."""
    try:
        starter = _STARTERS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; known: {', '.join(ALL_TARGETS)}") from None
    return starter(name, stack, setup)


def _direct(name: str, stack: ExitStack, setup: TargetSetup) -> Target:
    registry = setup.registry
    return Target(name, registry.url, registry.process, registry.log_path)


def _nginx(name: str, stack: ExitStack, setup: TargetSetup) -> Target:
    nginx = start_nginx(
        setup.workdir / name, f"127.0.0.1:{setup.registry.port}", tuned=name == NGINX
    )
    stack.callback(nginx.stop)
    return Target(name, nginx.url, nginx.process, nginx.prefix / "error.log")


def _gatekeeper(name: str, stack: ExitStack, setup: TargetSetup) -> Target:
    # Checked first because a missing entry point would otherwise cost the full start timeout.
    try:
        entry_point = importlib.util.find_spec("proxy.__main__")
    except Exception as exc:  # Whatever the package raises on import, the target is unusable.
        raise TargetUnavailable(f"the proxy package does not import: {exc!r}") from exc
    if entry_point is None:
        raise TargetUnavailable("the proxy has no entry point yet (python -m proxy serve)")
    registry, workdir = setup.registry, setup.workdir / name
    storage_root = registry.storage_root if name in SENDFILE_TARGETS else None
    tls = setup.tls if name in TLS_TARGETS else None
    try:
        gatekeeper = make_gatekeeper(
            workdir,
            registry.url,
            storage_root=storage_root,
            extra_env=dict(setup.gatekeeper_env),
            tls=tls,
        )
    except (RuntimeError, OSError) as exc:
        log = workdir / "gatekeeper.log"
        raise TargetUnavailable(
            f"gatekeeper did not start (full log: {log}, kept with --keep-workdir)\n{exc}"
        ) from exc
    stack.callback(gatekeeper.stop)
    cacert = tls[0] if tls else None
    return Target(name, gatekeeper.url, gatekeeper.process, gatekeeper.log_path, cacert)


_STARTERS: dict[str, Callable[[str, ExitStack, TargetSetup], Target]] = {
    DIRECT: _direct,
    NGINX: _nginx,
    NGINX_DEFAULT: _nginx,
    GATEKEEPER_STREAM: _gatekeeper,
    GATEKEEPER_SENDFILE: _gatekeeper,
    GATEKEEPER_TLS_STREAM: _gatekeeper,
    GATEKEEPER_TLS_SENDFILE: _gatekeeper,
}
