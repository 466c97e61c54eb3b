"""The ``hardening`` verifier: how the image would run, from its config and its files' modes.

Rules: ``hardening.runs-as-root`` (config ``User`` unset, ``root`` or ``0``),
``hardening.ssh-server`` (an ``openssh-server`` package in the inventory, or an ``sshd``
binary), ``hardening.setuid`` / ``hardening.setgid`` (outside ``setuid_allowlist``) and
``hardening.world-writable`` (files, and directories without the sticky bit, outside
``world_writable_allowlist``).

The layer scan only notes mode bits (no file is read), and the allowlists are applied to the
cached per-layer notes when an image is verified, so changing an allowlist re-reads no layer.
Entries whose modes it never saw (the reader passed over their path or header) and what follows
a read that stopped early are one ``hardening.not-inspected`` finding per layer, blocking by
default. Deleted files (whiteouts, opaque directories of later layers) no longer count: unlike
a secret, a setuid file that is gone from the final filesystem cannot be run. A file
*re-written* by a later layer with safer bits (``chmod u-s`` in a later step) is still reported
from the lower layer; waive it by rule id. The ``openssh-server`` package comes from the
inventory scanner's per-layer results, which the shared read produces anyway.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from verifiers.base import Finding, Image, Skipped, index_skip
from verifiers.classify import is_image_config
from verifiers.content.base import (
    ContentScan,
    LayerContentVerifier,
    fingerprint,
    hits_scanner,
    limits_of,
)
from verifiers.content.hits import Hit, LayerHits
from verifiers.layers import distinct_layers
from verifiers.scan.filesystem import Changes, apply_layers
from verifiers.scan.inventory import merge
from verifiers.scan.limits import ScanLimits
from verifiers.scan.reader import UNREAD_ENTRIES, LayerReport
from verifiers.scan.tarstream import Entry, Kind
from verifiers.scan.verifier import inventory_scanner
from verifiers.stores import Stores

NAME = "hardening"
SCHEMA = "2"
"""Bumped when the same layer and options could give another result.
2: entries the reader skipped and reads stopped early are counted as not inspected."""

DEFAULT_SETUID_ALLOWLIST = (
    *(
        prefix + tool
        for prefix in ("usr/bin/", "bin/", "usr/sbin/", "sbin/")
        for tool in (
            # Debian: login, passwd, util-linux, mount, sudo, shadow's setgid helpers, cron, ssh
            "su",
            "passwd",
            "chsh",
            "chfn",
            "gpasswd",
            "newgrp",
            "mount",
            "umount",
            "sudo",
            "expiry",
            "chage",
            "unix_chkpwd",
            "wall",
            "write",
            "crontab",
            "ssh-agent",
            "ping",
            # Alpine: busybox's setuid helper
            "bbsuid",
        )
    ),
    "usr/lib/dbus-1.0/dbus-daemon-launch-helper",
    "usr/lib/openssh/ssh-keysign",
)
"""What Debian's and Alpine's base packages install setuid or setgid; glob patterns."""

DEFAULT_TMP_DIRS = ("tmp", "tmp/*", "var/tmp", "var/tmp/*", "dev/shm", "dev/shm/*")

SSH_PACKAGES = frozenset({"openssh-server", "openssh-server-pam", "dropbear"})


class HardeningOptions(ScanLimits):
    """Options of ``[verifiers.hardening.options]`` (plus the read limits of ``ScanLimits``,
    which also apply to the inventory scan it reads ``openssh-server`` from)."""

    setuid_allowlist: tuple[str, ...] = DEFAULT_SETUID_ALLOWLIST
    """Paths (globs, relative to the root) that may be setuid or setgid."""
    world_writable_allowlist: tuple[str, ...] = DEFAULT_TMP_DIRS
    """Paths (globs) that may be world-writable; sticky directories always may."""
    allow_root: bool = Field(default=False)
    """Do not report an image that runs as root (e.g. a base image meant to be extended)."""


class HardeningScan(ContentScan):
    """Mode bits of every entry of one layer read; no file data."""

    sees_entries = True

    def seen(self, path: str, entry: Entry) -> None:
        if entry.kind is Kind.FILE:
            if entry.mode & 0o4000:
                self.hits.add("hardening.setuid", path, _mode(entry))
            if entry.mode & 0o2000:
                self.hits.add("hardening.setgid", path, _mode(entry))
            if path.rpartition("/")[2] == "sshd" and entry.executable:  # not etc/pam.d/sshd
                self.hits.add("hardening.ssh-server", path, "sshd binary")
        sticky_dir = entry.kind is Kind.DIR and entry.mode & 0o1000  # like /tmp: fine
        if entry.kind in (Kind.FILE, Kind.DIR) and entry.mode & 0o002 and not sticky_dir:
            self.hits.add("hardening.world-writable", path, _mode(entry))

    def unseen(self, report: LayerReport) -> dict[str, int]:
        """Only entries shown to nobody: an entry of a type that is not read, or a whiteout
        holding data, still had its modes seen."""
        return {why: n for why, n in report.unread.items() if why in UNREAD_ENTRIES}

    def result(self, report: LayerReport) -> LayerHits:
        self.hits.whiteouts = list(report.whiteouts)
        self.hits.opaque = list(report.opaque)
        return super().result(report)


def _mode(entry: Entry) -> str:
    return f"mode {entry.mode:04o}, uid {entry.uid}, gid {entry.gid}"


def runs_as_root(config: dict[str, Any]) -> str | None:
    """Why the image runs as root (evidence), or None. ``User`` may be ``name``, ``uid``,
    ``name:group`` or ``uid:gid``; the user part decides."""
    inner = config.get("config")
    user = inner.get("User") if isinstance(inner, dict) else None
    if not isinstance(user, str) or not user.strip():
        return "no User in the image config"
    name = user.strip().partition(":")[0]
    return f"User={user!r}" if name in ("root", "0") else None


class HardeningVerifier(LayerContentVerifier):
    """Root user, SSH server, setuid/setgid and world-writable files."""

    name = NAME

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = HardeningOptions.model_validate(options or {})
        limits = limits_of(self.options)
        scanner_version = f"{SCHEMA}.{fingerprint(limits.model_dump())}"
        # the allowlists act on cached results, so only the verifier's version names them
        self.version = f"{scanner_version}.{fingerprint(self.options.model_dump())}"
        super().__init__(hits_scanner(NAME, scanner_version, limits, lambda _: HardeningScan()))
        self.inventory = inventory_scanner(limits)

    def attach(self, stores: Stores) -> None:
        super().attach(stores)
        self._reads.register(self.inventory)

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        skipped = index_skip(image)
        if skipped:
            return skipped
        findings: list[Finding] = []
        if not self.options.allow_root and image.config is not None:
            why = runs_as_root(image.config)
            if why:
                # The config's own finding only when it is an image config: an artifact's
                # ``{}`` "runs as root" by absence, and must not be marked wherever it is used.
                owner = image.config_digest if is_image_config(image.config) else None
                findings.append(
                    self.finding("hardening.runs-as-root", "config:User", why, blob=owner)
                )
        findings += await self._ssh_packages(image)
        results = await self.layer_hits(image)
        findings += (
            self.finding(hit.rule_id, f"{layer}:{hit.path}", hit.evidence, blob=layer)
            for layer, hit in self._visible(image, results)
            if not self._allowed(hit)
        )
        findings += (
            self.finding(rule, layer.digest, f"and {more} more in this layer", blob=layer.digest)
            for layer, result in zip(distinct_layers(image.layers), results, strict=True)
            for rule, more in sorted(result.overflow.items())
        )
        return findings + self.not_inspected_findings(image, results, "hardening.not-inspected")

    def _visible(self, image: Image, results: Sequence[LayerHits]) -> list[tuple[str, Hit]]:
        """Hits on paths still present in the final filesystem."""
        layers = [
            (Changes.of(r.whiteouts, r.opaque, ()), [(layer.digest, hit) for hit in r.hits])
            for layer, r in zip(distinct_layers(image.layers), results, strict=True)
        ]
        return apply_layers(layers, lambda item: item[1].path)

    def _allowed(self, hit: Hit) -> bool:
        if hit.rule_id in ("hardening.setuid", "hardening.setgid"):
            return _matches(hit.path, self.options.setuid_allowlist)
        if hit.rule_id == "hardening.world-writable":
            return _matches(hit.path, self.options.world_writable_allowlist)
        return False

    async def _ssh_packages(self, image: Image) -> list[Finding]:
        partials = [
            await self._reads.result(self.inventory, layer.digest, image.blobs)
            for layer in distinct_layers(image.layers)
        ]
        return [
            self.finding(
                "hardening.ssh-server",
                f"{package.layer}:{package.path}",
                f"package {package.name} {package.version}",
                blob=package.layer or None,
            )
            for package in merge(partials).packages
            if package.name in SSH_PACKAGES
        ]


def _matches(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(path, p.lstrip("/")) for p in patterns)
