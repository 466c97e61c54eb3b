"""The distribution, from ``etc/os-release`` or ``usr/lib/os-release`` (on Debian the former
is a symlink to the latter, so both are read; ``etc`` wins when both are files)."""

from __future__ import annotations

import shlex

from verifiers.scan.model import OsRelease

PATHS = ("etc/os-release", "usr/lib/os-release")


def matches(path: str) -> bool:
    return path in PATHS


def parse(path: str, data: bytes) -> OsRelease | None:
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            continue
        try:
            words = shlex.split(value, comments=True)
        except ValueError:
            continue
        fields[key.strip()] = words[0] if words else ""
    if not fields.get("ID"):
        return None
    return OsRelease(
        id=fields["ID"],
        version_id=fields.get("VERSION_ID", ""),
        version_codename=fields.get("VERSION_CODENAME", ""),
        pretty_name=fields.get("PRETTY_NAME", ""),
        path=path,
    )
