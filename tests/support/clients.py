"""Run the real registry clients, skopeo and podman, isolated from the machine they run on.

The end-to-end tests must behave the same on a developer's machine and in CI, and must not
touch (or be influenced by) the host's images, credentials or registry settings. So every
invocation gets, from a private work directory:

- its own ``registries.conf`` (no short-name search, our loopback registries ``insecure``),
  ``registries.d``, signature policy and auth file. The first three live in
  ``$HOME/.config/containers``, with ``HOME`` set in the subprocess environment (never in
  ``os.environ`` of the test process): both tools, even as root, prefer these per-user files
  to ``/etc/containers``, and then read no system drop-in directory at all. (Setting
  ``CONTAINERS_REGISTRIES_CONF`` instead is ignored by skopeo 1.9, and makes podman 4.3 still
  merge ``/etc/containers/registries.conf.d``.);
- for podman, its own ``containers.conf`` and ``storage.conf`` (``CONTAINERS_CONF``,
  ``CONTAINERS_STORAGE_CONF``) and private ``--root``/``--runroot`` with the ``vfs`` driver,
  which needs neither fuse nor overlay mounts (we run as root in a sandbox without systemd,
  hence ``cgroupfs`` and the ``file`` events backend).

One thing stays shared: as root, containers/image keeps its blob-info cache in
``/var/lib/containers/cache`` and neither tool has a flag to move it. It only tells a client
where a blob was seen before, so it can try a cross-repository mount; images built by
``tests.support.images`` are random per run, so entries from earlier runs never match.

Every command runs with debug logging, because containers/image logs each HTTP request it
sends (``msg="GET http://..."``); :attr:`ClientRun.requests` turns those lines into the list
of requests the gatekeeper must have logged, one access-log row each.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Self
from urllib.parse import SplitResult, urlsplit

DEFAULT_TIMEOUT = 180.0
"""Seconds a single client command may take; a 50 MB push through the proxy takes a few."""

_REQUEST_LINE = re.compile(r'msg="(GET|HEAD|POST|PUT|PATCH|DELETE) (https?://[^"\s]+)"')
_PERMISSIVE_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


class ClientError(Exception):
    """A client command failed or timed out; the message carries its command line and stderr."""

    def __init__(self, command: Sequence[str], returncode: int | None, stderr: str) -> None:
        outcome = "timed out" if returncode is None else f"exited with {returncode}"
        super().__init__(f"{' '.join(command)}\n{outcome}; stderr (last lines):\n{_tail(stderr)}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request a client reports having sent."""

    method: str
    """HTTP method, upper case."""
    url: str
    """Full URL, query included, as the client sent it."""

    @property
    def parts(self) -> SplitResult:
        return urlsplit(self.url)

    @property
    def path(self) -> str:
        """The path alone, which is what the gatekeeper routes on."""
        return self.parts.path


@dataclass(frozen=True)
class ClientRun:
    """The outcome of one successful client command."""

    args: tuple[str, ...]
    """The command line, for messages."""
    stdout: bytes
    """Raw standard output: ``inspect --raw`` prints a manifest whose bytes matter."""
    stderr: str
    """Debug log of the command."""
    digest: str | None = None
    """The manifest digest the client reported writing, when it reports one (podman push)."""

    @property
    def requests(self) -> tuple[HttpRequest, ...]:
        """Plain-HTTP requests the client sent, in the order it logged them.

        With TLS verification off, containers/image first tries ``https://`` for the ``/v2/``
        ping; that attempt fails in the TLS handshake against a plain-HTTP server, never
        reaches it as an HTTP request, and is left out here.
        """
        found = (HttpRequest(m.group(1), m.group(2)) for m in _REQUEST_LINE.finditer(self.stderr))
        return tuple(request for request in found if request.parts.scheme == "http")


