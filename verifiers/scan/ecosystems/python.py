"""Python distributions: ``*.dist-info/METADATA`` (wheels, pip) and ``*.egg-info/PKG-INFO``
or a bare ``*.egg-info`` file (setuptools, Debian's python3-* packages).

Core metadata is an email-style header block; only ``Name`` and ``Version`` are needed, and the
body (the long description, often most of the file) is not parsed.
"""

from __future__ import annotations

import re

from verifiers.scan.ecosystems import Ecosystem
from verifiers.scan.model import Package


def matches(path: str) -> bool:
    parent, _, base = path.rpartition("/")
    if base == "METADATA":
        return parent.endswith(".dist-info")
    if base == "PKG-INFO":
        return parent.endswith(".egg-info")
    return base.endswith(".egg-info")


def normalise(name: str) -> str:
    """PEP 503 normalised name, as PyPI and purl use it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(path: str, data: bytes) -> list[Package]:
    head = data.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for line in head.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version") and key not in fields:
            fields[key] = value.strip()
    name, version = fields.get("Name", ""), fields.get("Version", "")
    if not name or not version:
        return []
    return [Package(ecosystem="pypi", name=normalise(name), version=version, path=path)]


ECOSYSTEM = Ecosystem("pypi", matches, parse)