class _IsolatedClient:
    """Shared setup: a private work directory with registry settings and a clean environment."""

    def __init__(self, workdir: Path, insecure_registries: Sequence[str]) -> None:
        self.workdir = workdir
        home = workdir / "home"
        config = home / ".config" / "containers"
        for directory in (config / "registries.d", workdir / "tmp", workdir / "run"):
            directory.mkdir(parents=True, exist_ok=True)
        (config / "registries.conf").write_text(
            _registries_conf(insecure_registries), encoding="utf-8"
        )
        (config / "policy.json").write_text(json.dumps(_PERMISSIVE_POLICY), encoding="utf-8")
        auth = workdir / "auth.json"
        auth.write_text('{"auths": {}}', encoding="utf-8")  # podman refuses a missing file
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "TMPDIR": str(workdir / "tmp"),
            "XDG_RUNTIME_DIR": str(workdir / "run"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "REGISTRY_AUTH_FILE": str(auth),
        }

    def _run(
        self, args: Sequence[str], timeout: float = DEFAULT_TIMEOUT, stdin: str | None = None
    ) -> ClientRun:
        try:
            done = subprocess.run(
                list(args),
                env=self.env,
                capture_output=True,
                timeout=timeout,
                check=False,
                input=stdin.encode() if stdin is not None else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClientError(args, None, _text(exc.stderr)) from exc
        stderr = _text(done.stderr)
        if done.returncode != 0:
            raise ClientError(args, done.returncode, stderr)
        return ClientRun(args=tuple(args), stdout=done.stdout, stderr=stderr)


class Skopeo(_IsolatedClient):
    """skopeo with private settings; TLS verification is off because registries are loopback."""

    def _skopeo(self, *args: str) -> ClientRun:
        return self._run(
            [
                "skopeo",
                "--debug",
                "--tmpdir",
                str(self.workdir / "tmp"),
                *args,
            ]
        )

    def copy(self, source: str, dest: str, *, all_images: bool = False) -> ClientRun:
        """``skopeo copy``; ``all_images`` copies every instance of an index (``--all``)."""
        flags = ["--src-tls-verify=false", "--dest-tls-verify=false"]
        if all_images:
            flags.append("--all")
        return self._skopeo("copy", *flags, source, dest)

    def login(self, host: str, user: str, secret: str) -> ClientRun:
        """``skopeo login`` with the secret on stdin (never on the command line)."""
        return self._run(
            ["skopeo", "login", "--tls-verify=false", "-u", user, "--password-stdin", host],
            stdin=secret,
        )

    def inspect_raw(self, ref: str) -> ClientRun:
        """``skopeo inspect --raw``: the manifest or index bytes exactly as the registry serves."""
        return self._skopeo("inspect", "--tls-verify=false", "--raw", ref)


class Podman(_IsolatedClient):
    """podman with its own storage and configuration, usable as root without systemd.

    Two instances with different work directories behave like two machines: nothing pulled by
    one is visible to the other. podman refuses a run root longer than 50 characters (pytest's
    temporary paths are longer), so run-time state lives in a short directory under ``/tmp``.
    :meth:`close` removes it and the image storage, which ``vfs`` makes large (every layer is a
    full copy of the tree below it).
    """

    def __init__(self, workdir: Path, insecure_registries: Sequence[str]) -> None:
        super().__init__(workdir, insecure_registries)
        self.root = workdir / "storage"
        self.run_dir = Path(tempfile.mkdtemp(prefix="podman-run-", dir="/tmp"))
        self.runroot = self.run_dir / "storage"
        for path in (self.root, self.runroot, self.run_dir / "libpod", workdir / "networks"):
            path.mkdir(parents=True, exist_ok=True)
        containers_conf = workdir / "containers.conf"
        containers_conf.write_text(_containers_conf(workdir, self.run_dir), encoding="utf-8")
        storage_conf = workdir / "storage.conf"
        storage_conf.write_text(_storage_conf(self.root, self.runroot), encoding="utf-8")
        self.env["XDG_RUNTIME_DIR"] = str(self.run_dir)
        self.env["CONTAINERS_CONF"] = str(containers_conf)
        self.env["CONTAINERS_STORAGE_CONF"] = str(storage_conf)

    def close(self) -> None:
        """Remove the run-time directory and the image storage."""
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def login(self, host: str, user: str, secret: str) -> ClientRun:
        """``podman login`` with the secret on stdin (never on the command line)."""
        return self._podman(
            "login", "--tls-verify=false", "-u", user, "--password-stdin", host, stdin=secret
        )

    def _podman(self, *args: str, stdin: str | None = None) -> ClientRun:
        return self._run(
            [
                "podman",
                "--log-level=debug",
                "--root",
                str(self.root),
                "--runroot",
                str(self.runroot),
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                *args,
            ],
            stdin=stdin,
        )

    def pull(self, ref: str) -> ClientRun:
        """``podman pull`` of ``host/repo:tag`` or ``host/repo@digest``; stdout is the image ID."""
        return self._podman("pull", "--tls-verify=false", ref)

    def push(self, source: str, dest: str) -> ClientRun:
        """``podman push`` of a local image to ``docker://dest``, reporting the digest written."""
        digest_file = self.workdir / "tmp" / "push.digest"
        digest_file.unlink(missing_ok=True)
        run = self._podman(
            "push",
            "--tls-verify=false",
            "--digestfile",
            str(digest_file),
            source,
            f"docker://{dest}",
        )
        return replace(run, digest=digest_file.read_text(encoding="utf-8").strip())

    def image_digest(self, ref: str) -> str:
        """The manifest digest podman recorded for a local image."""
        run = self._podman("image", "inspect", "--format", "{{.Digest}}", ref)
        return run.stdout.decode().strip()


def _registries_conf(insecure_registries: Sequence[str]) -> str:
    lines = ["unqualified-search-registries = []"]
    for location in insecure_registries:
        lines += ["", "[[registry]]", f'location = "{location}"', "insecure = true"]
    return "\n".join(lines) + "\n"


def _containers_conf(workdir: Path, run_dir: Path) -> str:
    return (
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{workdir / "events.log"}"\n'
        f'tmp_dir = "{run_dir / "libpod"}"\n'
        f'volume_path = "{workdir / "volumes"}"\n'
        "[network]\n"
        f'network_config_dir = "{workdir / "networks"}"\n'
    )


def _storage_conf(root: Path, runroot: Path) -> str:
    return f'[storage]\ndriver = "vfs"\ngraphroot = "{root}"\nrunroot = "{runroot}"\n'


def _text(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", errors="replace")
    return output or ""


def _tail(text: str, lines: int = 40) -> str:
    """The end of a debug log: where the error is, without pages of start-up noise."""
    return "\n".join(text.splitlines()[-lines:])
